import collections,sys
samples=open(sys.argv[1]).read().split('\n\n')
root=sys.argv[2]
cats=sys.argv[3].split(',')
c=collections.Counter(); n=0; total=0
for s in samples:
    lines=s.strip().split('\n')
    if len(lines)<2: continue
    total+=1
    syms=[l.strip().split(' ',1)[1].rsplit(' (',1)[0] if ' ' in l.strip() else l for l in lines[1:]]
    if not any(root in x for x in syms): continue
    n+=1
    for cat in cats:
        if any(cat in x for x in syms): c[cat]+=1; break
    else: c['other']+=1
print('total',total,root,n, '%.1f%%'%(100*n/total))
for k,v in c.most_common(): print('%5d %5.1f%% %s'%(v,100*v/total,k))
