"""Samples of `perf script -F comm,pid,tid,time,ip,sym,dso` (no call graphs) by process and thread,
each in rough categories by symbol (kernel, SQLite, serde, glibc's allocator, the rest by name).
The server's binary is /tmp/storming-C here; tokio's and sqlx's threads are counted by name.
Usage: python3 by-process.py perf-script.txt"""
import re,sys,collections
procs=collections.OrderedDict()
for line in open(sys.argv[1]):
    m=re.match(r'\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+\S+\s+(.*?)\s+\((.*)\)\s*$',line)
    if not m: continue
    comm,pid,tid,t,sym,dso=m.groups()
    if 'storming-C' not in dso and comm not in ('tokio-rt-worker','sqlx-sqlite-wor','storming-C'): 
        if not (comm.startswith('tokio') or comm.startswith('sqlx')): continue
    p=procs.setdefault(pid,{'first':float(t),'last':0,'n':0,'tids':collections.Counter(),'cat':collections.Counter(),'tidcat':collections.defaultdict(collections.Counter)})
    p['last']=float(t); p['n']+=1; p['tids'][tid]+=1
    s=sym
    if 'kernel' in dso: c='kernel'
    elif s.startswith('sqlite3') or s.startswith('pcache') or s.startswith('btree') or 'Vdbe' in s or s.startswith('vdbe') or s.startswith('pager') or s.startswith('wal') or s.startswith('unix'): c='sqlite'
    elif 'serde' in s or 'RawValue' in s: c='serde'
    elif 'libc' in dso or 'malloc' in s or 'free' in s: c='libc/alloc'
    else: c='other:'+s[:40]
    p['cat'][c]+=1; p['tidcat'][tid][c if not c.startswith('other') else 'other']+=1
for pid,p in procs.items():
    if p['n']<500: continue
    dur=p['last']-p['first']
    print(f"pid {pid} samples {p['n']} span {dur:.1f}s  cores {p['n']/1999/dur:.2f}")
    for tid,n in p['tids'].most_common(6):
        print(f"   tid {tid} {n} ({n/1999/dur:.2f} cores)", dict(p['tidcat'][tid].most_common(5)))
    print("   ", p['cat'].most_common(14))
