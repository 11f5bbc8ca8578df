-- SQLite has no LISTEN/NOTIFY: workers in the writing process are woken by an in-process signal,
-- and workers in other processes poll. This migration is empty so that both backends share the
-- numbering.
SELECT 1;
