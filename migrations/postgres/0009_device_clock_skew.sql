-- How far off the server's a device's clock was at its last login or refresh, when more than
-- 5 minutes (device minus server, ms); NULL: in time, or not told.
ALTER TABLE devices ADD COLUMN clock_skew_ms BIGINT;
