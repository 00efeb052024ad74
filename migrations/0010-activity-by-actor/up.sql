-- The admin filters the activity log by who acted; one person's changes, newest first,
-- without reading everyone's.
CREATE INDEX activity_log_actor ON activity_log(actor_id, at);
