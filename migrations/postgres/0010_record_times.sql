-- Server time is the record's time (D11-D13). For each change of an incident: when the server
-- first received it, and the earliest time its device could have made it (the device's last
-- contact if it arrived as the device caught up after being offline, else its receipt). The
-- operation counters [start_op, end_op] find the change that wrote a value.
CREATE TABLE change_receipts (
    document_id TEXT NOT NULL REFERENCES documents(id),
    actor TEXT NOT NULL,
    start_op BIGINT NOT NULL,
    end_op BIGINT NOT NULL,
    hash TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    earliest BIGINT NOT NULL,
    PRIMARY KEY (document_id, actor, start_op)
);

-- When the device's last sync connection that had time to deliver what the device held
-- ended: what it sends later was made after this.
ALTER TABLE devices ADD COLUMN last_seen_at BIGINT;

-- The times the deadlines run on: the device's, checked against the receipts. known_at and
-- reported_at stay as the device wrote them; backdated counts the times found impossible.
ALTER TABLE incidents ADD COLUMN record_known_at BIGINT;
ALTER TABLE incidents ADD COLUMN record_reported_at BIGINT;
ALTER TABLE incidents ADD COLUMN backdated BIGINT NOT NULL DEFAULT 0;
UPDATE incidents SET record_known_at = known_at, record_reported_at = reported_at;
