#!/bin/bash
# p99diag.sh V TAG: a 16-client SQLite point; perf trace of the server's fsync/fdatasync/fcntl for 5 s from 6 s in.
# Since the twenty-seventh session (2026-12-05g), with the same defaults: CLIENTS, SECS and EVENTS
# ("all" for every syscall) set the point's clients, the trace's length and what it traces, and the
# server's threads are listed too (/tmp/ab/diag-TAG-threads.txt).
v=$1; tag=$2
h=/tmp/storming-bench-$v; [ -x $h ] || h=/tmp/storming-bench
$h --backend sqlite --server /tmp/storming-$v --groups commands --clients ${CLIENTS:-16} --seconds 10 --warmup 3 --repeats 1 > /tmp/ab/diag-$tag-run.txt 2>&1 &
pid=""
while [ -z "$pid" ]; do sleep 0.05; pid=$(pgrep -f "storming-$v serve" | head -1); done
sleep 6
ls -l /proc/$pid/fd > /tmp/ab/diag-$tag-fds.txt 2>/dev/null
for t in /proc/$pid/task/*; do echo "$(basename $t) $(cat $t/comm)"; done > /tmp/ab/diag-$tag-threads.txt
events=${EVENTS:-fsync,fdatasync,fcntl}; [ "$events" = all ] && filter="" || filter="-e $events"
timeout -s INT ${SECS:-5} perf trace -p $pid $filter -o /tmp/ab/diag-$tag-trace.txt > /dev/null 2>&1
wait
grep clients /tmp/ab/diag-$tag-run.txt
