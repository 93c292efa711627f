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
    updated_at BIGINT NOT NULL,
    -- What the checks found (zhiban-records): warnings never block (D11); problems flag a
    -- malformed record that is stored all the same.
    warnings TEXT NOT NULL,
    problems TEXT NOT NULL
);
CREATE INDEX incidents_unit_reported ON incidents(unit_id, reported_at);

-- Full-text search over every record's text (D20), as substring search.
CREATE TABLE search_index (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    body TEXT NOT NULL
);
