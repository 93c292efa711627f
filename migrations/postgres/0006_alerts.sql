-- Alerts (D10, D23), deadlines (D11-D13, D15, D3), roll-calls (D16): see server/src/alerts.

-- Escalation policy per unit and grade, overriding the built-in default. `steps` is a JSON
-- list of {after_secs, targets, repeat_every_secs}; targets are `leader_on_duty`,
-- `officers_on_duty`, `unit_leaders`, `superior_on_duty` or `user:<id>`.
CREATE TABLE escalation_policies (
    unit_id TEXT NOT NULL REFERENCES units(id),
    grade TEXT NOT NULL CHECK (grade IN ('red', 'yellow', 'blue')),
    steps TEXT NOT NULL,
    updated_by TEXT NOT NULL REFERENCES users(id),
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (unit_id, grade)
);

-- One matter someone must be told about, with its escalation state. An alert is a durable
-- timer: `next_at` is when its next step runs; the worker claims due rows.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    -- incident | instruction | first_report | follow_up | daily_report | holiday_roster | rollcall
    kind TEXT NOT NULL,
    -- Makes each alert happen once, whoever (and however often) triggers it.
    dedupe_key TEXT NOT NULL UNIQUE,
    document_id TEXT,
    unit_id TEXT NOT NULL REFERENCES units(id),
    classified BIGINT NOT NULL,
    grade TEXT,
    title TEXT NOT NULL,
    -- The steps as of creation (JSON), so a policy edit does not rewrite a running alert.
    steps TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- For deadlines: when the thing is due.
    due_at BIGINT,
    step BIGINT NOT NULL,
    repeats BIGINT NOT NULL,
    next_at BIGINT,
    acknowledged_at BIGINT,
    acknowledged_by TEXT REFERENCES users(id),
    -- A deadline met, a roll-call answered or missed, an incident no longer urgent.
    resolved_at BIGINT,
    resolution TEXT
);
CREATE INDEX alerts_next ON alerts(next_at);
CREATE INDEX alerts_unit ON alerts(unit_id, created_at);
CREATE INDEX alerts_document ON alerts(document_id);

-- Who an alert reached, and at which step: they may acknowledge it.
CREATE TABLE alert_targets (
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    step BIGINT NOT NULL,
    first_at BIGINT NOT NULL,
    PRIMARY KEY (alert_id, user_id)
);
CREATE INDEX alert_targets_user ON alert_targets(user_id);

-- Push messages to send, written in the same transaction as what causes them.
CREATE TABLE push_outbox (
    id BIGSERIAL PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    subscription_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    step BIGINT NOT NULL,
    payload TEXT NOT NULL,
    urgency TEXT NOT NULL,
    ttl BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'gone', 'rejected', 'cancelled')),
    attempts BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    delivered_at BIGINT
);
CREATE INDEX push_outbox_pending ON push_outbox(status, next_attempt_at);

-- What happened to an alert, in order: raised, each step and its targets, each push attempt,
-- the device's receipt, acknowledgement, resolution. Shown on the incident (D19, D23).
CREATE TABLE timeline (
    id BIGSERIAL PRIMARY KEY,
    alert_id TEXT NOT NULL REFERENCES alerts(id),
    document_id TEXT,
    at BIGINT NOT NULL,
    event TEXT NOT NULL,
    user_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX timeline_document ON timeline(document_id, at);
CREATE INDEX timeline_alert ON timeline(alert_id, at);

-- Roll-calls (D16): the superior office calls a unit's duty post, which must answer in time.
CREATE TABLE rollcalls (
    id TEXT PRIMARY KEY,
    unit_id TEXT NOT NULL REFERENCES units(id),
    called_by TEXT NOT NULL REFERENCES users(id),
    called_at BIGINT NOT NULL,
    window_ms BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('open', 'answered', 'missed')),
    answered_at BIGINT,
    answered_by TEXT REFERENCES users(id),
    alert_id TEXT NOT NULL REFERENCES alerts(id)
);
CREATE INDEX rollcalls_unit ON rollcalls(unit_id, called_at);

-- Rosters themselves (D3): a holiday roster is due at the superior office 3 days ahead.
CREATE TABLE rosters (
    document_id TEXT PRIMARY KEY REFERENCES documents(id),
    unit_id TEXT NOT NULL,
    classified BIGINT NOT NULL,
    title TEXT NOT NULL,
    holiday BIGINT NOT NULL,
    starts_at BIGINT,
    due_at BIGINT,
    submitted_at BIGINT
);
