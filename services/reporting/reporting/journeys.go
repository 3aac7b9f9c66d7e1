package reporting

import (
	"cmp"
	"database/sql"
	"slices"
	"strings"
)

// A rebuild into SQLite derives every journey's contact side in Go, from
// what its reader already holds (each lead's row, and what it kept of each
// contact's stage changes and updates), and writes the rows in bulk; one
// statement then fills the transaction columns of the few contacts with a
// transaction. The columns are journeySQL's, and so is every order: the
// times are stored fixed width (timeLayout), so comparing them as strings,
// as SQL compares text, is comparing them as times. PostgreSQL keeps
// sqlAllJourneysWindowed. The test of the batched projection against the
// live one holds all of them to the same tables.

// contactFacts is what a rebuild keeps of one contact's stage changes and
// contact updates for its journey.
type contactFacts struct {
	// stage is the latest stage change, by (changed_at, seq).
	stage                       *stageFact
	activeClientAt              sql.NullString // the earliest active-client stage change's time
	update                      *updateFact    // the latest update, by (updated_at, seq)
	stageCRMSource, upCRMSource string
}

type stageFact struct {
	changedAt, newStage string
	seq                 int64
}

type updateFact struct {
	updatedAt string
	seq       int64
}

// contactOf is the facts a rebuild keeps of the contact (crm, id).
func (m *rebuildMemo) contactOf(crm, id string) *contactFacts {
	k := journeyKey{crm, id}
	c := m.contacts[k]
	if c == nil {
		c = &contactFacts{}
		m.contacts[k] = c
	}
	return c
}

// stageChanged keeps a stage change: ORDER BY changed_at DESC, seq DESC,
// and MIN(changed_at) of the active-client ones.
func (c *contactFacts) stageChanged(seq int64, newStage string, active bool, changedAt, crmSource string) {
	if c.stage == nil || changedAt > c.stage.changedAt || (changedAt == c.stage.changedAt && seq > c.stage.seq) {
		c.stage = &stageFact{changedAt: changedAt, newStage: newStage, seq: seq}
		c.stageCRMSource = crmSource
	}
	if active && (!c.activeClientAt.Valid || changedAt < c.activeClientAt.String) {
		c.activeClientAt = sql.NullString{String: changedAt, Valid: true}
	}
}

// updated keeps a contact update: ORDER BY updated_at DESC, seq DESC.
func (c *contactFacts) updated(seq int64, updatedAt, crmSource string) {
	if c.update == nil || updatedAt > c.update.updatedAt || (updatedAt == c.update.updatedAt && seq > c.update.seq) {
		c.update = &updateFact{updatedAt: updatedAt, seq: seq}
		c.upCRMSource = crmSource
	}
}

// leadSide is a journey's lead columns, gathered over its contact's leads.
type leadSide struct {
	leads           int64
	firstID, lastID string
	first, last     *leadRow // nil: no lead with a receipt
	contactAt       sql.NullString
}

// bulkJourneys are the journey columns a rebuild derives in Go; the
// transaction columns are left NULL for sqlJourneyTransactions.
var bulkJourneys = bulkTable{"journeys", []string{"crm", "contact_id", "leads", "first_lead_id", "first_source", "first_lead_at",
	"last_lead_id", "last_source", "last_lead_at", "contact_at", "crm_source", "stage", "stage_at", "active_client_at", "transactions"}}

// journeyRows are the rows of bulkJourneys for every contact a lead (with
// a CRM and a contact), a stage change or an update names, by contact;
// the contacts only a transaction names are sqlJourneyTransactions'.
func (m *rebuildMemo) journeyRows() [][]any {
	sides := make(map[journeyKey]*leadSide, len(m.contacts))
	for id, r := range m.leads {
		if !r.crm.Valid || !r.contactID.Valid {
			continue
		}
		k := journeyKey{r.crm.String, r.contactID.String}
		s := sides[k]
		if s == nil {
			s = &leadSide{}
			sides[k] = s
		}
		s.leads++
		// MIN(synced_at)
		if r.syncedAt.Valid && (!s.contactAt.Valid || r.syncedAt.String < s.contactAt.String) {
			s.contactAt = r.syncedAt
		}
		if !r.receivedAt.Valid {
			continue
		}
		// ORDER BY received_at ASC, lead_id ASC, and DESC; lead ids are unique.
		if s.first == nil || before(r.receivedAt.String, id, s.first.receivedAt.String, s.firstID) {
			s.first, s.firstID = r, id
		}
		if s.last == nil || before(s.last.receivedAt.String, s.lastID, r.receivedAt.String, id) {
			s.last, s.lastID = r, id
		}
	}
	keys := make([]journeyKey, 0, len(sides)+len(m.contacts))
	for k := range sides {
		keys = append(keys, k)
	}
	for k := range m.contacts {
		if sides[k] == nil {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b journeyKey) int {
		return cmp.Or(strings.Compare(a.crm, b.crm), strings.Compare(a.contactID, b.contactID))
	})
	rows := make([][]any, 0, len(keys))
	for _, k := range keys {
		row := []any{k.crm, k.contactID, int64(0), nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, int64(0)}
		if s := sides[k]; s != nil {
			row[2] = s.leads
			if s.first != nil {
				row[3], row[4], row[5] = s.firstID, plain(s.first.source), s.first.receivedAt.String
				row[6], row[7], row[8] = s.lastID, plain(s.last.source), s.last.receivedAt.String
			}
			row[9] = plain(s.contactAt)
		}
		if c := m.contacts[k]; c != nil {
			// COALESCE(NULLIF(the latest stage change's, ''), NULLIF(the latest update's, ''))
			switch {
			case c.stage != nil && c.stageCRMSource != "":
				row[10] = c.stageCRMSource
			case c.update != nil && c.upCRMSource != "":
				row[10] = c.upCRMSource
			}
			if c.stage != nil {
				row[11], row[12] = c.stage.newStage, c.stage.changedAt
			}
			row[13] = plain(c.activeClientAt)
		}
		rows = append(rows, row)
	}
	return rows
}

// before reports whether (at, id) sorts before (at2, id2), as text.
func before(at, id, at2, id2 string) bool {
	return at < at2 || (at == at2 && id < id2)
}
