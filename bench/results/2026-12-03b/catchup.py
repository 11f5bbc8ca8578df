#!/usr/bin/env python3
"""Time `storming work --only VIEW` catching up on a copy of a golden SQLite log.
usage: catchup.py BINARY GOLDEN.db VIEW [ENV=VAL ...]"""
import os, shutil, sqlite3, subprocess, sys, time, tempfile
binary, golden, view = sys.argv[1:4]
extra = dict(a.split("=", 1) for a in sys.argv[4:])
d = tempfile.mkdtemp(prefix="catchup-", dir="/tmp/exp")
db = os.path.join(d, "run.db")
shutil.copy(golden, db)
subprocess.run(["sync"])
con = sqlite3.connect(db)
head = con.execute("SELECT MAX(position) FROM events").fetchone()[0]
env = dict(os.environ, STORMING_DATABASE_URL=f"sqlite://{db}", STORMING_JWT_SECRET="x" * 40,
           STORMING_LOG="warn,sqlx=error")
env.update(extra)
start = time.monotonic()
p = subprocess.Popen([binary, "work", "--only", view], env=env)
key = f"{view}@g1"
while True:
    try:
        row = con.execute("SELECT position FROM checkpoints WHERE name = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        row = None
    if row and row[0] == head:
        break
    if time.monotonic() - start > 600:
        print("timeout"); break
    time.sleep(0.02)
took = time.monotonic() - start
p.terminate(); p.wait()
print(f"{view} {extra} catch-up {head} events in {took:.1f} s = {head/took:.0f} ev/s", flush=True)
shutil.rmtree(d)
