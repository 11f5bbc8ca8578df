-- Idempotency keys of commands (the `Idempotency-Key` header): one row per caller and key.
--
-- A row is reserved before the command runs, with the ids the command will use (its rental id,
-- payment id, ...) and the answer it will give, so that concurrent retries act on the very same
-- rental and are answered alike. `position` is set in the same transaction that stores the
-- command's events; a row without it is a command still running or one that failed (the latter is
-- deleted, so that the client may try again). Shared by both backends.
CREATE TABLE idempotency_keys
(
    caller       text   NOT NULL,
    key          text   NOT NULL,
    request      text   NOT NULL, -- method, path and canonical JSON body of the first request
    reserved_ids text   NOT NULL, -- JSON array of the ids the command uses
    status       bigint NOT NULL, -- the answer's HTTP status
    response_id  text   NOT NULL,
    location     text,
    position     bigint,
    created_at   text   NOT NULL,
    PRIMARY KEY (caller, key)
);
