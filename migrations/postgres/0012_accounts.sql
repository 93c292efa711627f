-- Account lifecycle (D24): a disabled user can neither log in nor refresh nor keep a socket;
-- after an admin resets a password (or creates the account with one), the user must choose
-- their own at the next login before any token is issued.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
ALTER TABLE users ADD COLUMN must_change_password BIGINT NOT NULL DEFAULT 0;
