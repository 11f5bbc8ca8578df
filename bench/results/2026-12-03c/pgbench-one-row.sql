\set id random(1, 1000000000)
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) VALUES ('Rental', 'r-' || :id || '-' || :client_id, 1, 'BookRented', '1.0', '{"BookRented":{"book_id":"b-1234567","customer_id":"c-123"}}', '{"correlation_id":"abc-def"}') RETURNING global_position;
