-- A transaction's property: from its tms.transaction.opened, or, when it was opened without one,
-- from the tms.transaction.updated that announces the property set on it afterwards. The opening
-- wins; among updates, the lowest stream sequence (property_seq; 0 for the opening), so the
-- columns are the same whatever order the events are projected in. Portable SQL, one column per
-- ALTER TABLE, as SQLite requires.

-- +goose Up
ALTER TABLE transactions ADD COLUMN property_address TEXT;
ALTER TABLE transactions ADD COLUMN property_city TEXT;
ALTER TABLE transactions ADD COLUMN property_state TEXT;
ALTER TABLE transactions ADD COLUMN property_postal_code TEXT;
ALTER TABLE transactions ADD COLUMN property_mls_number TEXT;
ALTER TABLE transactions ADD COLUMN property_seq BIGINT;

-- +goose Down
ALTER TABLE transactions DROP COLUMN property_seq;
ALTER TABLE transactions DROP COLUMN property_mls_number;
ALTER TABLE transactions DROP COLUMN property_postal_code;
ALTER TABLE transactions DROP COLUMN property_state;
ALTER TABLE transactions DROP COLUMN property_city;
ALTER TABLE transactions DROP COLUMN property_address;
