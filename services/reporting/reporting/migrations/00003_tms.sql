-- The TMS events (tms.transaction.opened, updated, closed). A transaction gets its type, the
-- TMS profile it was opened in, its episode, and its closing's agent, side and close date; each
-- journey shows its latest transaction's type, agent and side. Every closing announced is kept
-- in transaction_closings (a corrected closing is a new event); a transaction's closing columns
-- are those of its latest closing, by stream sequence. Portable SQL, one column per ALTER TABLE,
-- as SQLite requires.

-- +goose Up
ALTER TABLE transactions ADD COLUMN transaction_type TEXT;
ALTER TABLE transactions ADD COLUMN profile_id TEXT;
ALTER TABLE transactions ADD COLUMN episode_id TEXT;
ALTER TABLE transactions ADD COLUMN agent_id TEXT;
ALTER TABLE transactions ADD COLUMN side TEXT;
ALTER TABLE transactions ADD COLUMN close_date TEXT;

ALTER TABLE journeys ADD COLUMN transaction_type TEXT;
ALTER TABLE journeys ADD COLUMN agent_id TEXT;
ALTER TABLE journeys ADD COLUMN side TEXT;

CREATE TABLE transaction_closings (
    stream                 TEXT   NOT NULL,
    seq                    BIGINT NOT NULL,
    event_id               TEXT   NOT NULL,
    transaction_id         TEXT   NOT NULL,
    tms                    TEXT   NOT NULL,
    status                 TEXT   NOT NULL,
    closed_at              TEXT   NOT NULL,
    close_date             TEXT,
    sale_price_minor       BIGINT,
    gross_commission_minor BIGINT,
    currency               TEXT,
    agent_id               TEXT,
    side                   TEXT,
    contact_id             TEXT,
    lead_id                TEXT,
    PRIMARY KEY (event_id)
);
CREATE INDEX transaction_closings_by_transaction ON transaction_closings (transaction_id, seq);

-- +goose Down
DROP TABLE transaction_closings;
ALTER TABLE journeys DROP COLUMN side;
ALTER TABLE journeys DROP COLUMN agent_id;
ALTER TABLE journeys DROP COLUMN transaction_type;
ALTER TABLE transactions DROP COLUMN close_date;
ALTER TABLE transactions DROP COLUMN side;
ALTER TABLE transactions DROP COLUMN agent_id;
ALTER TABLE transactions DROP COLUMN episode_id;
ALTER TABLE transactions DROP COLUMN profile_id;
ALTER TABLE transactions DROP COLUMN transaction_type;
