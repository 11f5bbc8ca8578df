#!/bin/bash
v=$1; tag=$2
h=/tmp/storming-bench-$v
$h --backend sqlite --server /tmp/storming-$v --groups commands --clients ${CLIENTS:-16} --seconds 10 --warmup 3 --repeats 1 > /tmp/ab/prof-$tag-run.txt 2>&1 &
pid=""
while [ -z "$pid" ]; do sleep 0.05; pid=$(pgrep -f "storming-$v serve" | head -1); done
sleep 6
perf record -F 499 ${CG:--g} -p $pid -o /tmp/ab/prof-$tag.data -- sleep ${SECS:-5} > /dev/null 2>&1
wait
grep clients /tmp/ab/prof-$tag-run.txt
