#!/usr/bin/env python3
"""chain.py TRACE: from `perf trace` of every syscall of the server at one client
(../2026-12-05f/p99diag.sh with CLIENTS=1 EVENTS=all SECS=1), the syscalls per command by name,
and the round trip split in the server's part (a request's bytes received to its response
written, the log's fsync inside it) and the rest (the response written to the next request
received: loopback, the harness). Tracing every syscall slows the server several-fold: the split
is the traced server's, the counts are not affected."""
import bisect, re, sys
from collections import Counter

events = []
for line in open(sys.argv[1]):
    m = re.match(r'\s*([\d.]+) \(\s*([\d.]*)\s*(?:ms)?\): (\S+)/(\d+) (\w+)\((.*)', line)
    if m:
        events.append((float(m.group(1)), float(m.group(2)) if m.group(2) else 0.0, m.group(5), m.group(6)))
events.sort(key=lambda e: e[0])
returned = lambda args: int(m.group(1)) if (m := re.search(r'= (-?\d+)\s*$', args)) else 0
requests = [e[0] for e in events if e[2] == 'recvfrom' and 'socket' in e[3] and returned(e[3]) > 0]
responses = [e[0] for e in events if e[2] == 'writev']
syncs = [(e[0], e[1]) for e in events if e[2] == 'fsync' and 'bench.db-wal' in e[3]]
server, rest, inside = [], [], []
for r in requests:
    i = bisect.bisect_left(responses, r)
    if i < len(responses):
        server.append(responses[i] - r)
        j = bisect.bisect_left(syncs, (r, 0))
        inside.append(syncs[j][1] if j < len(syncs) and syncs[j][0] < responses[i] else 0.0)
for w in responses:
    j = bisect.bisect_left(requests, w)
    if j < len(requests):
        rest.append(requests[j] - w)
median = lambda xs: sorted(xs)[len(xs) // 2]
print(f'{len(requests)} requests in the trace')
print(f'server (request received -> response written): median {median(server):.3f} ms, mean {sum(server)/len(server):.3f}')
print(f'  of it the log WAL fsync: median {median(inside):.3f} ms, mean {sum(inside)/len(inside):.3f}')
print(f'rest (response written -> next request received): median {median(rest):.3f} ms, mean {sum(rest)/len(rest):.3f}')
print('syscalls per command: ' + ', '.join(f'{n} {c/len(requests):.1f}' for n, c in Counter(e[2] for e in events).most_common(14)))
