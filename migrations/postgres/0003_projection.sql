-- Queryable rows derived from the documents after every stored change. Derived data only:
-- `zhiban-server admin reproject` rebuilds it from the documents.
CREATE TABLE incidents (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    unit_id TEXT NOT NULL,
    classified BIGINT NOT NULL,
    title TEXT NOT NULL,
    category TEXT,
    level TEXT,
    grade TEXT,
    status TEXT,
    location TEXT,
    known_at BIGINT,
    reported_at BIGINT,
    -- The report chain (D11-D13): first report, follow-ups (JSON list of times), final.
    first_report_at BIGINT,
    follow_ups TEXT NOT NULL,
    final_report_at BIGINT,
    updated_at BIGINT NOT NULL,
    -- What the checks found (zhiban-records): warnings never block (D11); problems flag a
    -- malformed record that is stored all the same.
    warnings TEXT NOT NULL,
    problems TEXT NOT NULL
);
CREATE INDEX incidents_unit_reported ON incidents(unit_id, reported_at);

-- One row per call or message of a duty log (D6), rewritten with its log.
CREATE TABLE log_entries (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position BIGINT NOT NULL,
    unit_id TEXT NOT NULL,
    classified BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    caller_unit TEXT,
    caller_name TEXT,
    phone TEXT,
    content TEXT NOT NULL,
    handling TEXT,
    handler TEXT,
    incident TEXT,
    PRIMARY KEY (document_id, position)
);
CREATE INDEX log_entries_unit_received ON log_entries(unit_id, received_at);

-- Handovers (D7): signatures and the pending items still open.
CREATE TABLE handovers (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    unit_id TEXT NOT NULL,
    classified BIGINT NOT NULL,
    title TEXT NOT NULL,
    outgoing_by TEXT,
    outgoing_at BIGINT,
    incoming_by TEXT,
    incoming_at BIGINT,
    open_items BIGINT NOT NULL,
    -- JSON list of the pending items, open and closed.
    pending TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX handovers_unit ON handovers(unit_id, updated_at);

-- Rosters (D2-D5): shifts as written, and swap/leave requests; who is on duty at an instant
-- is computed from both when asked, honouring only approvals by a leader of the unit.
CREATE TABLE shifts (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position BIGINT NOT NULL,
    unit_id TEXT NOT NULL,
    classified BIGINT NOT NULL,
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    kind TEXT,
    -- JSON: a person, or a list of people ({user_id, name, phone}).
    leader TEXT,
    officers TEXT NOT NULL,
    backup_leader TEXT,
    backup_officers TEXT NOT NULL,
    PRIMARY KEY (document_id, position)
);
CREATE INDEX shifts_unit_time ON shifts(unit_id, start_at, end_at);

CREATE TABLE shift_requests (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position BIGINT NOT NULL,
    shift_position BIGINT NOT NULL,
    kind TEXT NOT NULL,
    requester TEXT NOT NULL,
    substitute TEXT,
    status TEXT NOT NULL,
    decided_by TEXT,
    decided_at BIGINT,
    PRIMARY KEY (document_id, position)
);

-- Full-text search over every record's text (D20), as substring search.
CREATE TABLE search_index (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    body TEXT NOT NULL
);
