#!/bin/bash
# during.sh X: the commands group (4 clients) on a copy of the long log, with `my_page` rebuilt
# (POST /admin/projections/my_page/rebuild) once the workers reached the head.
x=$1
BENCH_DB_COPY=/tmp/exp/golden.db /tmp/storming-bench-copy --backend sqlite --server /tmp/storming-$x --groups commands --clients 4 --seconds 20 --repeats 3 --warmup 5 --out /tmp/ab/during-rebuild-$x.json > /tmp/ab/during-rebuild-$x.txt 2>&1 &
bench=$!
sleep 3
db=$(ls -d /tmp/storming-bench-$bench-*/bench.db | head -1)
echo "db $db"
python3 - "$db" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1]); head = c.execute("SELECT MAX(position) FROM events").fetchone()[0]
start = time.time()
while True:
    rows = dict(c.execute("SELECT name, position FROM checkpoints"))
    if rows and all(p >= head for n, p in rows.items()) and len(rows) >= 7: break
    time.sleep(0.2)
print(f"all workers at {head} after {time.time()-start:.0f} s")
PY
pid=$(pgrep -f "storming-$x serve" | head -1)
port=$(ss -ltnp | grep "pid=$pid," | grep -o '127.0.0.1:[0-9]*' | head -1)
token=$(STORMING_JWT_SECRET=storming-bench-secret /tmp/storming-$x token --sub admin --role admin)
sleep 8
echo "rebuild at $(date +%T) on $port"
curl -s -X POST -H "Authorization: Bearer $token" http://$port/admin/projections/my_page/rebuild; echo
wait $bench
grep -v WARN /tmp/ab/during-rebuild-$x.txt
