"""cat.py SCRIPT ROOT CAT1,CAT2,...: the samples of `perf script` output (SCRIPT) that have a frame
containing ROOT, each counted for the first category found among its frames (else `other`)."""
import collections, sys


def stacks(path):
    """Each sample of a `perf script` file as its frames' symbols, innermost first."""
    for sample in open(path).read().split('\n\n'):
        lines = sample.strip().split('\n')
        if len(lines) < 2:
            continue
        yield [l.strip().split(' ', 1)[1].rsplit(' (', 1)[0] if ' ' in l.strip() else l for l in lines[1:]]


if __name__ == '__main__':
    root = sys.argv[2]
    cats = sys.argv[3].split(',')
    c = collections.Counter(); n = 0; total = 0
    for syms in stacks(sys.argv[1]):
        total += 1
        if not any(root in x for x in syms): continue
        n += 1
        for cat in cats:
            if any(cat in x for x in syms): c[cat] += 1; break
        else: c['other'] += 1
    print('total', total, root, n, '%.1f%%' % (100 * n / total))
    for k, v in c.most_common(): print('%5d %5.1f%% %s' % (v, 100 * v / total, k))
