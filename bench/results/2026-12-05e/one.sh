#!/bin/bash
# one.sh V: commands at one client on binary V; perf stat of the server and perf record -a of the machine
v=$1
/tmp/storming-bench-$v --backend sqlite --server /tmp/storming-$v --groups commands --clients 1 --seconds 10 --warmup 3 --repeats 2 > /tmp/ab/one-$v.txt 2>&1 &
sleep 8
pid=$(pgrep -f "storming-$v serve")
perf stat -o /tmp/ab/one-$v-stat.txt -e task-clock,context-switches,cpu-migrations,syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_fsync,syscalls:sys_enter_pwrite64,syscalls:sys_enter_pread64,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev -p $pid -- sleep 5
perf record -a -F 999 -o /tmp/ab/one-$v.data -- sleep 5 2>/dev/null >/dev/null
wait
