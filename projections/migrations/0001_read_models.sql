-- Expereon read models, version 1.
--
-- Written only by the projection (projections/src/sql/fold.rs), one SQL
-- transaction per engine batch; read by the API and by analysts. Everything
-- here is derived from the event log and can be rebuilt from it
-- (`replay-tool rebuild --out DIR`, or `rebuild --sql-only --out DIR`).
--
-- Conventions, kept portable between SQLite and PostgreSQL:
--   * ids are TEXT as the API shows them (UUIDs; API keys `ek_…`);
--   * money is TEXT, an exact decimal with the currency's minor units
--     ("1250.00", "999", "3.765"), next to a `currency` ISO 4217 code;
--     never a float. Cast with care: SQLite's SUM over TEXT uses floats.
--   * timestamps are TEXT, RFC 3339 UTC with microseconds (`…_at_utc`),
--     dates TEXT `YYYY-MM-DD`;
--   * `seq` is the global log sequence number of the event that wrote a row;
--   * booleans are INTEGER 0/1.

-- Where the projection stands: the last applied event and its chain hash.
CREATE TABLE projection_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq    BIGINT  NOT NULL,
    last_hash   TEXT    NOT NULL
);

CREATE TABLE organizations (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    created_at_utc  TEXT NOT NULL,
    seq             BIGINT NOT NULL,
    state   BLOB NOT NULL    -- the whole resource in the projection's own encoding (postcard); analysts use the columns
);

-- API keys. Never their secrets: `secret_sha256` is the SHA-256 of a 256-bit
-- random secret, which checks a presented secret and reveals nothing usable
-- (authentication reads it; `state` has it zeroed).
CREATE TABLE api_keys (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    name             TEXT NOT NULL,
    permissions      TEXT NOT NULL,          -- space-separated, e.g. "invoices:read payments:read"
    secret_sha256    TEXT NOT NULL,          -- hex
    expires_at_utc   TEXT,
    revoked_at_utc   TEXT,
    created_at_utc   TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    state   BLOB NOT NULL    -- the whole resource in the projection's own encoding (postcard); analysts use the columns
);
CREATE INDEX api_keys_by_organization ON api_keys (organization_id, seq);

CREATE TABLE connections (
    id                            TEXT PRIMARY KEY,
    seller_organization_id        TEXT NOT NULL,
    buyer_organization_id         TEXT NOT NULL,
    requested_by_organization_id  TEXT NOT NULL,
    status                        TEXT NOT NULL,   -- PENDING | ACTIVE | REJECTED
    created_at_utc                TEXT NOT NULL,
    updated_at_utc                TEXT NOT NULL,
    seq                           BIGINT NOT NULL,
    state   BLOB NOT NULL    -- the whole resource in the projection's own encoding (postcard); analysts use the columns
);
CREATE INDEX connections_by_seller ON connections (seller_organization_id, seq);
CREATE INDEX connections_by_buyer ON connections (buyer_organization_id, seq);

CREATE TABLE invoices (
    id                          TEXT PRIMARY KEY,
    number                      TEXT NOT NULL,
    connection_id               TEXT NOT NULL,
    seller_organization_id      TEXT NOT NULL,
    buyer_organization_id       TEXT NOT NULL,
    currency                    TEXT NOT NULL,
    status                      TEXT NOT NULL,
    issue_date                  TEXT NOT NULL,
    due_date                    TEXT NOT NULL,
    memo                        TEXT,
    subtotal                    TEXT NOT NULL,
    tax_total                   TEXT NOT NULL,
    total                       TEXT NOT NULL,
    approved_amount             TEXT,
    adjustment_reason           TEXT,
    dispute_reason              TEXT,
    info_request                TEXT,
    info_response               TEXT,
    cancellation_requested_by   TEXT,            -- SELLER | BUYER while a request is open
    cancellation_request_reason TEXT,
    cancellation_return_status  TEXT,            -- the approved state a rejection returns to
    cancellation_reason         TEXT,
    archived_from_status        TEXT,
    payment_id                  TEXT,
    visible_to_buyer            INTEGER NOT NULL, -- 1 once submitted
    payment_due_notified        INTEGER NOT NULL,
    version                     BIGINT NOT NULL,
    created_at_utc              TEXT NOT NULL,
    updated_at_utc              TEXT NOT NULL,
    created_micros              BIGINT NOT NULL,
    seq                         BIGINT NOT NULL, -- of the InvoiceCreated event
    state   BLOB NOT NULL    -- the whole resource in the projection's own encoding (postcard); analysts use the columns
);
CREATE INDEX invoices_by_seller ON invoices (seller_organization_id, created_micros);
CREATE INDEX invoices_by_buyer ON invoices (buyer_organization_id, created_micros);
-- payment.due candidates: approved, not yet notified, by due date.
CREATE INDEX invoices_due ON invoices (payment_due_notified, status, due_date);
-- auto-archive candidates.
CREATE INDEX invoices_by_status_updated ON invoices (status, updated_at_utc);

-- One row per organization that may see an invoice (the seller from creation,
-- the buyer from first submission), with the list's sort keys: the API's
-- invoice list is an ordered index scan on (organization_id, key).
--   created_key = 20-digit creation micros ':' id
--   due_key     = due_date ':' created_key
--   total_key   = 30-digit total in thousandths ':' created_key
CREATE TABLE invoice_parties (
    organization_id          TEXT NOT NULL,
    invoice_id               TEXT NOT NULL,
    role                     TEXT NOT NULL,   -- SELLER | BUYER
    counterparty_id          TEXT NOT NULL,
    connection_id            TEXT NOT NULL,
    status                   TEXT NOT NULL,
    currency                 TEXT NOT NULL,
    due_date                 TEXT NOT NULL,
    created_key              TEXT NOT NULL,
    due_key                  TEXT NOT NULL,
    total_key                TEXT NOT NULL,
    PRIMARY KEY (organization_id, invoice_id)
);
CREATE INDEX invoice_parties_created ON invoice_parties (organization_id, created_key);
CREATE INDEX invoice_parties_due ON invoice_parties (organization_id, due_key);
CREATE INDEX invoice_parties_total ON invoice_parties (organization_id, total_key);
CREATE INDEX invoice_parties_status ON invoice_parties (organization_id, status, created_key);
CREATE INDEX invoice_parties_invoice ON invoice_parties (invoice_id);

CREATE TABLE invoice_line_items (
    invoice_id   TEXT NOT NULL,
    position     INTEGER NOT NULL,   -- 0-based order on the invoice
    id           TEXT NOT NULL,
    description  TEXT NOT NULL,
    quantity     TEXT NOT NULL,
    unit_price   TEXT NOT NULL,
    tax_rate     TEXT NOT NULL,      -- percent
    amount       TEXT NOT NULL,
    tax_amount   TEXT NOT NULL,
    PRIMARY KEY (invoice_id, position)
);

CREATE TABLE invoice_attachments (
    invoice_id  TEXT NOT NULL,
    position    INTEGER NOT NULL,
    file_id     TEXT NOT NULL,
    PRIMARY KEY (invoice_id, position)
);
CREATE INDEX invoice_attachments_by_file ON invoice_attachments (file_id);

-- Every event of every invoice, oldest first (the API's history reads the log
-- itself; this is the analysts' copy, without payloads).
CREATE TABLE invoice_history (
    seq                    BIGINT PRIMARY KEY,
    invoice_id             TEXT NOT NULL,
    version                BIGINT NOT NULL,
    type                   TEXT NOT NULL,
    status_after           TEXT NOT NULL,
    at_utc                 TEXT NOT NULL,
    actor_organization_id  TEXT,
    actor_api_key_id       TEXT
);
CREATE INDEX invoice_history_by_invoice ON invoice_history (invoice_id, version);

CREATE TABLE payments (
    id                      TEXT PRIMARY KEY,
    invoice_id              TEXT NOT NULL,
    payer_organization_id   TEXT NOT NULL,
    payee_organization_id   TEXT NOT NULL,
    currency                TEXT NOT NULL,
    amount                  TEXT NOT NULL,
    status                  TEXT NOT NULL,   -- PENDING | COMPLETED | FAILED
    failure_reason          TEXT,
    attempts                INTEGER NOT NULL,
    payer_transaction_id    TEXT,
    payee_transaction_id    TEXT,
    refunded_amount         TEXT NOT NULL,
    created_at_utc          TEXT NOT NULL,
    completed_at_utc        TEXT,
    updated_at_utc          TEXT NOT NULL,
    seq                     BIGINT NOT NULL,
    state   BLOB NOT NULL    -- the whole resource in the projection's own encoding (postcard); analysts use the columns
);
CREATE INDEX payments_by_payer ON payments (payer_organization_id, seq);
CREATE INDEX payments_by_payee ON payments (payee_organization_id, seq);
CREATE INDEX payments_by_invoice ON payments (invoice_id);

CREATE TABLE balances (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    currency         TEXT NOT NULL,
    total            TEXT NOT NULL,
    reserved         TEXT NOT NULL,
    collateral       TEXT NOT NULL,
    available        TEXT NOT NULL,   -- total − reserved − collateral
    frozen           INTEGER NOT NULL,
    created_at_utc   TEXT NOT NULL,
    updated_at_utc   TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    UNIQUE (organization_id, currency)
);

-- What is reserved on a balance, and for what.
CREATE TABLE balance_holds (
    balance_id  TEXT NOT NULL,
    hold_type   TEXT NOT NULL,   -- invoice | withdrawal
    hold_id     TEXT NOT NULL,
    amount      TEXT NOT NULL,
    PRIMARY KEY (balance_id, hold_type, hold_id)
);

-- Every change of every balance, with the figures after it.
CREATE TABLE balance_changes (
    seq              BIGINT PRIMARY KEY,
    balance_id       TEXT NOT NULL,
    organization_id  TEXT NOT NULL,
    currency         TEXT NOT NULL,
    at_utc           TEXT NOT NULL,
    at_micros        BIGINT NOT NULL,
    kind             TEXT NOT NULL,   -- DEPOSIT RESERVE RELEASE SETTLEMENT_IN SETTLEMENT_OUT WITHDRAWAL REFUND_IN REFUND_OUT COLLATERAL FREEZE UNFREEZE
    amount           TEXT NOT NULL,
    total_after      TEXT NOT NULL,
    reserved_after   TEXT NOT NULL,
    collateral_after TEXT NOT NULL,
    available_after  TEXT NOT NULL,
    frozen_after     INTEGER NOT NULL,
    cause_type       TEXT NOT NULL,
    cause_id         TEXT
);
CREATE INDEX balance_changes_by_balance ON balance_changes (balance_id, seq);

-- Money movements (the API's transactions): amounts are positive, the type
-- says the direction.
CREATE TABLE transactions (
    id                            TEXT PRIMARY KEY,
    seq                           BIGINT NOT NULL,
    type                          TEXT NOT NULL,  -- DEPOSIT WITHDRAWAL SETTLEMENT_IN SETTLEMENT_OUT REFUND_IN REFUND_OUT
    organization_id               TEXT NOT NULL,
    balance_id                    TEXT NOT NULL,
    currency                      TEXT NOT NULL,
    amount                        TEXT NOT NULL,
    total_after                   TEXT NOT NULL,
    reference                     TEXT,
    invoice_id                    TEXT,
    payment_id                    TEXT,
    withdrawal_id                 TEXT,
    refund_id                     TEXT,
    counterparty_organization_id  TEXT,
    created_at_utc                TEXT NOT NULL,
    created_micros                BIGINT NOT NULL
);
CREATE INDEX transactions_by_organization ON transactions (organization_id, seq);

CREATE TABLE withdrawals (
    id                      TEXT PRIMARY KEY,
    organization_id         TEXT NOT NULL,
    balance_id              TEXT NOT NULL,
    currency                TEXT NOT NULL,
    amount                  TEXT NOT NULL,
    destination_json        TEXT NOT NULL,   -- [[field, value], …] as given
    status                  TEXT NOT NULL,
    submitted_by_api_key_id TEXT NOT NULL,
    decided_by_api_key_id   TEXT,
    rejection_reason        TEXT,
    transaction_id          TEXT,
    created_at_utc          TEXT NOT NULL,
    updated_at_utc          TEXT NOT NULL,
    seq                     BIGINT NOT NULL,
    state   BLOB NOT NULL    -- the whole resource in the projection's own encoding (postcard); analysts use the columns
);
CREATE INDEX withdrawals_by_organization ON withdrawals (organization_id, seq);

CREATE TABLE refunds (
    id                            TEXT PRIMARY KEY,
    transaction_id                TEXT NOT NULL,
    payment_id                    TEXT NOT NULL,
    invoice_id                    TEXT NOT NULL,
    payee_organization_id         TEXT NOT NULL,
    payer_organization_id         TEXT NOT NULL,
    requested_by_organization_id  TEXT NOT NULL,
    currency                      TEXT NOT NULL,
    amount                        TEXT NOT NULL,
    reason                        TEXT NOT NULL,
    status                        TEXT NOT NULL,
    rejection_reason              TEXT,
    payee_transaction_id          TEXT,
    payer_transaction_id          TEXT,
    created_at_utc                TEXT NOT NULL,
    updated_at_utc                TEXT NOT NULL,
    seq                           BIGINT NOT NULL,
    state   BLOB NOT NULL    -- the whole resource in the projection's own encoding (postcard); analysts use the columns
);
CREATE INDEX refunds_by_payee ON refunds (payee_organization_id, seq);
CREATE INDEX refunds_by_payer ON refunds (payer_organization_id, seq);

-- Webhook endpoints without their signing secrets.
CREATE TABLE webhook_endpoints (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    url              TEXT NOT NULL,
    events           TEXT NOT NULL,   -- space-separated filters
    description      TEXT,
    enabled          INTEGER NOT NULL,
    deleted          INTEGER NOT NULL,
    created_at_utc   TEXT NOT NULL,
    updated_at_utc   TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    state   BLOB NOT NULL    -- the whole resource in the projection's own encoding (postcard); analysts use the columns
);
CREATE INDEX webhook_endpoints_by_organization ON webhook_endpoints (organization_id, seq);

CREATE TABLE files (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL,
    filename         TEXT NOT NULL,
    content_type     TEXT NOT NULL,
    size_bytes       BIGINT NOT NULL,
    sha256           TEXT NOT NULL,    -- hex
    deleted          INTEGER NOT NULL,
    created_at_utc   TEXT NOT NULL,
    seq              BIGINT NOT NULL,
    state   BLOB NOT NULL    -- the whole resource in the projection's own encoding (postcard); analysts use the columns
);
CREATE INDEX files_by_organization ON files (organization_id, seq);
