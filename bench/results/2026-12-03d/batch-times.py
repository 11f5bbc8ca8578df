# batch-times.py LOG: per worker, batches, events, and the mean events and transaction time of the last two thirds
import sys,re,collections
d=collections.defaultdict(list)
for l in open(sys.argv[1]):
    l=re.sub(r'\x1b\[[0-9;]*m','',l)
    if 'applied a batch' not in l: continue
    w=re.search(r'worker="([^"]+)"',l).group(1); e=int(re.search(r'events=(\d+)',l).group(1)); tx=int(re.search(r'transaction_us=(\d+)',l).group(1))
    d[w].append((e,tx))
for w,v in sorted(d.items()):
    v2=v[len(v)//3:]
    print(f"{w}: {len(v)} batches, {sum(x[0] for x in v)} events; last two thirds: {sum(x[0] for x in v2)/len(v2):.0f} events and {sum(x[1] for x in v2)/len(v2)/1000:.1f} ms a batch, longest {max(x[1] for x in v2)/1000:.0f} ms")
