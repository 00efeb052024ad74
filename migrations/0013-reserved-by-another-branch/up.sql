-- Placeholder on branch `harden` only: 0013 is reserved for another branch
-- (shop clock). The loader refuses a gap, so this empty step lets 0014 run here.
-- At merge, delete this folder in favour of the real 0013.
SELECT 1;
