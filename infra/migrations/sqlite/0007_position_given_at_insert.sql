-- The write side now gives an event its position in its own INSERT (the next after the newest,
-- under the same single-writer lock), so that `RETURNING position` tells the command where its
-- event is in the log. The trigger numbers only rows inserted without one (other writers, older
-- binaries); numbering a row that has one would move it past itself.
DROP TRIGGER events_assign_position;

CREATE TRIGGER events_assign_position
    AFTER INSERT
    ON events
    WHEN NEW.position IS NULL
BEGIN
    UPDATE events SET position = (SELECT COALESCE(MAX(position), 0) + 1 FROM events) WHERE rowid = NEW.rowid;
END;
