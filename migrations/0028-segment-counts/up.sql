-- Segment counts under 200 ms over a million customers (issue 18, third pass): every way a
-- count reads customers is one index range or one probe per listed id, never a customer
-- row nor an order row (`db::segments::Plan` names the index).

-- The id-list plans (tags, an open or ready order, a warranty ending) probe this instead
-- of the wide table rows: keyed by id, it holds every per-customer condition.
CREATE INDEX customers_seg_id ON customers(id, marketing_opt_in, kind, language,
    only_branch_id, last_visit_at, paid_total, archived_at) WHERE merged_into IS NULL;

-- Language leads here, so a language (with a kind or not) is one range; the attribute index
-- now leads with opt-in then kind, so a kind alone is two ranges (opt-in is 0 or 1).
CREATE INDEX customers_seg_lang ON customers(language, kind, marketing_opt_in,
    only_branch_id, last_visit_at, paid_total, archived_at) WHERE merged_into IS NULL;
DROP INDEX customers_seg_attrs;
CREATE INDEX customers_seg_attrs ON customers(marketing_opt_in, kind, language,
    only_branch_id, last_visit_at, paid_total, archived_at) WHERE merged_into IS NULL;

-- Customers with an order in some statuses (open, ready since …) without reading orders:
-- the status's orders, their time in it and their customer.
CREATE INDEX orders_status_customer ON orders(status_id, status_since, customer_id);

-- When an order's warranty ends, as an index on the expression the segment and the
-- warranty call list ask (`db::segments`, `db::call_lists`: the same text, or SQLite does
-- not match it); SQLite keeps it with every order write, no trigger needed.
CREATE INDEX orders_warranty_end ON orders(closed_at + warranty_days * 86400, customer_id)
    WHERE closed_at IS NOT NULL AND warranty_days > 0;
