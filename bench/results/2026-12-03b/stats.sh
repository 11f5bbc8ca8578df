#!/bin/bash
# stats.sh LOG: p50 of prep_us, flush_us, transaction_us
for k in prep_us flush_us transaction_us; do
  echo -n "$k "; sed 's/\x1b\[[0-9;]*m//g' $1 | grep -o "$k=[0-9]*" | cut -d= -f2 | sort -n | awk '{a[NR]=$1; s+=$1} END {print "n", NR, "p50", a[int(NR/2)], "p90", a[int(NR*0.9)], "sum_s", s/1e6}'
done
