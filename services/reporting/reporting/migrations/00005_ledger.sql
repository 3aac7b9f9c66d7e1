-- The LEDGER events (ledger.commission.booked, ledger.commission.paid). Every booking announced
-- is kept in commission_bookings; a transaction's booked columns are those of its latest booking,
-- by stream sequence. Every payment is kept once in commission_payments, keyed by the ledger's
-- payment id on its document, so that a payment announced twice is counted once; a transaction's
-- paid amount is the sum of its payments, and the rest is its latest payment's. A journey shows
-- its latest transaction's agent share and whether it is fully paid. Portable SQL, one column
-- per ALTER TABLE, as SQLite requires.

-- +goose Up
ALTER TABLE transactions ADD COLUMN commission_document_type TEXT;
ALTER TABLE transactions ADD COLUMN commission_document_id TEXT;
ALTER TABLE transactions ADD COLUMN commission_document_number TEXT;
ALTER TABLE transactions ADD COLUMN commission_gross_minor BIGINT;
ALTER TABLE transactions ADD COLUMN agent_share_minor BIGINT;
ALTER TABLE transactions ADD COLUMN commission_payments INTEGER;
ALTER TABLE transactions ADD COLUMN commission_paid_date TEXT;
ALTER TABLE transactions ADD COLUMN commission_fully_paid INTEGER;

ALTER TABLE journeys ADD COLUMN agent_share_minor BIGINT;
ALTER TABLE journeys ADD COLUMN commission_fully_paid INTEGER;

CREATE TABLE commission_bookings (
    stream               TEXT   NOT NULL,
    seq                  BIGINT NOT NULL,
    event_id             TEXT   NOT NULL,
    transaction_id       TEXT   NOT NULL,
    tms                  TEXT   NOT NULL,
    ledger               TEXT   NOT NULL,
    company_id           TEXT   NOT NULL,
    document_type        TEXT   NOT NULL,
    document_id          TEXT   NOT NULL,
    document_number      TEXT   NOT NULL,
    agent_id             TEXT   NOT NULL,
    gross_minor          BIGINT,
    brokerage_net_minor  BIGINT,
    agent_share_minor    BIGINT,
    currency             TEXT,
    plan_id              TEXT   NOT NULL,
    booked_at            TEXT   NOT NULL,
    facts_hash           TEXT   NOT NULL,
    contact_id           TEXT,
    lead_id              TEXT,
    PRIMARY KEY (event_id)
);
CREATE INDEX commission_bookings_by_transaction ON commission_bookings (transaction_id, seq);

CREATE TABLE commission_payments (
    ledger         TEXT   NOT NULL,
    document_id    TEXT   NOT NULL,
    payment_id     TEXT   NOT NULL,
    stream         TEXT   NOT NULL,
    seq            BIGINT NOT NULL,
    event_id       TEXT   NOT NULL,
    transaction_id TEXT   NOT NULL,
    company_id     TEXT   NOT NULL,
    document_type  TEXT   NOT NULL,
    amount_minor   BIGINT NOT NULL,
    currency       TEXT,
    paid_date      TEXT,
    balance_minor  BIGINT,
    fully_paid     INTEGER NOT NULL,
    observed_at    TEXT   NOT NULL,
    PRIMARY KEY (ledger, document_id, payment_id)
);
CREATE INDEX commission_payments_by_transaction ON commission_payments (transaction_id);

-- +goose Down
DROP TABLE commission_payments;
DROP TABLE commission_bookings;
ALTER TABLE journeys DROP COLUMN commission_fully_paid;
ALTER TABLE journeys DROP COLUMN agent_share_minor;
ALTER TABLE transactions DROP COLUMN commission_fully_paid;
ALTER TABLE transactions DROP COLUMN commission_paid_date;
ALTER TABLE transactions DROP COLUMN commission_payments;
ALTER TABLE transactions DROP COLUMN agent_share_minor;
ALTER TABLE transactions DROP COLUMN commission_gross_minor;
ALTER TABLE transactions DROP COLUMN commission_document_number;
ALTER TABLE transactions DROP COLUMN commission_document_id;
ALTER TABLE transactions DROP COLUMN commission_document_type;
