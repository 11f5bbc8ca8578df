-- book_catalog, generation {g}: every registered book with its fee and availability.
CREATE TABLE book_catalog_g{g}
(
    book_id           text PRIMARY KEY,
    title             text   NOT NULL,
    author            text,
    rental_fee        bigint NOT NULL,
    on_shelf          bigint NOT NULL, -- 0 or 1: sqlx's Any driver reads no SQLite boolean
    availability      text   NOT NULL,
    current_rental_id text,
    updated_at        text   NOT NULL
);
