#!/bin/bash
# cuprof.sh V: the catch-up group (300,000 events) on binary V; perf of rental_status's worker process
v=$1
/tmp/storming-bench-$v --backend sqlite --server /tmp/storming-$v --groups catchup --catchup-events 300000 > /tmp/ab/cuprof-$v.txt 2>&1 &
while ! pid=$(pgrep -f "storming-$v work --only rental_status"); do sleep 0.05; done
perf record -F 999 -g -o /tmp/ab/cu-$v.data -p $pid 2>/dev/null >/dev/null
wait
