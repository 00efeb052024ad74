-- Transfers (issue 15): a call that continues another one after a REFER keeps who passed
-- it on (the extension) and the call id of the call it continues, so the log shows the
-- chain and the screen-pop says who transferred it.
ALTER TABLE calls ADD COLUMN transferred_by TEXT;
ALTER TABLE calls ADD COLUMN transferred_from TEXT;
