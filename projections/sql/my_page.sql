-- my_page, generation {g}: one profile and many rows per customer, across every flow.
CREATE TABLE my_page_profiles_g{g}
(
    customer_id   text PRIMARY KEY,
    name          text NOT NULL,
    phone         text,
    registered_at text NOT NULL
);
CREATE TABLE my_page_items_g{g}
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
-- Every write finds its row by the key: the rental events and PaymentRefunded carry the customer.
