import collections,sys
samples=open(sys.argv[1]).read().split('\n\n')
root=sys.argv[2]; depth=int(sys.argv[3]) if len(sys.argv)>3 else 1
c=collections.Counter(); n=0; total=0
for s in samples:
    lines=s.strip().split('\n')
    if len(lines)<2: continue
    total+=1
    syms=[l.strip().split(' ',1)[1].rsplit(' (',1)[0] if ' ' in l.strip() else l for l in lines[1:]]
    if not any(root in x for x in syms): continue
    n+=1
    c[' < '.join(x[:60] for x in syms[:depth])]+=1
print('total',total,root,n)
for k,v in c.most_common(40): print('%5d %5.1f%% %s'%(v,100*v/total,k))
