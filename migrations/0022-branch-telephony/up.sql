-- Branches as scope for telephony, conversations and customers (issue 19, part two).

-- The branch a DID (an inbound route) or a ring group answers for. NULL: the whole
-- shop. A call takes its branch from them (see docs/ARCHITECTURE.md).
ALTER TABLE sip_dids ADD COLUMN branch_id INTEGER REFERENCES branches(id);
ALTER TABLE sip_ring_groups ADD COLUMN branch_id INTEGER REFERENCES branches(id);

-- The branch each call belongs to (NULL: a shop-wide call, seen by every branch).
ALTER TABLE calls ADD COLUMN branch_id INTEGER REFERENCES branches(id);
CREATE INDEX calls_branch ON calls(branch_id, started_ms);

-- A missed-call entry per number and branch: the caller who missed branch A and branch B
-- is called back by each.
ALTER TABLE missed_calls ADD COLUMN branch_id INTEGER REFERENCES branches(id);
DROP INDEX missed_open;
CREATE UNIQUE INDEX missed_open ON missed_calls(number, coalesce(branch_id, 0)) WHERE resolved_ms IS NULL;

-- Business hours of a branch in the `sip.hours` / `sip.holidays` formats; empty: the
-- shop's. They decide the after-hours routing of calls on the branch's DIDs.
ALTER TABLE branches ADD COLUMN sip_hours TEXT NOT NULL DEFAULT '';
ALTER TABLE branches ADD COLUMN sip_holidays TEXT NOT NULL DEFAULT '';

-- The branch a customer was created in (for the "customers per branch" setting).
ALTER TABLE customers ADD COLUMN branch_id INTEGER REFERENCES branches(id);
