#!/bin/bash
v=$1; tag=$2
h=/tmp/storming-bench-$v; [ -x $h ] || h=/tmp/storming-bench
$h --backend sqlite --server /tmp/storming-$v --groups commands --clients 64 ${ARGS:---seconds 10 --warmup 3 --repeats 1} > /tmp/ab/ht-$tag-run.txt 2>&1 &
pid=""
while [ -z "$pid" ]; do sleep 0.02; pid=$(pgrep -f "storming-$v serve" | head -1); done
cd /tmp/ab && heaptrack -p $pid -o /tmp/ab/ht-$tag > /tmp/ab/ht-$tag-attach.txt 2>&1 &
wait
grep clients /tmp/ab/ht-$tag-run.txt
