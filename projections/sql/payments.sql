-- payments, generation {g}: one row per charge.
CREATE TABLE payments_g{g}
(
    payment_id       text PRIMARY KEY,
    reference_flow   text   NOT NULL,
    reference_kind   text   NOT NULL,
    reference_id     text   NOT NULL,
    customer_id      text   NOT NULL,
    amount           bigint NOT NULL,
    status           text   NOT NULL,
    authorization_id text   NOT NULL,
    refund_id        text,
    updated_at       text   NOT NULL
);
CREATE INDEX payments_g{g}_reference ON payments_g{g} (reference_id);
