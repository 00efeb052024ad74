-- Placeholder kept only so branch 'roles' (reserved 0020) can run before the
-- migrations reserved for other branches are merged; the lead drops it at merge.
SELECT 1;
