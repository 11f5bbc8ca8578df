#!/bin/bash
# migtime.sh: a log of 1,000,000 events made by A (migrations 1-8, rows written by sqlite3), then R's first
# start on it (migration 0009, ADR 37) and its second, each timed to /readyz. Output: migtime.txt.
set -e
d=/tmp/mig; rm -rf $d; mkdir -p $d
export STORMING_DATABASE_URL=sqlite://$d/old.db STORMING_LISTEN=127.0.0.1:18099 STORMING_JWT_SECRET=0123456789abcdef0123456789abcdef
/tmp/storming-A serve > $d/a.log 2>&1 &
p=$!; for i in $(seq 1 100); do curl -sf http://127.0.0.1:18099/readyz > /dev/null && break; sleep 0.1; done; kill $p; wait $p || true
sqlite3 $d/old.db "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 1000000) INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, position) SELECT 'rental.book_copy', 'copy-' || (x % 1000), x / 1000 + 1, 'BookReturned', '1.0', '{\"rental_id\":\"0192f1c2-7a3b-7cde-8f01-23456789abcd\",\"returned_at\":\"2026-12-05T00:00:00Z\"}', '{\"correlation_id\":\"' || x || '\",\"causation_id\":\"c\",\"actor\":\"bench\"}', x FROM n;"
ls -la $d/old.db*
start=$(date +%s.%N)
/tmp/storming-R serve > $d/r.log 2>&1 &
p=$!; for i in $(seq 1 1200); do curl -sf http://127.0.0.1:18099/readyz > /dev/null && break; sleep 0.05; done
end=$(date +%s.%N); kill $p; wait $p || true
echo "R's first start on a log of 1,000,000 events (migration 0009 included): $(echo "$end - $start" | bc) s to /readyz"
sqlite3 $d/old.db "SELECT COUNT(*), MIN(position), MAX(position) FROM events; SELECT name FROM sqlite_master WHERE tbl_name='events';"
start=$(date +%s.%N)
/tmp/storming-R serve > $d/r2.log 2>&1 &
p=$!; for i in $(seq 1 1200); do curl -sf http://127.0.0.1:18099/readyz > /dev/null && break; sleep 0.05; done
end=$(date +%s.%N); kill $p; wait $p || true
echo "R's second start: $(echo "$end - $start" | bc) s to /readyz"
