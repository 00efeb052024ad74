-- Order lists on a million orders: the overdue test as a stored due time, indexes that
-- give each filter its rows already in list order.

-- When an open order becomes overdue: the earlier of its status's time limit and (until
-- it is ready) its promised date; NULL when closed or when neither applies. "Overdue" is
-- then `due_at < now`. The triggers keep it in step on every path that writes orders
-- (the app, the seed, merges), so no caller can forget it.
ALTER TABLE orders ADD COLUMN due_at INTEGER;

CREATE TRIGGER orders_due_on_insert AFTER INSERT ON orders BEGIN
    UPDATE orders SET due_at = (
        SELECT CASE WHEN s.grp = 'closed' THEN NULL ELSE coalesce(
            min(NEW.status_since + s.limit_hours * 3600, CASE WHEN s.grp <> 'ready' THEN NEW.promised_at END),
            NEW.status_since + s.limit_hours * 3600,
            CASE WHEN s.grp <> 'ready' THEN NEW.promised_at END) END
        FROM statuses s WHERE s.id = NEW.status_id)
    WHERE id = NEW.id;
END;

CREATE TRIGGER orders_due_on_update AFTER UPDATE OF status_id, status_since, promised_at ON orders BEGIN
    UPDATE orders SET due_at = (
        SELECT CASE WHEN s.grp = 'closed' THEN NULL ELSE coalesce(
            min(NEW.status_since + s.limit_hours * 3600, CASE WHEN s.grp <> 'ready' THEN NEW.promised_at END),
            NEW.status_since + s.limit_hours * 3600,
            CASE WHEN s.grp <> 'ready' THEN NEW.promised_at END) END
        FROM statuses s WHERE s.id = NEW.status_id)
    WHERE id = NEW.id;
END;

UPDATE orders SET due_at = (
    SELECT CASE WHEN s.grp = 'closed' THEN NULL ELSE coalesce(
        min(orders.status_since + s.limit_hours * 3600, CASE WHEN s.grp <> 'ready' THEN orders.promised_at END),
        orders.status_since + s.limit_hours * 3600,
        CASE WHEN s.grp <> 'ready' THEN orders.promised_at END) END
    FROM statuses s WHERE s.id = orders.status_id)
WHERE closed_at IS NULL;

-- A status's or a master's orders in id order (the rowid ends every index entry), so a
-- list sorted by number reads one index range instead of sorting a master's history.
DROP INDEX orders_status;
CREATE INDEX orders_status ON orders(status_id);
DROP INDEX orders_master;
CREATE INDEX orders_master ON orders(master_id);

-- Open orders only (a shop's current work: thousands, while closed ones grow forever),
-- in id order with what the list filters on, so open-group, overdue and per-master
-- queues and the dashboard's counts read this small index alone.
CREATE INDEX orders_open ON orders(id, status_id, master_id, branch_id, due_at) WHERE closed_at IS NULL;
