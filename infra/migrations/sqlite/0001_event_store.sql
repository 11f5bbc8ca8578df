-- The event store. The first seven columns and the primary key are what sqlite-es reads and writes
-- (it turns a primary-key violation into an optimistic-concurrency conflict). The rest is ours:
--   position    - the global log order. SQLite has one writer at a time, so a position assigned at
--                 insert (max + 1, by the trigger below) is committed in order: a reader following
--                 `position > last` never skips an event.
--   recorded_at - when the event was stored (RFC 3339, UTC, milliseconds).
CREATE TABLE events
(
    aggregate_type text                          NOT NULL,
    aggregate_id   text                          NOT NULL,
    sequence       integer CHECK (sequence >= 0) NOT NULL,
    event_type     text                          NOT NULL,
    event_version  text                          NOT NULL,
    payload        text                          NOT NULL,
    metadata       text                          NOT NULL,
    position       integer,
    recorded_at    text                          NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;

CREATE UNIQUE INDEX events_position ON events (position);

-- The audit and the write side find a business transaction's events by correlation id.
CREATE INDEX events_correlation ON events (json_extract(metadata, '$.correlation_id'));

CREATE TRIGGER events_assign_position
    AFTER INSERT
    ON events
BEGIN
    UPDATE events SET position = (SELECT COALESCE(MAX(position), 0) + 1 FROM events) WHERE rowid = NEW.rowid;
END;
