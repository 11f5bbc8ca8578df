-- Projection generations: each projection's tables exist per generation (`rental_status_g2`, ...),
-- created by the projection itself from its `projections/sql/*.sql`. Queries read the `active`
-- generation; a rebuild fills the `building` one from position 0 in the background and the two are
-- switched in one UPDATE once it has caught up. The previous generation is `retired` and its
-- tables are dropped after a grace period, so that queries already under way still find them.
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
