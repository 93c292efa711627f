-- The device's own copy of everything it holds. Written with synchronous = FULL: when a
-- write returns, it survives a crash or a pulled battery.

-- Device settings: server address, session tokens, identity, the stable actor id.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- local_seq grows with every local write, so another process on the same store (the
-- background syncer) can tell which documents changed.
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    local_seq INTEGER NOT NULL
);

-- Automerge bytes in the order they were written; a snapshot may replace older rows.
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    document_id TEXT NOT NULL REFERENCES documents(id),
    data BLOB NOT NULL
);
CREATE INDEX chunks_document ON chunks(document_id, id);

-- What the server is known to hold: its sync state with us and the heads it last reported.
CREATE TABLE server_sync (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    state BLOB NOT NULL,
    server_heads BLOB NOT NULL
);
