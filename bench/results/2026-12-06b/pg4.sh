#!/bin/bash
out=/tmp/ab/pg4.txt
/tmp/storming-bench-D --backend postgres --server /tmp/storming-D --groups commands --clients 4 --seconds 20 --warmup 3 --repeats 1 --out /tmp/ab/pg4.json > $out 2>&1 &
h=$!
sleep 12
perf record -a -g -F 1500 -o /tmp/ab/pg4.perf -- sleep 8 > /dev/null 2>&1
wait $h
echo done >> $out
