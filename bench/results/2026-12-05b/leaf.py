"""leaf.py SCRIPT ROOT [DEPTH]: the samples of `perf script` output (SCRIPT) that have a frame
containing ROOT, counted by their innermost DEPTH frames (default 1); the 40 most frequent."""
import collections, os, sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '2026-12-05'))
from cat import stacks  # noqa: E402

root = sys.argv[2]; depth = int(sys.argv[3]) if len(sys.argv) > 3 else 1
c = collections.Counter(); n = 0; total = 0
for syms in stacks(sys.argv[1]):
    total += 1
    if not any(root in x for x in syms): continue
    n += 1
    c[' < '.join(x[:60] for x in syms[:depth])] += 1
print('total', total, root, n)
for k, v in c.most_common(40): print('%5d %5.1f%% %s' % (v, 100 * v / total, k))
