#!/bin/bash
# abc2.sh BACKEND ROUNDS TAG GROUPS "V1 V2" [extra]: as abc.sh, and counts the server's refund warnings per run
backend=$1; rounds=$2; tag=$3; groups=$4; vs=($5); shift 5
out=/tmp/ab/$tag.txt
for r in $(seq 1 $rounds); do
  n=${#vs[@]}
  for i in $(seq 0 $((n-1))); do
    v=${vs[$(( (i + r - 1) % n ))]}
    echo "## round $r $v $backend" >> $out
    h=/tmp/storming-bench-$v; [ -x $h ] || h=/tmp/storming-bench
    $h --backend $backend --server /tmp/storming-$v --groups $groups --out /tmp/ab/$tag-$v-$r.json "$@" > /tmp/ab/$tag-$v-$r.raw 2>&1
    grep -v WARN /tmp/ab/$tag-$v-$r.raw | grep -E "clients|ceiling|lag|queries|catch-up|loaded" >> $out
    echo "refund warnings: $(grep -c 'refunded a charge whose command was not recorded' /tmp/ab/$tag-$v-$r.raw)" >> $out
    rm -f /tmp/ab/$tag-$v-$r.raw
  done
done
echo done >> $out
