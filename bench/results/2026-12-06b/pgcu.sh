#!/bin/bash
# pgcu.sh TAG BIN: the catch-up group on PostgreSQL, perf -a during rental_status's catch-up
tag=$1; bin=$2
out=/tmp/ab/$tag.txt
${BENCH:-/tmp/storming-bench} --backend postgres --server $bin --groups catchup --out /tmp/ab/$tag.json > $out 2>&1 &
h=$!
until grep -q loaded $out; do sleep 0.5; done
sleep 3
perf record -a -g -F 1500 -o /tmp/ab/$tag.perf -- sleep 10 > /dev/null 2>&1
wait $h
echo done >> $out
