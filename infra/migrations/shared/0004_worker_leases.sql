-- Worker leases: at most one live owner per worker across processes and machines.
--
-- An owner holds a worker while `expires_at` (milliseconds since the epoch) is ahead; it renews
-- the lease in every transaction that advances the worker's checkpoint, guarded by `token`, which
-- grows with every change of owner. A paused old owner therefore cannot write a stale checkpoint:
-- its token no longer matches (fencing). A stand-by replica takes an expired lease over.
CREATE TABLE worker_leases
(
    name       text PRIMARY KEY,
    owner      text   NOT NULL,
    token      bigint NOT NULL,
    expires_at bigint NOT NULL
);
