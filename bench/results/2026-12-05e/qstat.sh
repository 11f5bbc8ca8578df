#!/bin/bash
v=$1
/tmp/storming-bench-$v --backend sqlite --server /tmp/storming-$v --groups queries --clients 16 --seconds 10 --warmup 3 --repeats 2 > /tmp/ab/qstat-$v.txt 2>&1 &
sleep 9
pid=$(pgrep -f "storming-$v serve")
perf stat -o /tmp/ab/qstat-$v-perf.txt -e 'syscalls:sys_enter_pread64,syscalls:sys_enter_pwrite64,syscalls:sys_enter_fcntl,syscalls:sys_enter_fsync,task-clock' -p $pid -- sleep 8
wait
