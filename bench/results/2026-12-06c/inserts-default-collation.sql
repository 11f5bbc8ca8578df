\timing on
DROP TABLE IF EXISTS rs_t;
CREATE TABLE rs_t (rental_id text PRIMARY KEY, book_id text NOT NULL, title text NOT NULL, customer_id text NOT NULL, status text NOT NULL, overdue bigint NOT NULL, payment_id text NOT NULL, payment_status text NOT NULL, fee bigint NOT NULL, rented_at text NOT NULL, due_at text NOT NULL, returned_at text, cancelled_at text, updated_at text NOT NULL);
CREATE INDEX rs_t_payment ON rs_t (payment_id);
CREATE TEMP TABLE src AS SELECT g, lpad(to_hex(g*2),12,$q$0$q$)||substr(gen_random_uuid()::text,13) AS rid, lpad(to_hex(g*2+1),12,$q$0$q$)||substr(gen_random_uuid()::text,13) AS pid FROM generate_series(1,500000) g;
CREATE INDEX ON src (g); ANALYZE src;
DO $$
DECLARE i int; t0 timestamptz; BEGIN
t0 := clock_timestamp();
FOR i IN 0..249 LOOP
  INSERT INTO rs_t SELECT rid, 'book-'||(g%1000), 'Book '||(g%1000), 'customer-'||(g%1000), 'RETURNED', 0, pid, 'PAID', 1000, '2026-12-06T07:00:00.000Z','2026-12-20T07:00:00.000Z','2026-12-06T07:00:00.000Z',NULL,'2026-12-06T07:00:00.000Z' FROM src WHERE g > i*2000 AND g <= (i+1)*2000 ON CONFLICT (rental_id) DO NOTHING;
END LOOP;
RAISE NOTICE 'inserts % ms', extract(epoch from clock_timestamp()-t0)*1000;
END $$;
