-- A journey's CRM source falls back to its contact's latest update: look the updates up by
-- contact, as the leads, stage changes and transactions already are, rather than scan them all
-- for each journey.

-- +goose Up
CREATE INDEX contact_updates_by_contact ON contact_updates (crm, contact_id);

-- +goose Down
DROP INDEX contact_updates_by_contact;
