-- The read side's file beside the log's (ADR 32): SQLite has one writer per file, and the views'
-- batches no longer take the one the commands' appends wait for. The log's file held these three
-- tables until its migration 0008; their meaning is unchanged (see its 0002, 0004 and 0006).
--
-- Where each worker has read the global log up to (`transaction_id`, `position`: see
-- docs/adr/0001), advanced in the same transaction as its effects.
CREATE TABLE checkpoints
(
    name           text PRIMARY KEY,
    transaction_id bigint NOT NULL DEFAULT 0,
    position       bigint NOT NULL DEFAULT 0,
    updated_at     text   NOT NULL
);

-- Worker leases: at most one live owner per worker across processes; `token` fences a stale one.
CREATE TABLE worker_leases
(
    name       text PRIMARY KEY,
    owner      text   NOT NULL,
    token      bigint NOT NULL,
    expires_at bigint NOT NULL
);

-- Projection generations: each projection's tables exist per generation (`rental_status_g2`, ...),
-- created by the projection itself; queries read the `active` one, a rebuild fills `building`.
CREATE TABLE projection_generations
(
    name             text PRIMARY KEY,
    active           bigint NOT NULL,
    active_version   bigint NOT NULL,
    building         bigint,
    building_version bigint,
    retired          bigint,
    retired_at_ms    bigint
);
