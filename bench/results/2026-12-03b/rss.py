#!/usr/bin/env python3
"""Start `storming serve` on a copy of the golden log; time until the four views reach the head; RSS then.
usage: rss.py BINARY [ENV=VAL ...]"""
import os, shutil, sqlite3, subprocess, sys, time, tempfile
binary = sys.argv[1]; extra = dict(a.split("=", 1) for a in sys.argv[2:])
d = tempfile.mkdtemp(prefix="rss-", dir="/tmp/exp"); db = os.path.join(d, "s.db")
shutil.copy("/tmp/exp/golden.db", db); subprocess.run(["sync"])
con = sqlite3.connect(db); head = con.execute("SELECT MAX(position) FROM events").fetchone()[0]
env = dict(os.environ, STORMING_DATABASE_URL=f"sqlite://{db}", STORMING_JWT_SECRET="x" * 40, STORMING_LISTEN="127.0.0.1:18098", STORMING_LOG="warn,sqlx=error"); env.update(extra)
start = time.monotonic(); p = subprocess.Popen([binary, "serve"], env=env, stdout=subprocess.DEVNULL)
views = ["rental_status@g1", "my_page@g1", "book_catalog@g1", "payments@g1"]
def status(k):
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith(k): return int(line.split()[1]) // 1024
done = {}
while len(done) < 4 and time.monotonic() - start < 600:
    for name, pos in con.execute("SELECT name, position FROM checkpoints"):
        if name in views and pos == head and name not in done: done[name] = time.monotonic() - start
    time.sleep(0.1)
rss_at, hwm = status("VmRSS"), status("VmHWM"); time.sleep(5); rss_later = status("VmRSS")
p.terminate(); p.wait()
print(f"{os.path.basename(binary)} {extra}: views at head " + ", ".join(f"{k.split('@')[0]} {v:.1f} s" for k, v in sorted(done.items(), key=lambda kv: kv[1])) + f"; RSS peak {hwm} MB, at the head {rss_at} MB, 5 s later {rss_later} MB", flush=True)
shutil.rmtree(d)
