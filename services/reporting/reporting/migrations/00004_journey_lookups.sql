-- The lookups that derive a journey from its facts. Each asks for a contact's rows in an order
-- (its first and last lead by receipt, its latest stage change, its latest update): an index
-- in that order answers with its first entry, with no sort and no read of the rows. And the
-- contact updates, which each journey's CRM source falls back to, get an index by contact at all.

-- +goose Up
DROP INDEX leads_by_contact;
CREATE INDEX leads_by_contact ON leads (crm, contact_id, received_at, lead_id);
DROP INDEX stage_changes_by_contact;
CREATE INDEX stage_changes_by_contact ON stage_changes (crm, contact_id, changed_at, seq);
CREATE INDEX contact_updates_by_contact ON contact_updates (crm, contact_id, updated_at, seq);

-- +goose Down
DROP INDEX contact_updates_by_contact;
DROP INDEX stage_changes_by_contact;
CREATE INDEX stage_changes_by_contact ON stage_changes (crm, contact_id);
DROP INDEX leads_by_contact;
CREATE INDEX leads_by_contact ON leads (crm, contact_id);
