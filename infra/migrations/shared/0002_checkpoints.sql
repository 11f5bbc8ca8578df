-- Where each worker has read the global log up to (`transaction_id`, `position`: see
-- docs/adr/0001), advanced in the same transaction as its effects. Shared by both backends.
--
-- The views themselves are created per generation by their projections (projections/sql/*.sql,
-- registry in 0006), so that they can be rebuilt beside the live ones.
CREATE TABLE checkpoints
(
    name           text PRIMARY KEY,
    transaction_id bigint NOT NULL DEFAULT 0,
    position       bigint NOT NULL DEFAULT 0,
    updated_at     text   NOT NULL
);
