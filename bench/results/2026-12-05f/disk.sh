#!/bin/bash
# disk.sh V TAG: a 16-client SQLite point; /proc/diskstats of vda over 10 s from 5 s in (writes, sectors, flushes)
v=$1; tag=$2
h=/tmp/storming-bench-$v; [ -x $h ] || h=/tmp/storming-bench
$h --backend sqlite --server /tmp/storming-$v --groups commands --clients ${CLIENTS:-16} --seconds 10 --warmup 3 --repeats 2 --out /tmp/ab/disk-$tag.json > /tmp/ab/disk-$tag-run.txt 2>&1 &
pid=""
while [ -z "$pid" ]; do sleep 0.05; pid=$(pgrep -f "storming-$v serve" | head -1); done
sleep 5
a=$(grep ' vda ' /proc/diskstats); sa=$(grep -E '^(ctxt)' /proc/stat)
sleep 10
b=$(grep ' vda ' /proc/diskstats)
wait
echo "$a" > /tmp/ab/disk-$tag.txt; echo "$b" >> /tmp/ab/disk-$tag.txt
grep clients /tmp/ab/disk-$tag-run.txt | tee -a /tmp/ab/disk-$tag.txt
echo "$a $b" | awk '{w=$28-$8; s=$30-$10; f=$39-$19; printf "10 s: writes %d, sectors %d (%.1f MB), flushes %d\n", w, s, s*512/1e6, f}' | tee -a /tmp/ab/disk-$tag.txt
