-- rental_status, generation {g}: one row per rental.
CREATE TABLE rental_status_g{g}
(
    rental_id      text PRIMARY KEY,
    book_id        text   NOT NULL,
    title          text   NOT NULL,
    customer_id    text   NOT NULL,
    status         text   NOT NULL,
    overdue        bigint NOT NULL, -- 0 or 1, as book_catalog.on_shelf
    payment_id     text   NOT NULL,
    payment_status text   NOT NULL,
    fee            bigint NOT NULL,
    rented_at      text   NOT NULL,
    due_at         text   NOT NULL,
    returned_at    text,
    cancelled_at   text,
    updated_at     text   NOT NULL
);
-- PaymentRefunded finds its rental by payment.
CREATE INDEX rental_status_g{g}_payment ON rental_status_g{g} (payment_id);
