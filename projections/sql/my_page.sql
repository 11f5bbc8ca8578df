-- my_page, generation {g}: one profile and many rows per customer, across every flow.
CREATE TABLE my_page_profiles_g{g}
(
    customer_id   text PRIMARY KEY,
    name          text NOT NULL,
    phone         text,
    registered_at text NOT NULL
);
-- Every write finds its row by the item's id (a UUID v7: in creation order, so a batch's new rows
-- go to the key's last pages, not to a page per customer). The page by customer is a query index.
CREATE TABLE my_page_items_g{g}
(
    item_id        text PRIMARY KEY,
    customer_id    text   NOT NULL,
    flow           text   NOT NULL,
    title          text   NOT NULL,
    status         text   NOT NULL,
    payment_status text   NOT NULL,
    amount         bigint NOT NULL,
    updated_at     text   NOT NULL
);
