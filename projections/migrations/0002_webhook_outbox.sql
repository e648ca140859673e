-- Expereon read models, version 2: the webhook outbox.
--
-- Unlike the rest of the read models, these rows are not all derivable: the
-- deliveries are derived from the log by the projection (in the same SQL
-- transaction as the rows they were computed from), but their attempts and
-- status record what happened on the network. Written by the projection
-- (projections/src/sql/outbox.rs, `derive`) and by the delivery worker.
--
-- Conventions as in 0001: ids TEXT, timestamps TEXT RFC 3339 UTC (`…_at_utc`)
-- next to BIGINT microseconds (`…_micros`) where rows are ordered by time,
-- booleans INTEGER 0/1, nothing here is money.

-- Whether (and from where) this database derives deliveries. No row: a copy
-- that does not (an analyst's rebuild); the server writes it once, when the
-- database is first created for its log.
CREATE TABLE webhook_outbox_state (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    -- Events at or below this seq make no deliveries: history the previous
    -- outbox already covered, or that predates this database.
    webhooks_from_seq  BIGINT NOT NULL,
    created_at_utc     TEXT   NOT NULL,
    -- The previous version's outbox directory, when its deliveries were imported.
    imported_from      TEXT
);

-- One message on its way to one endpoint.
CREATE TABLE webhook_deliveries (
    id                   TEXT    PRIMARY KEY,   -- UUID v7: creation order
    endpoint_id          TEXT    NOT NULL,
    organization_id      TEXT    NOT NULL,
    event_id             TEXT    NOT NULL,      -- `evt_<seq>_<party>`: the payload's id and the webhook-id header
    event_type           TEXT    NOT NULL,
    seq                  BIGINT  NOT NULL,      -- the log position it came from; 0 for a test message
    payload              TEXT    NOT NULL,      -- the JSON body exactly as sent and signed
    status               TEXT    NOT NULL,      -- PENDING | SUCCEEDED | FAILED
    next_attempt_at_utc  TEXT,                  -- set while PENDING and scheduled; NULL while held
    next_attempt_micros  BIGINT,
    schedule_base        INTEGER NOT NULL,      -- attempts before the last manual redelivery
    created_at_utc       TEXT    NOT NULL,
    created_micros       BIGINT  NOT NULL,
    UNIQUE (endpoint_id, event_id)
);
-- The worker's schedule: due deliveries by next attempt.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_micros, endpoint_id, id);
-- An endpoint's delivery log, newest first (optionally of one status).
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, id);
CREATE INDEX webhook_deliveries_by_endpoint_status ON webhook_deliveries (endpoint_id, status, id);

-- Every try at delivering, in order.
CREATE TABLE webhook_attempts (
    delivery_id    TEXT    NOT NULL,
    position       INTEGER NOT NULL,   -- 0-based
    at_utc         TEXT    NOT NULL,
    at_micros      BIGINT  NOT NULL,
    status_code    INTEGER,            -- the HTTP status, when a response came back
    duration_ms    BIGINT  NOT NULL,
    error          TEXT,
    response_body  TEXT,               -- the first KiB of the response (lossy UTF-8)
    PRIMARY KEY (delivery_id, position)
);

-- The requestIds of the manual redeliveries applied to a delivery, so a
-- retried request does not send again.
CREATE TABLE webhook_redeliveries (
    delivery_id  TEXT    NOT NULL,
    position     INTEGER NOT NULL,
    request_id   TEXT    NOT NULL,
    PRIMARY KEY (delivery_id, position)
);
