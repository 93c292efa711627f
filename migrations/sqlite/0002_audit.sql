-- D19: every action is recorded and cannot be silently altered. Append-only; each row
-- carries the hash of the one before, so changing or removing a row breaks the chain from
-- there on (`zhiban-server admin verify-audit`).
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    user_id TEXT,
    device_id TEXT,
    action TEXT NOT NULL,
    document_id TEXT,
    detail TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_document ON audit_log(document_id);
