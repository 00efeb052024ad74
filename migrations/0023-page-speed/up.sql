-- Indexes that let the front desk's heaviest pages answer from an index alone at
-- 1 000 000 orders (issue 20's 30 ms first byte).

-- The masters' workload (dashboard and /workload): orders closed in the last 90 days per
-- master, with their repair time, scoped by branch. Carrying master, branch and intake
-- time in the index spares one table lookup per closed order.
DROP INDEX orders_closed;
CREATE INDEX orders_closed ON orders(closed_at, master_id, branch_id, created_at);

-- Revenue per day and for today / the week / the month: the amount and kind ride in the
-- index, so the sum reads no payment rows.
DROP INDEX payments_created;
CREATE INDEX payments_created ON payments(created_at, kind, amount, order_id);

-- The activity log's filter by action, and the list of actions its filter offers (read
-- as a skip over this index, not a scan of the log).
CREATE INDEX activity_log_action ON activity_log(action, at);
