#!/usr/bin/env python3
"""overlap.py FDS TRACE (../2026-12-05f/p99diag.sh): the server's syncs by file, and for the
log's slow WAL syncs, what else was syncing while they waited.

FDS is `ls -l /proc/PID/fd`, TRACE `perf trace -e fsync,fdatasync` of the same process. A sync
is "slow" past 2 ms. For each log-WAL sync, every other sync whose interval overlaps it counts."""
import re, sys
from collections import defaultdict

names = {}
for line in open(sys.argv[1]):
    m = re.search(r' (\d+) -> (.*)$', line)
    if m:
        path = m.group(2)
        kind = ('views-wal' if path.endswith('-views.db-wal') else 'views-db' if path.endswith('-views.db')
                else 'log-wal' if path.endswith('.db-wal') else 'log-db' if path.endswith('.db') else None)
        if kind:
            names[int(m.group(1))] = kind
syncs = []
for line in open(sys.argv[2]):
    m = re.match(r'\s*([\d.]+) \(\s*([\d.]+) ms\): \S+ (fsync|fdatasync)\(fd: (\d+)', line)
    if m:
        start, took, fd = float(m.group(1)), float(m.group(2)), int(m.group(4))
        syncs.append((start, start + took, took, names.get(fd, f'fd {fd}')))
by = defaultdict(list)
for s in syncs:
    by[s[3]].append(s[2])
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(p * len(xs)))]
for kind, took in sorted(by.items()):
    print(f'{kind:10} {len(took):6} syncs  mean {sum(took)/len(took):.3f} ms  p50 {pct(took,.5):.3f}  '
          f'p99 {pct(took,.99):.3f}  max {max(took):.3f}  total {sum(took):.0f} ms')
log = [s for s in syncs if s[3] == 'log-wal']
for label, chosen in (('slow (>2 ms)', [s for s in log if s[2] > 2]), ('fast (<=2 ms)', [s for s in log if s[2] <= 2])):
    if not chosen:
        continue
    overlapped = defaultdict(int)
    for a in chosen:
        seen = {b[3] for b in syncs if b is not a and b[0] < a[1] and b[1] > a[0]}
        for kind in seen:
            overlapped[kind] += 1
    parts = ', '.join(f'{k} {100*v/len(chosen):.0f}%' for k, v in sorted(overlapped.items()))
    print(f'log-wal {label}: {len(chosen)} syncs; overlapped by: {parts or "nothing"}')
