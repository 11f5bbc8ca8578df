-- SQLite's write side gives an event its position in its INSERT from this migration on;
-- PostgreSQL's identity column already does. This migration is empty so that both backends share
-- the numbering.
SELECT 1;
