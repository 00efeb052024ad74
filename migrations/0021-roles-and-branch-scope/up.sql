-- Roles the owner can shape, and staff who work in a branch (issue 19).

-- The owner's own roles: a set of permission keys (see domain/access.rs), based on one of
-- the built-in roles (admin, operator, master), whose record scope they follow (a role
-- based on master sees only the orders assigned to its user). The built-in roles are not
-- stored: their permission sets are computed from the code's table.
CREATE TABLE roles (
    id          INTEGER PRIMARY KEY,
    key         TEXT NOT NULL UNIQUE COLLATE NOCASE
                CHECK (key NOT IN ('admin', 'operator', 'master')),
    name        TEXT NOT NULL,
    base        TEXT NOT NULL CHECK (base IN ('admin', 'operator', 'master')),
    -- Permission keys separated by spaces.
    permissions TEXT NOT NULL DEFAULT '',
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

-- A user with a custom role keeps users.role = the role's base.
ALTER TABLE users ADD COLUMN role_id INTEGER REFERENCES roles(id);

-- The branches a user works in; none listed = every branch.
CREATE TABLE user_branches (
    user_id   INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    branch_id INTEGER NOT NULL REFERENCES branches(id),
    PRIMARY KEY (user_id, branch_id)
) WITHOUT ROWID;

-- Per-branch order-number prefix, and the hours printed on the branch's receipts.
ALTER TABLE branches ADD COLUMN order_prefix TEXT NOT NULL DEFAULT '';
ALTER TABLE branches ADD COLUMN hours TEXT NOT NULL DEFAULT '';

-- Orders by branch in id order (the list of a branch-scoped user reads one range, newest
-- first); by branch and master (a master's queue within a branch) and by branch and
-- status (the capped count of a branch's closed orders reads the index alone).
CREATE INDEX orders_branch_scope ON orders(branch_id);
CREATE INDEX orders_branch_master ON orders(branch_id, master_id);
CREATE INDEX orders_branch_status ON orders(branch_id, status_id);
