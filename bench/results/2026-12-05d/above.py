import sys,collections
# usage: above.py script FRAME depth -> for samples holding FRAME: the chain of callers above it
frame=sys.argv[2]; depth=int(sys.argv[3])
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
    idx=[i for i,f in enumerate(s) if frame in f]
    if not idx: continue
    i=idx[0]
    c[' <- '.join(f[:50] for f in s[i+1:i+1+depth])]+=1
for k,v in c.most_common(20): print(f"  {100*v/tot:5.1f}%  {k}")
