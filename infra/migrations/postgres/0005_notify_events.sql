-- Wakes workers in every process when events are committed (LISTEN storming_events), so they need
-- not poll; identical notifications of one transaction are delivered once, at commit.
CREATE FUNCTION storming_notify_events() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('storming_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_notify
    AFTER INSERT
    ON events
    FOR EACH STATEMENT
EXECUTE FUNCTION storming_notify_events();
