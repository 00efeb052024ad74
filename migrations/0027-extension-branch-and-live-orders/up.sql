-- An extension of its own branch (issue 19): NULL is shop-wide. A call to it that has no
-- other branch (no DID, ring group or transfer gave one) is the extension's branch's, and
-- a branch-scoped user sees only their branches' and the shop-wide extensions.
ALTER TABLE sip_extensions ADD COLUMN branch_id INTEGER REFERENCES branches(id) ON DELETE SET NULL;

-- A branch's live orders with the columns its lists filter on: the capped count of a
-- branch-scoped user's list ("10 000+") reads this index alone instead of looking up
-- 10 001 rows spread over a twentieth of the table (`db::orders::count`, named there:
-- the planner prefers `orders_branch_status` without statistics).
CREATE INDEX orders_branch_live ON orders(branch_id, master_id, status_id) WHERE archived_at IS NULL;
