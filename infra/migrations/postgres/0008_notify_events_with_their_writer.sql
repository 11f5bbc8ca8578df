-- Each commit's notification names the process that wrote its events (the `storming.writer` setting
-- of its connections; empty for any other writer), so that a process can tell another's commits
-- from its own (ADR 48). One process's statements in one transaction still notify once.
CREATE OR REPLACE FUNCTION storming_notify_events() RETURNS trigger
    LANGUAGE plpgsql AS
$$
BEGIN
    PERFORM pg_notify('storming_events', coalesce(current_setting('storming.writer', true), ''));
    RETURN NULL;
END
$$;
