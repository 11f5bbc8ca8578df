#!/bin/bash
# cs.sh V TAG CLIENTS: context switches and syscalls of the server over 5 s of a commands point, per thread
v=$1; tag=$2; clients=${3:-1}
h=/tmp/storming-bench-$v; [ -x $h ] || h=/tmp/storming-bench
$h --backend sqlite --server /tmp/storming-$v --groups commands --clients $clients --seconds 10 --warmup 3 --repeats 1 > /tmp/ab/cs-$tag-run.txt 2>&1 &
pid=""
while [ -z "$pid" ]; do sleep 0.05; pid=$(pgrep -f "storming-$v serve" | head -1); done
sleep 6
for t in /proc/$pid/task/*; do echo "$(basename $t) $(cat $t/comm) $(grep -E '^(voluntary|nonvoluntary)_ctxt_switches' $t/status | awk '{printf "%s ", $2}')"; done > /tmp/ab/cs-$tag-before.txt
sleep 5
for t in /proc/$pid/task/*; do echo "$(basename $t) $(cat $t/comm) $(grep -E '^(voluntary|nonvoluntary)_ctxt_switches' $t/status | awk '{printf "%s ", $2}')"; done > /tmp/ab/cs-$tag-after.txt
wait
grep clients /tmp/ab/cs-$tag-run.txt
join <(sort /tmp/ab/cs-$tag-before.txt) <(sort /tmp/ab/cs-$tag-after.txt) | awk '{v=$6-$3; n=$7-$4; if (v+n>0) printf "%s %s vol %d invol %d\n", $1, $2, v, n}'
