import sys,re,collections
# summarize /proc/PID/smaps: Rss by kind
pid=sys.argv[1]
cur=None; tot=collections.Counter(); anon_sizes=[]
for line in open(f'/proc/{pid}/smaps'):
    m=re.match(r'^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$',line)
    if m:
        size=(int(m.group(2),16)-int(m.group(1),16))//1024
        name=m.group(3).strip()
        kind = 'file:'+name.split('/')[-1] if name.startswith('/') else (name or 'anon')
        cur=(kind,size)
    elif line.startswith('Rss:'):
        kb=int(line.split()[1]); tot[cur[0]]+=kb
        if cur[0]=='anon': anon_sizes.append((kb,cur[1]))
print('total',sum(tot.values()))
for k,v in tot.most_common(8): print(' ',k,v)
anon_sizes.sort(reverse=True)
print(' anon mappings by rss (rss KiB, size KiB):',anon_sizes[:14])
print(' anon mappings count',len(anon_sizes))
