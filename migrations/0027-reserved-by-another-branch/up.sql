-- Placeholder on branch `segspeed` only: 0027 is reserved for another branch. The loader
-- refuses a gap, so this empty step lets 0028 run here. At merge, delete this folder in
-- favour of the real 0027.
SELECT 1;
