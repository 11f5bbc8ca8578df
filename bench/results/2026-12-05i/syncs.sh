#!/bin/bash
# syncs.sh V TAG: strace the server's fsyncs (with fds and durations) for 3 s at CLIENTS clients
v=$1; tag=$2
/tmp/storming-bench-$v --backend sqlite --server /tmp/storming-$v --groups commands --clients ${CLIENTS:-4} --seconds 10 --warmup 3 --repeats 1 > /tmp/ab/sy-$tag-run.txt 2>&1 &
pid=""
while [ -z "$pid" ]; do sleep 0.05; pid=$(pgrep -f "storming-$v serve" | head -1); done
sleep 6
ls -l /proc/$pid/fd 2>/dev/null | grep -E "\.db|wal" > /tmp/ab/sy-$tag-fds.txt
timeout 3 strace -f -T -e trace=fsync,fdatasync -p $pid -o /tmp/ab/sy-$tag.txt
wait
grep clients /tmp/ab/sy-$tag-run.txt
