-- Which user wrote each change: an Automerge actor id is bound to the user whose device first
-- delivered a change made by it, and a later change by that actor from anyone else is refused.
-- Approvals (D4) and instructions (D14) count only when their writer holds the role.
CREATE TABLE actors (
    actor_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    first_seen_at INTEGER NOT NULL
);

-- The actor that wrote the request's current status.
ALTER TABLE shift_requests ADD COLUMN decided_actor TEXT;

-- Leaders' instructions on incidents (D14), with the actor that wrote `by`.
CREATE TABLE instructions (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position INTEGER NOT NULL,
    unit_id TEXT NOT NULL,
    classified INTEGER NOT NULL,
    by_user TEXT,
    by_actor TEXT,
    to_user TEXT,
    at INTEGER NOT NULL,
    text TEXT NOT NULL,
    steps INTEGER NOT NULL,
    done INTEGER NOT NULL,
    PRIMARY KEY (document_id, position)
);
CREATE INDEX instructions_to ON instructions(to_user);

-- Daily and zero reports (D15).
CREATE TABLE daily_reports (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    unit_id TEXT NOT NULL,
    classified INTEGER NOT NULL,
    day TEXT NOT NULL,
    zero INTEGER NOT NULL,
    holiday_summary INTEGER NOT NULL,
    submitted_at INTEGER
);
CREATE INDEX daily_reports_unit_day ON daily_reports(unit_id, day);

-- Incoming documents and notices (D8).
CREATE TABLE register_entries (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position INTEGER NOT NULL,
    unit_id TEXT NOT NULL,
    classified INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    sender TEXT NOT NULL,
    title TEXT NOT NULL,
    routed_to TEXT,
    done INTEGER NOT NULL,
    PRIMARY KEY (document_id, position)
);
CREATE INDEX register_entries_unit ON register_entries(unit_id, received_at);
