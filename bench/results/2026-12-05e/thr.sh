#!/bin/bash
v=$1
/tmp/storming-bench-$v --backend sqlite --server /tmp/storming-$v --groups commands --clients 64 --seconds 10 --warmup 3 --repeats 1 > /tmp/ab/thr-$v-run.txt 2>&1 &
sleep 12
pid=$(pgrep -f "storming-$v serve")
for t in /proc/$pid/task/*; do echo "$(cat $t/comm) $(grep -E 'VmRSS' $t/status 2>/dev/null | head -1)"; done | sort | uniq -c > /tmp/ab/thr-$v.txt
grep -E 'Rss|Anon' /proc/$pid/smaps_rollup >> /tmp/ab/thr-$v.txt
wait
