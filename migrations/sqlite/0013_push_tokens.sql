-- A random token per push, carried in its encrypted payload: the service worker, which
-- holds no session, acknowledges the alert or reports the notification shown with it, for
-- this alert and this device only.
ALTER TABLE push_outbox ADD COLUMN token TEXT;
CREATE INDEX push_outbox_alert_token ON push_outbox (alert_id, token);
