#!/bin/bash
# smaps-run.sh BACKEND VERSION: one 64-client commands point; smaps of the server 2 s before its end
backend=$1; v=$2
/tmp/storming-bench --backend $backend --server /tmp/storming-$v --groups commands --clients 64 --seconds 20 --warmup 3 --repeats 1 2>&1 | grep -v WARN | grep clients &
sleep 20
pid=$(pgrep -f "^/tmp/storming-$v serve" | head -1)
echo "server pid $pid threads $(ls /proc/$pid/task | wc -l)"
python3 /tmp/smaps.py $pid
wait
