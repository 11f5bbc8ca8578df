-- The event store. The first seven columns and the primary key are what postgres-es reads and
-- writes (a unique violation becomes an optimistic-concurrency conflict). The rest is ours:
--   global_position - assigned at insert, so NOT committed in order under concurrent writers;
--   transaction_id  - the writing transaction (xid8). Readers follow the log by
--                     (transaction_id, global_position) and only read transactions below the
--                     snapshot's xmin, so an event committed late is never skipped (DESIGN.md);
--   recorded_at     - when the event was stored.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         jsonb                        NOT NULL,
    metadata        jsonb                        NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE UNIQUE INDEX events_global_position ON events (global_position);
CREATE INDEX events_log_order ON events (transaction_id, global_position);

-- The audit and the write side find a business transaction's events by correlation id.
CREATE INDEX events_correlation ON events ((metadata ->> 'correlation_id'));
