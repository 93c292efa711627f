-- One row per projected record, whatever its type (issue 9): its title, what the checks found,
-- and `flag`, set when what is derived from its last change could not be written (the change
-- itself is stored all the same; the unit's admins are alerted). Replaces the incident-only
-- warnings and problems columns.
CREATE TABLE records (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    kind TEXT NOT NULL,
    unit_id TEXT NOT NULL,
    classified BIGINT NOT NULL,
    title TEXT NOT NULL,
    problems TEXT NOT NULL,
    warnings TEXT NOT NULL,
    flag TEXT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX records_unit ON records(unit_id, updated_at);
INSERT INTO records (document_id, kind, unit_id, classified, title, problems, warnings, updated_at)
    SELECT document_id, 'incident', unit_id, classified, title, problems, warnings, updated_at
    FROM incidents;
ALTER TABLE incidents DROP COLUMN warnings;
ALTER TABLE incidents DROP COLUMN problems;

-- Items of long records are read and written one by one, by position: a malformed item keeps
-- its row (its time may be missing) and says what is wrong with it.
ALTER TABLE log_entries ALTER COLUMN received_at DROP NOT NULL;
ALTER TABLE log_entries ADD COLUMN problems TEXT NOT NULL DEFAULT '[]';
ALTER TABLE register_entries ALTER COLUMN received_at DROP NOT NULL;
ALTER TABLE register_entries ADD COLUMN problems TEXT NOT NULL DEFAULT '[]';
-- An instruction's time may be missing (the record is flagged for it).
ALTER TABLE instructions ALTER COLUMN at DROP NOT NULL;

-- Search text in parts: the record's own fields (list '', position 0) and each item of a long
-- record, so a new call adds one part instead of rewriting the log's text.
ALTER TABLE search_index ADD COLUMN list TEXT NOT NULL DEFAULT '';
ALTER TABLE search_index ADD COLUMN position BIGINT NOT NULL DEFAULT 0;
ALTER TABLE search_index DROP CONSTRAINT search_index_pkey;
ALTER TABLE search_index ADD PRIMARY KEY (document_id, list, position);
