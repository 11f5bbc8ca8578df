import sys,collections
# usage: under.py script FRAME [depth]  -> for samples whose stack holds FRAME: tally of the frames just below it (callees) and leaves
frame=sys.argv[2]; depth=int(sys.argv[3]) if len(sys.argv)>3 else 1
samples=[];cur=[]
for line in open(sys.argv[1]):
    if not line.strip():
        if cur: samples.append(cur); cur=[]
        continue
    if line[0] not in ' \t': cur=[]; continue
    parts=line.strip().split(None,1)
    cur.append(parts[1] if len(parts)>1 else parts[0])
if cur: samples.append(cur)
tot=len(samples); hit=0; below=collections.Counter(); leaf=collections.Counter()
for s in samples:
    idx=[i for i,f in enumerate(s) if frame in f]
    if not idx: continue
    hit+=1; i=idx[-1]  # outermost occurrence (stack is leaf first)
    chain=s[max(0,i-depth):i]
    below[' <- '.join(f[:60] for f in chain) if chain else '(self)']+=1
    leaf[s[0][:80]]+=1
print(f"{hit}/{tot} samples ({100*hit/tot:.1f}%) under {frame}")
for k,v in below.most_common(25): print(f"  {100*v/tot:5.1f}%  {k}")
print("leaves:")
for k,v in leaf.most_common(20): print(f"  {100*v/tot:5.1f}%  {k}")
