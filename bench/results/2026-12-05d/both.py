import sys,collections
a=sys.argv[2]; outs=sys.argv[3:]
samples=[];cur=[]
for line in open(sys.argv[1]):
    if not line.strip():
        if cur: samples.append(cur); cur=[]
        continue
    if line[0] not in ' \t': cur=[]; continue
    parts=line.strip().split(None,1)
    cur.append(parts[1] if len(parts)>1 else parts[0])
if cur: samples.append(cur)
tot=len(samples); c=collections.Counter()
for s in samples:
    if not any(a in f for f in s): continue
    k='?'
    for o in outs:
        if any(o in f for f in s): k=o; break
    c[k]+=1
for k,v in c.most_common(): print(f"  {100*v/tot:5.1f}%  {k}")
