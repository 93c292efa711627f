-- Units form a tree: a superior office sees the units below it (D18).
CREATE TABLE units (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    parent_id TEXT REFERENCES units(id),
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    unit_id TEXT NOT NULL REFERENCES units(id),
    role TEXT NOT NULL CHECK (role IN ('admin', 'leader', 'officer', 'field')),
    cleared INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);

-- A device is one phone or tablet of one user; revoking it cuts off a lost phone (D24).
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX devices_user ON devices(user_id);

-- Only a hash of each refresh token is kept, so a copy of the database cannot log in.
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    device_id TEXT NOT NULL REFERENCES devices(id),
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_device ON refresh_tokens(device_id);

-- Who may see a document is decided here, never by the document's own fields.
-- A catalog is the server's own read-only list of a unit's documents; it has no creator.
CREATE TABLE documents (
    id TEXT PRIMARY KEY,
    unit_id TEXT NOT NULL REFERENCES units(id),
    classification TEXT NOT NULL CHECK (classification IN ('plain', 'classified')),
    kind TEXT NOT NULL CHECK (kind IN ('record', 'catalog')),
    created_by TEXT REFERENCES users(id),
    created_at INTEGER NOT NULL
);
CREATE INDEX documents_unit ON documents(unit_id);

-- Automerge bytes: change chunks appended as they are committed, folded into a snapshot
-- from time to time. Loading a document concatenates its rows in seq order.
CREATE TABLE document_chunks (
    document_id TEXT NOT NULL REFERENCES documents(id),
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('changes', 'snapshot')),
    data BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (document_id, seq)
);

-- What the server knows a peer already has, so a reconnecting device does not start over.
CREATE TABLE sync_states (
    peer_id TEXT NOT NULL,
    document_id TEXT NOT NULL REFERENCES documents(id),
    state BLOB NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (peer_id, document_id)
);

-- Generated on first start (token signing key, node identity); never in the repository.
CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
