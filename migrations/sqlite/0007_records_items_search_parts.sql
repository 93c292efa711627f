-- One row per projected record, whatever its type (issue 9): its title, what the checks found,
-- and `flag`, set when what is derived from its last change could not be written (the change
-- itself is stored all the same; the unit's admins are alerted). Replaces the incident-only
-- warnings and problems columns.
CREATE TABLE records (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    kind TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    classified INTEGER NOT NULL,
    title TEXT NOT NULL,
    problems TEXT NOT NULL,
    warnings TEXT NOT NULL,
    flag TEXT,
    updated_at INTEGER NOT NULL
);
CREATE INDEX records_unit ON records(unit_id, updated_at);
INSERT INTO records (document_id, kind, unit_id, classified, title, problems, warnings, updated_at)
    SELECT document_id, 'incident', unit_id, classified, title, problems, warnings, updated_at
    FROM incidents;
ALTER TABLE incidents DROP COLUMN warnings;
ALTER TABLE incidents DROP COLUMN problems;

-- Items of long records are read and written one by one, by position: a malformed item keeps
-- its row (its time may be missing) and says what is wrong with it.
CREATE TABLE log_entries_v2 (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position INTEGER NOT NULL,
    unit_id TEXT NOT NULL,
    classified INTEGER NOT NULL,
    received_at INTEGER,
    caller_unit TEXT,
    caller_name TEXT,
    phone TEXT,
    content TEXT NOT NULL,
    handling TEXT,
    handler TEXT,
    incident TEXT,
    problems TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (document_id, position)
);
INSERT INTO log_entries_v2 (document_id, position, unit_id, classified, received_at, caller_unit,
    caller_name, phone, content, handling, handler, incident)
    SELECT document_id, position, unit_id, classified, received_at, caller_unit, caller_name,
    phone, content, handling, handler, incident FROM log_entries;
DROP TABLE log_entries;
ALTER TABLE log_entries_v2 RENAME TO log_entries;
CREATE INDEX log_entries_unit_received ON log_entries(unit_id, received_at);

CREATE TABLE register_entries_v2 (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position INTEGER NOT NULL,
    unit_id TEXT NOT NULL,
    classified INTEGER NOT NULL,
    received_at INTEGER,
    sender TEXT NOT NULL,
    title TEXT NOT NULL,
    routed_to TEXT,
    done INTEGER NOT NULL,
    problems TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (document_id, position)
);
INSERT INTO register_entries_v2 (document_id, position, unit_id, classified, received_at, sender,
    title, routed_to, done)
    SELECT document_id, position, unit_id, classified, received_at, sender, title, routed_to, done
    FROM register_entries;
DROP TABLE register_entries;
ALTER TABLE register_entries_v2 RENAME TO register_entries;
CREATE INDEX register_entries_unit ON register_entries(unit_id, received_at);

-- An instruction's time may be missing (the record is flagged for it).
CREATE TABLE instructions_v2 (
    document_id TEXT NOT NULL REFERENCES documents(id),
    position INTEGER NOT NULL,
    unit_id TEXT NOT NULL,
    classified INTEGER NOT NULL,
    by_user TEXT,
    by_actor TEXT,
    to_user TEXT,
    at INTEGER,
    text TEXT NOT NULL,
    steps INTEGER NOT NULL,
    done INTEGER NOT NULL,
    PRIMARY KEY (document_id, position)
);
INSERT INTO instructions_v2 SELECT document_id, position, unit_id, classified, by_user, by_actor,
    to_user, at, text, steps, done FROM instructions;
DROP TABLE instructions;
ALTER TABLE instructions_v2 RENAME TO instructions;
CREATE INDEX instructions_to ON instructions(to_user);

-- Search text in parts: the record's own fields (list '', position 0) and each item of a long
-- record, so a new call adds one part instead of rewriting the log's text. The FTS5 rowid is
-- the part's id; existing rows keep theirs as the records' own parts.
CREATE TABLE search_parts (
    id INTEGER PRIMARY KEY,
    document_id TEXT NOT NULL REFERENCES documents(id),
    list TEXT NOT NULL,
    position INTEGER NOT NULL,
    UNIQUE (document_id, list, position)
);
INSERT INTO search_parts (id, document_id, list, position)
    SELECT id, document_id, '', 0 FROM search_documents;
DROP TABLE search_documents;
