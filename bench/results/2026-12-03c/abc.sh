#!/bin/bash
# abc.sh BACKEND ROUNDS TAG GROUPS "V1 V2 V3" [extra]: rotates /tmp/storming-V*
# Each binary V runs with /tmp/storming-bench-V, the harness built from its own commit, when there is one
# (added on 2026-12-05, twenty-fifth session); else with /tmp/storming-bench, as every run before did.
# ABC_COUNT="LABEL=PATTERN" (optional; added on 2026-12-06, thirty-sixth session, for abc2.sh): after
# each run, also writes "LABEL: N", N the lines of that run's whole output (the server's included) that
# match PATTERN.
backend=$1; rounds=$2; tag=$3; groups=$4; vs=($5); shift 5
out=/tmp/ab/$tag.txt
for r in $(seq 1 $rounds); do
  n=${#vs[@]}
  for i in $(seq 0 $((n-1))); do
    v=${vs[$(( (i + r - 1) % n ))]}
    echo "## round $r $v $backend" >> $out
    h=/tmp/storming-bench-$v; [ -x $h ] || h=/tmp/storming-bench
    raw=/tmp/ab/$tag-$v-$r.raw
    $h --backend $backend --server /tmp/storming-$v --groups $groups --out /tmp/ab/$tag-$v-$r.json "$@" > $raw 2>&1
    grep -v WARN $raw | grep -E "clients|ceiling|lag|queries|catch-up|loaded" >> $out
    [ -n "$ABC_COUNT" ] && echo "${ABC_COUNT%%=*}: $(grep -c "${ABC_COUNT#*=}" $raw)" >> $out
    rm -f $raw
  done
done
echo done >> $out
