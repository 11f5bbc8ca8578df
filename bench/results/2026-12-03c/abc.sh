#!/bin/bash
# abc.sh BACKEND ROUNDS TAG GROUPS "V1 V2 V3" [extra]: rotates /tmp/storming-V*
# Each binary V runs with /tmp/storming-bench-V, the harness built from its own commit, when there is one
# (added on 2026-12-05, twenty-fifth session); else with /tmp/storming-bench, as every run before did.
backend=$1; rounds=$2; tag=$3; groups=$4; vs=($5); shift 5
out=/tmp/ab/$tag.txt
for r in $(seq 1 $rounds); do
  n=${#vs[@]}
  for i in $(seq 0 $((n-1))); do
    v=${vs[$(( (i + r - 1) % n ))]}
    echo "## round $r $v $backend" >> $out
    h=/tmp/storming-bench-$v; [ -x $h ] || h=/tmp/storming-bench; $h --backend $backend --server /tmp/storming-$v --groups $groups --out /tmp/ab/$tag-$v-$r.json "$@" 2>&1 | grep -v WARN | grep -E "clients|ceiling|lag|queries|catch-up|loaded" >> $out
  done
done
echo done >> $out
