-- The read side moved to a file of its own beside this one (`NAME-views.db`, ADR 32), whose
-- migrations create these tables there. Here they are dropped, with what they held: positions,
-- leases and the generations' registry, all derived or redone, so the views rebuild from the log
-- in the new file. The views' own tables (`rental_status_g1`, ...) are dropped by the process
-- after this migration (`db::drop_views_left_in_the_log`): their names vary with the generation.
DROP TABLE checkpoints;
DROP TABLE worker_leases;
DROP TABLE projection_generations;
