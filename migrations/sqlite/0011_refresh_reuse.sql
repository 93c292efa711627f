-- A spent refresh token is kept until it expires: presented again after its grace moment,
-- it was stolen (or its device cloned), and the device's whole token family is revoked.
ALTER TABLE refresh_tokens ADD COLUMN spent_at INTEGER;
