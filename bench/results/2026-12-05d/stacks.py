"""Summaries of `perf script -F tid,ip,sym` output taken with call graphs (`perf record --call-graph
dwarf`): each sample is a stack, leaf first. Percentages are of all samples; a stack cut short by
perf's copy counts only for the frames it holds.

Usage: python3 stacks.py SCRIPT COMMAND ARGS
  under FRAME [DEPTH]   samples whose stack holds FRAME: the frames just below it, and the leaves
  above FRAME DEPTH     samples whose stack holds FRAME: the DEPTH callers above it
  split FRAME OTHER...  samples whose stack holds FRAME, by the first OTHER their stack also holds
  leaves FRAME OTHER    samples holding both: their leaves, and what sqlite3VdbeExec called there"""
import collections
import sys


def samples(path):
    """Each sample's frames (symbol names), leaf first."""
    found, stack = [], []
    for line in open(path):
        if not line.strip():
            if stack:
                found.append(stack)
                stack = []
        elif line[0] not in ' \t':  # a sample's header line (its thread)
            stack = []
        else:
            parts = line.strip().split(None, 1)  # address, symbol
            stack.append(parts[-1])
    if stack:
        found.append(stack)
    return found


def holding(stack, frame):
    return [i for i, name in enumerate(stack) if frame in name]


def show(counter, total, n):
    for key, count in counter.most_common(n):
        print(f"  {100 * count / total:5.1f}%  {key}")


def under(stacks, frame, depth=1):
    below, leaves, hit = collections.Counter(), collections.Counter(), 0
    for stack in stacks:
        at = holding(stack, frame)
        if not at:
            continue
        hit += 1
        outermost = at[-1]
        chain = stack[max(0, outermost - depth):outermost]
        below[' <- '.join(name[:60] for name in chain) if chain else '(self)'] += 1
        leaves[stack[0][:80]] += 1
    print(f"{hit}/{len(stacks)} samples ({100 * hit / len(stacks):.1f}%) under {frame}")
    show(below, len(stacks), 25)
    print("leaves:")
    show(leaves, len(stacks), 20)


def above(stacks, frame, depth):
    callers = collections.Counter()
    for stack in stacks:
        at = holding(stack, frame)
        if at:
            callers[' <- '.join(name[:50] for name in stack[at[0] + 1:at[0] + 1 + depth])] += 1
    show(callers, len(stacks), 20)


def split(stacks, frame, others):
    by = collections.Counter()
    for stack in stacks:
        if holding(stack, frame):
            by[next((other for other in others if holding(stack, other)), '?')] += 1
    show(by, len(stacks), len(others) + 1)


def leaves(stacks, frame, other):
    leaf, from_exec = collections.Counter(), collections.Counter()
    for stack in stacks:
        if holding(stack, frame) and holding(stack, other):
            leaf[stack[0][:70]] += 1
            execs = holding(stack, 'sqlite3VdbeExec')
            if execs and execs[-1] > 0:
                from_exec[stack[execs[-1] - 1][:60]] += 1
    show(leaf, len(stacks), 25)
    print('--- called from VdbeExec')
    show(from_exec, len(stacks), 15)


if __name__ == '__main__':
    path, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
    stacks = samples(path)
    if command == 'under':
        under(stacks, args[0], int(args[1]) if len(args) > 1 else 1)
    elif command == 'above':
        above(stacks, args[0], int(args[1]))
    elif command == 'split':
        split(stacks, args[0], args[1:])
    elif command == 'leaves':
        leaves(stacks, args[0], args[1])
    else:
        sys.exit(__doc__)
