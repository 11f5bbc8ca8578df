#!/bin/bash
# ab.sh BACKEND ROUNDS TAG A B GROUPS [extra bench args...]: alternates /tmp/storming-A and -B
backend=$1; rounds=$2; tag=$3; a=$4; b=$5; groups=$6; shift 6
out=/tmp/ab/$tag.txt
for r in $(seq 1 $rounds); do
  if [ $((r % 2)) -eq 1 ]; then order="$a $b"; else order="$b $a"; fi
  for v in $order; do
    echo "## round $r $v $backend" >> $out
    /tmp/storming-bench --backend $backend --server /tmp/storming-$v --groups $groups --out /tmp/ab/$tag-$v-$r.json "$@" 2>&1 | grep -v WARN | grep -E "clients|ceiling|queries|lag|catch|rebuild" >> $out
  done
done
echo done >> $out
