-- An extension of its own branch (issue 19): NULL is shop-wide. A call to it that has no
-- other branch (no DID, ring group or transfer gave one) is the extension's branch's, and
-- a branch-scoped user sees only their branches' and the shop-wide extensions.
ALTER TABLE sip_extensions ADD COLUMN branch_id INTEGER REFERENCES branches(id) ON DELETE SET NULL;
