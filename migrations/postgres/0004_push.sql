-- Web Push subscriptions (RFC 8030/8291): one row per browser push endpoint, bound to the
-- device that registered it last. A re-subscribe from the same browser replaces the row;
-- rows of a revoked device stay but are never sent to. Keys are base64url without padding.
CREATE TABLE push_subscriptions (
    id TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    endpoint TEXT NOT NULL UNIQUE,
    p256dh TEXT NOT NULL,
    auth TEXT NOT NULL,
    -- The browser's own expirationTime (ms since the epoch), usually null.
    expiration_time BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX push_subscriptions_user ON push_subscriptions(user_id);
