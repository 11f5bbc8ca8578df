-- rental_status, generation {g}: the indexes of the lists by customer and by book, built once the
-- generation has caught up with the log.
CREATE INDEX IF NOT EXISTS rental_status_g{g}_customer ON rental_status_g{g} (customer_id, rental_id);
CREATE INDEX IF NOT EXISTS rental_status_g{g}_book ON rental_status_g{g} (book_id, rental_id);
