-- The reporting read model. Portable SQL: SQLite now, PostgreSQL later on the same
-- schema (TEXT, BIGINT and INTEGER only; times are UTC text "2006-01-02T15:04:05.000000Z",
-- which sorts as it reads and which PostgreSQL casts to timestamptz; money is BIGINT minor
-- units beside a currency code). No column holds the time a row was written: a replay of
-- the streams gives identical tables. docs/reporting.md describes every column.

-- +goose Up
CREATE TABLE applied_events (
    event_id   TEXT    NOT NULL PRIMARY KEY,
    stream     TEXT    NOT NULL,
    seq        BIGINT  NOT NULL,
    subject    TEXT    NOT NULL,
    event_type TEXT    NOT NULL,
    projected  INTEGER NOT NULL
);

CREATE TABLE stream_cursors (
    stream    TEXT   NOT NULL PRIMARY KEY,
    last_seq  BIGINT NOT NULL,
    last_time TEXT   NOT NULL
);

CREATE TABLE leads (
    lead_id          TEXT NOT NULL PRIMARY KEY,
    source           TEXT,
    status           TEXT,
    reject_reason    TEXT,
    received_at      TEXT,
    inquiry_type     TEXT,
    utm_source       TEXT,
    utm_medium       TEXT,
    utm_campaign     TEXT,
    lead_stream      TEXT,
    lead_seq         BIGINT,
    webhook_stream   TEXT,
    webhook_seq      BIGINT,
    crm              TEXT,
    contact_id       TEXT,
    sync_outcome     TEXT,
    matched_by       TEXT,
    synced_at        TEXT,
    sync_seq         BIGINT,
    speed_to_lead_ms BIGINT
);
CREATE INDEX leads_by_contact ON leads (crm, contact_id);
CREATE INDEX leads_by_received ON leads (received_at);

CREATE TABLE journeys (
    crm                    TEXT    NOT NULL,
    contact_id             TEXT    NOT NULL,
    leads                  INTEGER NOT NULL,
    first_lead_id          TEXT,
    first_source           TEXT,
    first_lead_at          TEXT,
    last_lead_id           TEXT,
    last_source            TEXT,
    last_lead_at           TEXT,
    contact_at             TEXT,
    crm_source             TEXT,
    stage                  TEXT,
    stage_at               TEXT,
    active_client_at       TEXT,
    transactions           INTEGER NOT NULL,
    transaction_id         TEXT,
    tms                    TEXT,
    transaction_opened_at  TEXT,
    closed_at              TEXT,
    sale_price_minor       BIGINT,
    ledger                 TEXT,
    commission_booked_at   TEXT,
    gross_commission_minor BIGINT,
    brokerage_net_minor    BIGINT,
    commission_paid_at     TEXT,
    commission_paid_minor  BIGINT,
    currency               TEXT,
    PRIMARY KEY (crm, contact_id)
);

CREATE TABLE stage_changes (
    stream        TEXT    NOT NULL,
    seq           BIGINT  NOT NULL,
    event_id      TEXT    NOT NULL,
    crm           TEXT    NOT NULL,
    contact_id    TEXT    NOT NULL,
    old_stage     TEXT    NOT NULL,
    new_stage     TEXT    NOT NULL,
    active_client INTEGER NOT NULL,
    changed_at    TEXT    NOT NULL,
    crm_source    TEXT    NOT NULL,
    lead_id       TEXT    NOT NULL,
    crm_event_id  TEXT    NOT NULL,
    PRIMARY KEY (event_id)
);
CREATE INDEX stage_changes_by_contact ON stage_changes (crm, contact_id);

CREATE TABLE contact_updates (
    stream         TEXT   NOT NULL,
    seq            BIGINT NOT NULL,
    event_id       TEXT   NOT NULL,
    crm            TEXT   NOT NULL,
    contact_id     TEXT   NOT NULL,
    changed_fields TEXT   NOT NULL,
    stage          TEXT   NOT NULL,
    updated_at     TEXT   NOT NULL,
    crm_source     TEXT   NOT NULL,
    crm_event_id   TEXT   NOT NULL,
    PRIMARY KEY (event_id)
);

-- Filled by the TMS and LEDGER events once tms-sync and ledger-sync publish them; every
-- column but the id is nullable until then.
CREATE TABLE transactions (
    transaction_id         TEXT NOT NULL PRIMARY KEY,
    tms                    TEXT,
    crm                    TEXT,
    contact_id             TEXT,
    lead_id                TEXT,
    status                 TEXT,
    opened_at              TEXT,
    closed_at              TEXT,
    sale_price_minor       BIGINT,
    ledger                 TEXT,
    commission_booked_at   TEXT,
    gross_commission_minor BIGINT,
    brokerage_net_minor    BIGINT,
    commission_paid_at     TEXT,
    commission_paid_minor  BIGINT,
    currency               TEXT
);
CREATE INDEX transactions_by_contact ON transactions (crm, contact_id);

CREATE TABLE spend_sets (
    event_id     TEXT   NOT NULL PRIMARY KEY,
    source       TEXT   NOT NULL,
    month        TEXT   NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency     TEXT   NOT NULL,
    set_by       TEXT   NOT NULL,
    set_at       TEXT   NOT NULL,
    note         TEXT   NOT NULL,
    stream       TEXT   NOT NULL,
    seq          BIGINT NOT NULL
);
CREATE INDEX spend_sets_by_month ON spend_sets (source, month);

CREATE TABLE spend (
    source       TEXT   NOT NULL,
    month        TEXT   NOT NULL,
    amount_minor BIGINT NOT NULL,
    currency     TEXT   NOT NULL,
    set_by       TEXT   NOT NULL,
    set_at       TEXT   NOT NULL,
    note         TEXT   NOT NULL,
    event_id     TEXT   NOT NULL,
    seq          BIGINT NOT NULL,
    PRIMARY KEY (source, month)
);

-- +goose Down
DROP TABLE spend;
DROP TABLE spend_sets;
DROP TABLE transactions;
DROP TABLE contact_updates;
DROP TABLE stage_changes;
DROP TABLE journeys;
DROP TABLE leads;
DROP TABLE stream_cursors;
DROP TABLE applied_events;
