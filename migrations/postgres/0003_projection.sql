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
    -- Core elements the report lacks (D11): called out, never blocking.
    warnings TEXT NOT NULL
);
CREATE INDEX incidents_unit_reported ON incidents(unit_id, reported_at);

-- Full-text search over every record's text (D20), as substring search.
CREATE TABLE search_index (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    body TEXT NOT NULL
);
