-- Placeholder on branch `sip-office` only: 0013 is reserved for another branch. The loader
-- refuses a gap, so this empty step lets 0015 run here. At merge, delete this folder in
-- favour of the real 0013.
SELECT 1;
