#!/bin/bash
# pgcu-prof.sh V TAG EVENTS: PostgreSQL catch-up group; system-wide perf from the load's end for SECS
v=$1; tag=$2; ev=${3:-300000}
out=/tmp/ab/pgcuprof-$tag-run.txt
/tmp/storming-bench-$v --backend postgres --server /tmp/storming-$v --groups catchup --catchup-events $ev --repeats 1 > $out 2>&1 &
hp=$!
while ! grep -q loaded $out; do sleep 0.2; done
perf record -a -F 499 ${CG:-} -o /tmp/ab/pgcuprof-$tag.data -- sleep ${SECS:-8} > /dev/null 2>&1
wait $hp
grep -E "loaded|catch-up" $out
