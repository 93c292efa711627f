-- Which user wrote each change: an Automerge actor id is bound to the user whose device first
-- delivered a change made by it, and a later change by that actor from anyone else is refused.
-- Approvals (D4) and instructions (D14) count only when their writer holds the role.
CREATE TABLE actors (
    actor_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    first_seen_at BIGINT NOT NULL
);

-- The actor that wrote the request's current status.
ALTER TABLE shift_requests ADD COLUMN decided_actor TEXT;

-- Leaders' instructions on incidents (D14), with the actor that wrote `by`.
CREATE TABLE instructions (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position BIGINT NOT NULL,
    unit_id TEXT NOT NULL,
    classified BIGINT NOT NULL,
    by_user TEXT,
    by_actor TEXT,
    to_user TEXT,
    at BIGINT NOT NULL,
    text TEXT NOT NULL,
    steps BIGINT NOT NULL,
    done BIGINT NOT NULL,
    PRIMARY KEY (document_id, position)
);
CREATE INDEX instructions_to ON instructions(to_user);

-- Daily and zero reports (D15).
CREATE TABLE daily_reports (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    unit_id TEXT NOT NULL,
    classified BIGINT NOT NULL,
    day TEXT NOT NULL,
    zero BIGINT NOT NULL,
    holiday_summary BIGINT NOT NULL,
    submitted_at BIGINT
);
CREATE INDEX daily_reports_unit_day ON daily_reports(unit_id, day);

-- Incoming documents and notices (D8).
CREATE TABLE register_entries (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position BIGINT NOT NULL,
    unit_id TEXT NOT NULL,
    classified BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    sender TEXT NOT NULL,
    title TEXT NOT NULL,
    routed_to TEXT,
    done BIGINT NOT NULL,
    PRIMARY KEY (document_id, position)
);
CREATE INDEX register_entries_unit ON register_entries(unit_id, received_at);

-- Substring search in Chinese (D20) without scanning every row: trigram index for ILIKE.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX search_index_body_trgm ON search_index USING gin (body gin_trgm_ops);
