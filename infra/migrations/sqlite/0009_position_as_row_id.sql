-- The log's position is its table's own row id (ADR 37). The table was a row id table with three
-- b-trees beside it: its (type, id, sequence) key, a unique index on position, and the correlation
-- index; every event was written into all four. Keyed by position, the table is the log in order,
-- the index on position is gone, and a row stored without a position (the benchmark's loader, an
-- older binary) is numbered by SQLite itself, the newest plus one, as the trigger did. The events
-- are copied in order, in this migration's transaction: 7-9 s for 1,000,000 events on the benchmark
-- machine (bench/results/2026-12-05h/migtime.txt).
CREATE TABLE events_by_position
(
    position       integer PRIMARY KEY,
    aggregate_type text                          NOT NULL,
    aggregate_id   text                          NOT NULL,
    sequence       integer CHECK (sequence >= 0) NOT NULL,
    event_type     text                          NOT NULL,
    event_version  text                          NOT NULL,
    payload        text                          NOT NULL,
    metadata       text                          NOT NULL,
    recorded_at    text                          NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (aggregate_type, aggregate_id, sequence)
) STRICT;

INSERT INTO events_by_position (position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload,
                                metadata, recorded_at)
SELECT position, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, recorded_at
FROM events
ORDER BY position;

DROP TABLE events;

ALTER TABLE events_by_position RENAME TO events;

CREATE INDEX events_correlation ON events (json_extract(metadata, '$.correlation_id'));
