#!/bin/bash
# probe1.sh V: 1-client commands for 20 s; server CPU (utime+stime ticks) and context switches over 10 s in the middle
v=$1
/tmp/storming-bench --backend postgres --server /tmp/storming-$v --groups commands --clients 1 --seconds 20 --warmup 3 --repeats 1 > /tmp/ab/probe1-$v.out 2>&1 &
sleep 12
PID=$(pgrep -f "^/tmp/storming-$v serve" | head -1)
read_stat() { awk '{print $14+$15}' /proc/$PID/stat; }
ctx() { grep ctxt_switches /proc/$PID/status | awk '{s+=$2} END {print s}'; }
c0=$(read_stat); x0=$(ctx); sleep 10; c1=$(read_stat); x1=$(ctx)
wait
rate=$(grep -v WARN /tmp/ab/probe1-$v.out | grep -o "clients: *[0-9]*/s" | grep -o "[0-9]*/s")
echo "$v rate $rate server_cpu_ticks_10s $((c1-c0)) ctx_10s $((x1-x0)) $(grep -v WARN /tmp/ab/probe1-$v.out | grep -o 'steal [0-9]*%')"
