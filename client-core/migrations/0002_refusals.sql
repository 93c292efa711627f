-- The server's last refusal of this device's changes to a document (its `error`, naming the
-- rule or limit), kept until the server confirms the document: the changes stay here, and
-- the user is shown why they are not "received".
CREATE TABLE refusals (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
