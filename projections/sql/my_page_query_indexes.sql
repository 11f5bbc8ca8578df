-- my_page, generation {g}: a customer's page, newest first, built once the generation has caught
-- up with the log (kept up row by row during a catch-up, it dirtied a page per customer a batch
-- touched).
CREATE INDEX IF NOT EXISTS my_page_items_g{g}_customer ON my_page_items_g{g} (customer_id, item_id);
