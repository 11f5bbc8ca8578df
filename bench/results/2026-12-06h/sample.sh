#!/bin/bash
# prints every second: the bench database's events-table index scans and committed transactions
while true; do
  db=$(psql -h 127.0.0.1 -U postgres -Atc "select datname from pg_database where datname like 'storming_bench%' order by oid desc limit 1" 2>/dev/null)
  if [ -n "$db" ]; then
    r=$(psql -h 127.0.0.1 -U postgres -d $db -Atc "select coalesce(idx_scan,0), n_tup_ins from pg_stat_user_tables where relname='events'" 2>/dev/null)
    x=$(psql -h 127.0.0.1 -U postgres -Atc "select xact_commit from pg_stat_database where datname='$db'" 2>/dev/null)
    echo "$(date +%s) $db $r $x"
  fi
  sleep 1
done
