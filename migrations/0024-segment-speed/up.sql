-- Segment counts over a million customers (issue 18): each customer carries the facts a
-- segment asks of their orders, kept exact by triggers on `orders` in the same
-- transaction as the order or payment write, and tags get a table of their own, so every
-- condition of a segment reads an index instead of every customer's orders or tags text.

-- When the customer last brought an order (the latest `orders.created_at`; NULL: never).
ALTER TABLE customers ADD COLUMN last_visit_at INTEGER;
-- What they paid over all their orders (sum of `orders.paid`, so'm).
ALTER TABLE customers ADD COLUMN paid_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE customers ADD COLUMN order_count INTEGER NOT NULL DEFAULT 0;
-- The branch of all their orders: NULL with no order, 0 when their orders are at more
-- than one branch (a segment by branch then looks at those customers' orders).
ALTER TABLE customers ADD COLUMN only_branch_id INTEGER;

UPDATE customers SET (last_visit_at, paid_total, order_count, only_branch_id) = (
    SELECT max(o.created_at), coalesce(sum(o.paid), 0), count(*),
           CASE count(DISTINCT o.branch_id) WHEN 0 THEN NULL WHEN 1 THEN min(o.branch_id) ELSE 0 END
    FROM orders o WHERE o.customer_id = customers.id)
WHERE id IN (SELECT customer_id FROM orders);

-- A new order: its date, its payment (an order can be made already paid) and its branch.
-- (SET expressions see the row as it was: order_count = 0 means this is the first.)
CREATE TRIGGER orders_customer_stats_insert AFTER INSERT ON orders BEGIN
    UPDATE customers SET
        last_visit_at = max(coalesce(last_visit_at, NEW.created_at), NEW.created_at),
        paid_total = paid_total + NEW.paid,
        order_count = order_count + 1,
        only_branch_id = CASE
            WHEN order_count = 0 THEN NEW.branch_id
            WHEN only_branch_id = NEW.branch_id THEN only_branch_id
            ELSE 0 END
    WHERE id = NEW.customer_id;
END;

-- A payment or a refund: the difference (the order stays with its customer and branch;
-- any other change is the recount below, which includes the payment).
CREATE TRIGGER orders_customer_stats_paid AFTER UPDATE OF paid ON orders
WHEN OLD.paid IS NOT NEW.paid AND OLD.customer_id = NEW.customer_id
     AND OLD.branch_id = NEW.branch_id AND OLD.created_at = NEW.created_at
BEGIN
    UPDATE customers SET paid_total = paid_total + NEW.paid - OLD.paid WHERE id = NEW.customer_id;
END;

-- An order moved to another customer (a merge), another branch or another date: both
-- customers are counted again from their orders.
CREATE TRIGGER orders_customer_stats_move AFTER UPDATE OF customer_id, branch_id, created_at ON orders
WHEN OLD.customer_id IS NOT NEW.customer_id OR OLD.branch_id IS NOT NEW.branch_id
     OR OLD.created_at IS NOT NEW.created_at
BEGIN
    UPDATE customers SET (last_visit_at, paid_total, order_count, only_branch_id) = (
        SELECT max(o.created_at), coalesce(sum(o.paid), 0), count(*),
               CASE count(DISTINCT o.branch_id) WHEN 0 THEN NULL WHEN 1 THEN min(o.branch_id) ELSE 0 END
        FROM orders o WHERE o.customer_id = customers.id)
    WHERE id IN (OLD.customer_id, NEW.customer_id);
END;

CREATE TRIGGER orders_customer_stats_delete AFTER DELETE ON orders BEGIN
    UPDATE customers SET (last_visit_at, paid_total, order_count, only_branch_id) = (
        SELECT max(o.created_at), coalesce(sum(o.paid), 0), count(*),
               CASE count(DISTINCT o.branch_id) WHEN 0 THEN NULL WHEN 1 THEN min(o.branch_id) ELSE 0 END
        FROM orders o WHERE o.customer_id = customers.id)
    WHERE id = OLD.customer_id;
END;

-- A customer's tags one per row, as SQL's lower() folds them (ASCII letters, as the LIKE
-- over the tags text matched before), written with the tags by `db::customers`.
CREATE TABLE customer_tags (
    tag         TEXT NOT NULL,
    customer_id INTEGER NOT NULL REFERENCES customers(id) ON DELETE CASCADE,
    PRIMARY KEY (tag, customer_id)
) WITHOUT ROWID;
CREATE INDEX customer_tags_customer ON customer_tags(customer_id);

WITH RECURSIVE split(customer_id, tag, rest) AS (
    SELECT id, '', tags || ',' FROM customers WHERE tags <> ''
    UNION ALL
    SELECT customer_id, substr(rest, 1, instr(rest, ',') - 1), substr(rest, instr(rest, ',') + 1)
    FROM split WHERE rest <> ''
)
INSERT OR IGNORE INTO customer_tags (tag, customer_id)
SELECT lower(tag), customer_id FROM split WHERE tag <> '';

-- One narrow index per way into the customers a segment counts, each holding every
-- per-customer condition, so that a count reads one index range and nothing else
-- (`db::segments` names the index it reads: see `Plan`).
CREATE INDEX customers_seg_visit ON customers(last_visit_at, marketing_opt_in, only_branch_id,
    kind, language, paid_total, archived_at) WHERE merged_into IS NULL;
CREATE INDEX customers_seg_paid ON customers(paid_total, marketing_opt_in, only_branch_id,
    kind, language, last_visit_at, archived_at) WHERE merged_into IS NULL;
CREATE INDEX customers_seg_branch ON customers(only_branch_id, marketing_opt_in, kind,
    language, last_visit_at, paid_total, archived_at) WHERE merged_into IS NULL;
CREATE INDEX customers_seg_attrs ON customers(marketing_opt_in, language, kind, only_branch_id,
    last_visit_at, paid_total, archived_at) WHERE merged_into IS NULL;
