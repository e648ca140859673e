-- Expereon read models, version 3: why a connection was rejected.
--
-- NULL for every connection not rejected, for rejections without a reason,
-- and for those rejected before rejections carried one.
ALTER TABLE connections ADD COLUMN rejection_reason TEXT;
