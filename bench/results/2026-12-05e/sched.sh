#!/bin/bash
v=$1
/tmp/storming-bench-$v --backend sqlite --server /tmp/storming-$v --groups commands --clients 1 --seconds 10 --warmup 3 --repeats 1 > /tmp/ab/sched-$v.txt 2>&1 &
sleep 8
perf sched record -a -o /tmp/ab/sched-$v.data -- sleep 2 2>/dev/null >/dev/null
wait
