#!/bin/bash
# sample.sh V TAG: one 64-client commands point, RSS sampled every 100 ms (anon/file split) and smaps at the peak
v=$1; tag=$2
h=/tmp/storming-bench-$v; [ -x $h ] || h=/tmp/storming-bench
$h --backend sqlite --server /tmp/storming-$v --groups commands --clients 64 ${ARGS:---seconds 10 --warmup 3 --repeats 1} > /tmp/ab/samp-$tag-run.txt 2>&1 &
pid=""
while [ -z "$pid" ]; do sleep 0.05; pid=$(pgrep -f "storming-$v serve" | head -1); done
best=0
: > /tmp/ab/samp-$tag.txt
start=$(date +%s.%N)
while kill -0 $pid 2>/dev/null; do
  l=$(grep -E 'VmRSS|RssAnon|RssFile|Threads' /proc/$pid/status 2>/dev/null | awk '{printf "%s ", $2}')
  t=$(echo "$(date +%s.%N) - $start" | bc)
  echo "$t $l" >> /tmp/ab/samp-$tag.txt
  r=$(echo $l | awk '{print $1}')
  if [ -n "$r" ] && [ "$r" -gt "$best" ]; then best=$r; cp /proc/$pid/smaps /tmp/ab/samp-$tag-smaps.txt 2>/dev/null; fi
  sleep 0.1
done
wait
grep clients /tmp/ab/samp-$tag-run.txt
