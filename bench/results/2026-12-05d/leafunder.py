import sys,collections
a=sys.argv[2]; b=sys.argv[3]
samples=[];cur=[]
for line in open(sys.argv[1]):
    if not line.strip():
        if cur: samples.append(cur); cur=[]
        continue
    if line[0] not in ' \t': cur=[]; continue
    parts=line.strip().split(None,1)
    cur.append(parts[1] if len(parts)>1 else parts[0])
if cur: samples.append(cur)
tot=len(samples); c=collections.Counter(); c2=collections.Counter()
for s in samples:
    if any(a in f for f in s) and any(b in f for f in s):
        c[s[0][:70]]+=1
        # first sqlite-ish frame below step
        idx=[i for i,f in enumerate(s) if 'sqlite3VdbeExec' in f]
        if idx and idx[-1]>0: c2[s[idx[-1]-1][:60]]+=1
for k,v in c.most_common(25): print(f"  {100*v/tot:5.1f}%  {k}")
print('--- called from VdbeExec')
for k,v in c2.most_common(15): print(f"  {100*v/tot:5.1f}%  {k}")
