-- Read models (materialized views) and worker checkpoints. Every table here is derived from the
-- event log and can be dropped and rebuilt from it. Times are RFC 3339 text (UTC), taken from the
-- events' recorded_at, so a rebuild reproduces the same rows.
--
-- One file for both backends, written in the SQL they share (docs/adr/0002); sqlite/ and
-- postgres/ link to it.

-- Where each worker has read the global log up to; advanced in the same transaction as its effects.
CREATE TABLE checkpoints
(
    name           text PRIMARY KEY,
    transaction_id bigint NOT NULL DEFAULT 0,
    position       bigint NOT NULL DEFAULT 0,
    updated_at     text   NOT NULL
);

-- book_catalog: every registered book with its fee and availability.
CREATE TABLE book_catalog
(
    book_id           text PRIMARY KEY,
    title             text    NOT NULL,
    author            text,
    rental_fee        bigint  NOT NULL,
    on_shelf          bigint  NOT NULL, -- 0 or 1: sqlx's Any driver reads no SQLite boolean
    availability      text    NOT NULL,
    current_rental_id text,
    updated_at        text    NOT NULL
);

-- rental_status: one row per rental.
CREATE TABLE rental_status
(
    rental_id      text PRIMARY KEY,
    book_id        text    NOT NULL,
    title          text    NOT NULL,
    customer_id    text    NOT NULL,
    status         text    NOT NULL,
    overdue        bigint  NOT NULL, -- 0 or 1, as on_shelf
    payment_id     text    NOT NULL,
    payment_status text    NOT NULL,
    fee            bigint  NOT NULL,
    rented_at      text    NOT NULL,
    due_at         text    NOT NULL,
    returned_at    text,
    cancelled_at   text,
    updated_at     text    NOT NULL
);
CREATE INDEX rental_status_customer ON rental_status (customer_id, rental_id);
CREATE INDEX rental_status_book ON rental_status (book_id, rental_id);
CREATE INDEX rental_status_payment ON rental_status (payment_id);

-- payments: one row per charge.
CREATE TABLE payments
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
CREATE INDEX payments_reference ON payments (reference_id);

-- my_page: one profile and many rows per customer, across every flow.
CREATE TABLE my_page_profiles
(
    customer_id   text PRIMARY KEY,
    name          text NOT NULL,
    phone         text,
    registered_at text NOT NULL
);

CREATE TABLE my_page_items
(
    customer_id    text   NOT NULL,
    flow           text   NOT NULL,
    item_id        text   NOT NULL,
    title          text   NOT NULL,
    status         text   NOT NULL,
    payment_status text   NOT NULL,
    amount         bigint NOT NULL,
    updated_at     text   NOT NULL,
    PRIMARY KEY (customer_id, item_id)
);
CREATE INDEX my_page_items_item ON my_page_items (item_id);
