package reporting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The projection's statements. An event stored twice (announced again
// after the duplicate window) is one event: whichever copy comes first, the
// rows keep the lowest sequence of its copies, so the tables are the same
// whatever order the copies arrive in. Upserts are INSERT … ON CONFLICT … DO UPDATE,
// which SQLite and PostgreSQL both speak; placeholders are $N, which
// PostgreSQL speaks and the SQLite driver binds by number, so one text
// serves both.
const (
	sqlApplied = `INSERT INTO applied_events (event_id, stream, seq, subject, event_type, projected)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (event_id) DO UPDATE SET stream = excluded.stream, seq = excluded.seq, subject = excluded.subject
WHERE excluded.seq < applied_events.seq`

	// A lead's own facts; the CRM step's columns are the ContactSynced's.
	sqlLead = `INSERT INTO leads (lead_id, source, status, reject_reason, received_at, inquiry_type,
  utm_source, utm_medium, utm_campaign, lead_stream, lead_seq, webhook_stream, webhook_seq)
VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT (lead_id) DO UPDATE SET source = excluded.source, status = excluded.status,
  reject_reason = excluded.reject_reason, received_at = excluded.received_at, inquiry_type = excluded.inquiry_type,
  utm_source = excluded.utm_source, utm_medium = excluded.utm_medium, utm_campaign = excluded.utm_campaign,
  lead_stream = excluded.lead_stream, lead_seq = excluded.lead_seq,
  webhook_stream = excluded.webhook_stream, webhook_seq = excluded.webhook_seq
RETURNING received_at, synced_at, crm, contact_id`

	// The CRM step of a lead; the lead's source is the lead's own once known.
	sqlSynced = `INSERT INTO leads (lead_id, source, crm, contact_id, sync_outcome, matched_by, synced_at, sync_seq)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (lead_id) DO UPDATE SET source = COALESCE(leads.source, excluded.source), crm = excluded.crm,
  contact_id = excluded.contact_id, sync_outcome = excluded.sync_outcome, matched_by = excluded.matched_by,
  synced_at = excluded.synced_at, sync_seq = excluded.sync_seq
RETURNING received_at, synced_at, source`

	// The contact a lead ($1) was synced to before, whose journey a sync to
	// another contact changes too.
	sqlLeadContact = `SELECT crm, contact_id FROM leads WHERE lead_id = $1`

	// sqlJourneyGone removes the journey of a contact ($1 crm, $2 id) that
	// no fact names any more: its only lead was synced to another contact.
	sqlJourneyGone = `DELETE FROM journeys WHERE crm = $1 AND contact_id = $2
  AND NOT EXISTS (SELECT 1 FROM leads WHERE crm = $1 AND contact_id = $2)
  AND NOT EXISTS (SELECT 1 FROM stage_changes WHERE crm = $1 AND contact_id = $2)
  AND NOT EXISTS (SELECT 1 FROM contact_updates WHERE crm = $1 AND contact_id = $2)
  AND NOT EXISTS (SELECT 1 FROM transactions WHERE crm = $1 AND contact_id = $2)`

	sqlSpeed = `UPDATE leads SET speed_to_lead_ms = $1 WHERE lead_id = $2`

	sqlStage = `INSERT INTO stage_changes (stream, seq, event_id, crm, contact_id, old_stage, new_stage, active_client,
  changed_at, crm_source, lead_id, crm_event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (event_id) DO UPDATE SET stream = excluded.stream, seq = excluded.seq WHERE excluded.seq < stage_changes.seq`

	sqlUpdate = `INSERT INTO contact_updates (stream, seq, event_id, crm, contact_id, changed_fields, stage, updated_at,
  crm_source, crm_event_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (event_id) DO UPDATE SET stream = excluded.stream, seq = excluded.seq WHERE excluded.seq < contact_updates.seq`

	sqlSpendSet = `INSERT INTO spend_sets (event_id, source, month, amount_minor, currency, set_by, set_at, note, stream, seq)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (event_id) DO UPDATE SET stream = excluded.stream, seq = excluded.seq WHERE excluded.seq < spend_sets.seq`

	// The spend in force ($1 source, $2 month) is the last one set, by
	// stream sequence, derived from every one set.
	sqlSpend = `INSERT INTO spend (source, month, amount_minor, currency, set_by, set_at, note, event_id, seq)
SELECT source, month, amount_minor, currency, set_by, set_at, note, event_id, seq FROM spend_sets
WHERE source = $1 AND month = $2 ORDER BY seq DESC LIMIT 1
ON CONFLICT (source, month) DO UPDATE SET amount_minor = excluded.amount_minor, currency = excluded.currency,
  set_by = excluded.set_by, set_at = excluded.set_at, note = excluded.note, event_id = excluded.event_id, seq = excluded.seq`

	// A transaction opened: its own facts. The opening is the transaction's
	// authority on who it is for: its ids replace what a closing or an
	// update put there first. The status is the closing's once there is one.
	sqlTxOpened = `INSERT INTO transactions (transaction_id, tms, crm, contact_id, lead_id, status, opened_at,
  transaction_type, profile_id, episode_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (transaction_id) DO UPDATE SET tms = excluded.tms, crm = excluded.crm, contact_id = excluded.contact_id,
  lead_id = COALESCE(excluded.lead_id, transactions.lead_id),
  status = CASE WHEN transactions.closed_at IS NULL THEN excluded.status ELSE transactions.status END,
  opened_at = excluded.opened_at, transaction_type = excluded.transaction_type, profile_id = excluded.profile_id,
  episode_id = excluded.episode_id`

	// A transaction updated or closed names it, and the contact when
	// tms-sync opened it: they fill what the opening has not.
	sqlTxNamed = `INSERT INTO transactions (transaction_id, tms, crm, contact_id, lead_id, transaction_type)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (transaction_id) DO UPDATE SET tms = COALESCE(transactions.tms, excluded.tms),
  crm = COALESCE(transactions.crm, excluded.crm), contact_id = COALESCE(transactions.contact_id, excluded.contact_id),
  lead_id = COALESCE(transactions.lead_id, excluded.lead_id),
  transaction_type = COALESCE(transactions.transaction_type, excluded.transaction_type)
RETURNING crm, contact_id`

	// A transaction's ($1) property, from its opening ($7 = 0) or from the
	// update ($7, its sequence) that says it was set afterwards: the opening
	// wins, then the lowest sequence, whatever order they are projected in.
	sqlTxProperty = `UPDATE transactions SET property_address = $2, property_city = $3, property_state = $4,
  property_postal_code = $5, property_mls_number = $6, property_seq = $7
WHERE transaction_id = $1 AND (property_seq IS NULL OR property_seq > $7)`

	// Every closing announced; a copy keeps the lowest sequence.
	sqlClosing = `INSERT INTO transaction_closings (stream, seq, event_id, transaction_id, tms, status, closed_at, close_date,
  sale_price_minor, gross_commission_minor, currency, agent_id, side, contact_id, lead_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (event_id) DO UPDATE SET stream = excluded.stream, seq = excluded.seq WHERE excluded.seq < transaction_closings.seq`

	// Every commission booking announced; a copy keeps the lowest sequence.
	sqlBooking = `INSERT INTO commission_bookings (stream, seq, event_id, transaction_id, tms, ledger, company_id, document_type,
  document_id, document_number, agent_id, gross_minor, brokerage_net_minor, agent_share_minor, currency, plan_id, booked_at,
  facts_hash, contact_id, lead_id)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
ON CONFLICT (event_id) DO UPDATE SET stream = excluded.stream, seq = excluded.seq WHERE excluded.seq < commission_bookings.seq`

	// Every payment once, by the ledger's payment id on its document,
	// whatever event announced it: the one with the lowest sequence.
	sqlPayment = `INSERT INTO commission_payments (ledger, document_id, payment_id, stream, seq, event_id, transaction_id, company_id,
  document_type, amount_minor, currency, paid_date, balance_minor, fully_paid, observed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (ledger, document_id, payment_id) DO UPDATE SET stream = excluded.stream, seq = excluded.seq,
  event_id = excluded.event_id, transaction_id = excluded.transaction_id, company_id = excluded.company_id,
  document_type = excluded.document_type, amount_minor = excluded.amount_minor, currency = excluded.currency,
  paid_date = excluded.paid_date, balance_minor = excluded.balance_minor, fully_paid = excluded.fully_paid,
  observed_at = excluded.observed_at
WHERE excluded.seq < commission_payments.seq`

	sqlCursor = `INSERT INTO stream_cursors (stream, last_seq, last_time) VALUES ($1, $2, $3)
ON CONFLICT (stream) DO UPDATE SET last_seq = excluded.last_seq, last_time = excluded.last_time
WHERE excluded.last_seq > stream_cursors.last_seq`
)

// sqlTxClosing derives a transaction's ($1) closing columns from its
// latest closing, by stream sequence: a corrected closing replaces the one
// before it, whatever order they were projected in.
var sqlTxClosing = func() string {
	latest := func(col string) string {
		return `(SELECT ` + col + ` FROM transaction_closings WHERE transaction_id = $1 ORDER BY seq DESC, event_id DESC LIMIT 1)`
	}
	sets := []string{"status = COALESCE(" + latest("status") + ", status)"}
	for _, c := range []string{"closed_at", "close_date", "sale_price_minor", "gross_commission_minor", "currency", "agent_id", "side"} {
		sets = append(sets, c+" = "+latest(c))
	}
	return "UPDATE transactions SET " + strings.Join(sets, ",\n  ") + "\nWHERE transaction_id = $1"
}()

// sqlTxLedger derives a transaction's ($1) commission columns: the booked
// ones from its latest booking, by stream sequence (a booking announced
// again replaces the one before it), the paid amount from the sum of its
// payments, and when and how it was last paid from its latest payment, by
// the time ledger-sync saw it. Whatever order the events came in.
var sqlTxLedger = func() string {
	booking := func(col string) string {
		return `(SELECT ` + col + ` FROM commission_bookings WHERE transaction_id = $1 ORDER BY seq DESC, event_id DESC LIMIT 1)`
	}
	payment := func(col string) string {
		return `(SELECT ` + col + ` FROM commission_payments WHERE transaction_id = $1 ORDER BY observed_at DESC, seq DESC LIMIT 1)`
	}
	sets := []string{"ledger = COALESCE(" + booking("ledger") + ", " + payment("ledger") + ")"}
	for _, c := range [][2]string{{"commission_booked_at", "booked_at"}, {"brokerage_net_minor", "brokerage_net_minor"},
		{"agent_share_minor", "agent_share_minor"}, {"commission_gross_minor", "gross_minor"},
		{"commission_document_type", "document_type"}, {"commission_document_id", "document_id"},
		{"commission_document_number", "document_number"}} {
		sets = append(sets, c[0]+" = "+booking(c[1]))
	}
	sets = append(sets,
		"commission_payments = (SELECT COUNT(*) FROM commission_payments WHERE transaction_id = $1)",
		"commission_paid_minor = (SELECT SUM(amount_minor) FROM commission_payments WHERE transaction_id = $1)",
		"commission_paid_at = "+payment("observed_at"), "commission_paid_date = "+payment("paid_date"),
		"commission_fully_paid = "+payment("fully_paid"))
	return "UPDATE transactions SET " + strings.Join(sets, ",\n  ") + "\nWHERE transaction_id = $1"
}()

// journeyTxCols are the columns a journey shows of its latest transaction,
// by their name in transactions.
var journeyTxCols = []string{"transaction_id", "tms", "opened_at", "closed_at", "sale_price_minor", "ledger", "commission_booked_at",
	"gross_commission_minor", "brokerage_net_minor", "commission_paid_at", "commission_paid_minor", "currency",
	"transaction_type", "agent_id", "side", "agent_share_minor", "commission_fully_paid"}

// journeySQL recomputes the journeys of the contacts keys names (a FROM
// item k with the columns crm and contact_id) from the facts: their leads,
// stage changes, contact updates and transactions. Every column is derived
// from them alone, so a row is the same whatever order the facts came in.
// The first and last lead, the latest stage change and the latest
// transaction are each found once and joined. The live projection runs it
// for each journey a batch touched (sqlJourney), a rebuild into PostgreSQL
// in another form (sqlAllJourneysWindowed), and a rebuild into SQLite
// derives the contact side in Go (journeys.go) and the rest with
// journeyTxSQL.
func journeySQL(keys string) string {
	lead := func(order string) string {
		return `(SELECT lead_id FROM leads` + ofContact + ` AND received_at IS NOT NULL ORDER BY received_at ` + order + `, lead_id ` + order + ` LIMIT 1)`
	}
	cols := []journeyCol{
		{"crm", "k.crm"},
		{"contact_id", "k.contact_id"},
		{"leads", `(SELECT COUNT(*) FROM leads` + ofContact + `)`},
		{"first_lead_id", "f.lead_id"},
		{"first_source", "f.source"},
		{"first_lead_at", "f.received_at"},
		{"last_lead_id", "l.lead_id"},
		{"last_source", "l.source"},
		{"last_lead_at", "l.received_at"},
		{"contact_at", `(SELECT MIN(synced_at) FROM leads` + ofContact + `)`},
		{"crm_source", `COALESCE(NULLIF(sc.crm_source, ''), (SELECT NULLIF(crm_source, '') FROM contact_updates` + ofContact + ` ORDER BY updated_at DESC, seq DESC LIMIT 1))`},
		{"stage", "sc.new_stage"},
		{"stage_at", "sc.changed_at"},
		{"active_client_at", `(SELECT MIN(changed_at) FROM stage_changes` + ofContact + ` AND active_client = 1)`},
	}
	return upsertJourneys(keys, append(cols, journeyTxColumns()...), `
LEFT JOIN leads f ON f.lead_id = `+lead("ASC")+`
LEFT JOIN leads l ON l.lead_id = `+lead("DESC")+`
LEFT JOIN stage_changes sc ON sc.event_id = (SELECT event_id FROM stage_changes`+ofContact+` ORDER BY changed_at DESC, seq DESC LIMIT 1)`+latestTransaction)
}

// journeyTxSQL fills the transaction columns of the journeys of the
// contacts keys names, as journeySQL does, and makes the journey of a
// contact only a transaction names (it has no leads).
func journeyTxSQL(keys string) string {
	cols := append([]journeyCol{{"crm", "k.crm"}, {"contact_id", "k.contact_id"}, {"leads", "0"}}, journeyTxColumns()...)
	return upsertJourneys(keys, cols, latestTransaction, "leads")
}

// ofContact picks the rows of the contact k.
const ofContact = ` WHERE crm = k.crm AND contact_id = k.contact_id`

// latestTransaction joins a contact's latest transaction, as t.
const latestTransaction = `
LEFT JOIN transactions t ON t.transaction_id = (SELECT transaction_id FROM transactions` + ofContact + ` ORDER BY COALESCE(opened_at, '') DESC, transaction_id DESC LIMIT 1)`

// journeyCol is a journeys column and the expression that derives it.
type journeyCol struct{ name, expr string }

// journeyTxColumns are the transaction columns of a journey: the count of
// its contact's transactions, and its latest one's columns.
func journeyTxColumns() []journeyCol {
	cols := []journeyCol{{"transactions", `(SELECT COUNT(*) FROM transactions` + ofContact + `)`}}
	for _, c := range journeyTxCols {
		name := c
		if c == "opened_at" {
			name = "transaction_opened_at"
		}
		cols = append(cols, journeyCol{name, "t." + c})
	}
	return cols
}

// upsertJourneys inserts or updates the journeys of keys with cols, from
// keys and joins; a journey that exists keeps its crm, contact_id and the
// columns keep names.
func upsertJourneys(keys string, cols []journeyCol, joins string, keep ...string) string {
	names := make([]string, len(cols))
	exprs := make([]string, len(cols))
	var sets []string
	for i, c := range cols {
		names[i], exprs[i] = c.name, c.expr
		if i >= 2 && !slices.Contains(keep, c.name) {
			sets = append(sets, c.name+" = excluded."+c.name)
		}
	}
	// "WHERE 1 = 1" tells SQLite's parser that ON CONFLICT is the upsert's,
	// not the last join's.
	return `INSERT INTO journeys (` + strings.Join(names, ", ") + `)
SELECT ` + strings.Join(exprs, ",\n  ") + `
FROM ` + keys + joins + `
WHERE 1 = 1
ON CONFLICT (crm, contact_id) DO UPDATE SET ` + strings.Join(sets, ", ")
}

// sqlJourney recomputes one journey ($1 crm, $2 contact id).
var sqlJourney = journeySQL(`(SELECT CAST($1 AS TEXT) AS crm, CAST($2 AS TEXT) AS contact_id) k`)

// allJourneyKeys is every contact any fact names.
const allJourneyKeys = `(SELECT crm, contact_id FROM leads WHERE crm IS NOT NULL AND contact_id IS NOT NULL
  UNION SELECT crm, contact_id FROM stage_changes
  UNION SELECT crm, contact_id FROM contact_updates
  UNION SELECT crm, contact_id FROM transactions WHERE crm IS NOT NULL AND contact_id IS NOT NULL) k`

// sqlJourneyTransactions fills, at the end of a rebuild into SQLite, the
// transaction columns of every contact a transaction names.
var sqlJourneyTransactions = journeyTxSQL(`(SELECT DISTINCT crm, contact_id FROM transactions
  WHERE crm IS NOT NULL AND contact_id IS NOT NULL) k`)

// sqlAllJourneysWindowed derives every journey at a rebuild's end into
// PostgreSQL's empty journeys table: the same columns as journeySQL, found
// for all contacts at once (grouped, and the first or latest row of each
// contact numbered with ROW_NUMBER) rather than by subqueries per contact,
// which PostgreSQL ran at a fifth of this pace (SQLite, the other way
// round, runs the subqueries three times as fast). The test of the
// batched projection against the live one, on both databases, holds the
// two to the same tables.
var sqlAllJourneysWindowed = func() string {
	const on = ` ON %[1]s.crm = k.crm AND %[1]s.contact_id = k.contact_id`
	join := func(alias, sub string, first bool) string {
		j := "\nLEFT JOIN (" + sub + ") " + alias + fmt.Sprintf(on, alias)
		if first {
			j += " AND " + alias + ".r = 1"
		}
		return j
	}
	const known = ` WHERE crm IS NOT NULL AND contact_id IS NOT NULL`
	numbered := func(cols, table, where, order string) string {
		return `SELECT crm, contact_id, ` + cols + `, ROW_NUMBER() OVER (PARTITION BY crm, contact_id ORDER BY ` + order + `) AS r FROM ` + table + where
	}
	txCols := journeyTxCols
	names := []string{"crm", "contact_id", "leads", "first_lead_id", "first_source", "first_lead_at", "last_lead_id", "last_source",
		"last_lead_at", "contact_at", "crm_source", "stage", "stage_at", "active_client_at", "transactions"}
	exprs := []string{"k.crm", "k.contact_id", "COALESCE(n.leads, 0)", "f.lead_id", "f.source", "f.received_at", "l.lead_id", "l.source",
		"l.received_at", "n.contact_at", "COALESCE(NULLIF(sc.crm_source, ''), cu.crm_source)", "sc.new_stage", "sc.changed_at",
		"ac.active_client_at", "COALESCE(tn.transactions, 0)"}
	for _, c := range txCols {
		name := c
		if c == "opened_at" {
			name = "transaction_opened_at"
		}
		names, exprs = append(names, name), append(exprs, "t."+c)
	}
	const withReceipt = known + ` AND received_at IS NOT NULL`
	return `INSERT INTO journeys (` + strings.Join(names, ", ") + `)
SELECT ` + strings.Join(exprs, ", ") + `
FROM ` + allJourneyKeys +
		join("n", `SELECT crm, contact_id, COUNT(*) AS leads, MIN(synced_at) AS contact_at FROM leads`+known+` GROUP BY crm, contact_id`, false) +
		join("f", numbered("lead_id, source, received_at", "leads", withReceipt, "received_at ASC, lead_id ASC"), true) +
		join("l", numbered("lead_id, source, received_at", "leads", withReceipt, "received_at DESC, lead_id DESC"), true) +
		join("sc", numbered("crm_source, new_stage, changed_at", "stage_changes", "", "changed_at DESC, seq DESC"), true) +
		join("cu", numbered("NULLIF(crm_source, '') AS crm_source", "contact_updates", "", "updated_at DESC, seq DESC"), true) +
		join("ac", `SELECT crm, contact_id, MIN(changed_at) AS active_client_at FROM stage_changes WHERE active_client = 1 GROUP BY crm, contact_id`, false) +
		join("tn", `SELECT crm, contact_id, COUNT(*) AS transactions FROM transactions`+known+` GROUP BY crm, contact_id`, false) +
		join("t", numbered(strings.Join(txCols, ", "), "transactions", known, "COALESCE(opened_at, '') DESC, transaction_id DESC"), true)
}()

// sqlTxNamedFact is sqlTxNamed for a rebuild, which needs no answer.
var sqlTxNamedFact, _, _ = strings.Cut(sqlTxNamed, "\nRETURNING")

// sqlAllClosed is every transaction with a closing, for a rebuild's end.
const sqlAllClosed = `SELECT DISTINCT transaction_id FROM transaction_closings ORDER BY 1`

// sqlAllLedgered is every transaction with a booking or a payment, for a
// rebuild's end.
const sqlAllLedgered = `SELECT transaction_id FROM commission_bookings UNION SELECT transaction_id FROM commission_payments ORDER BY 1`

// statements are prepared once per database and bound to each transaction.
type statements struct {
	applied, lead, synced, leadContact, speed, stage, update, spend, cursor, journey, journeyGone *sql.Stmt
	spendSet                                                                                      *sql.Stmt
	txOpened, txNamed, txNamedFact, txProperty, closing, txClosing                                *sql.Stmt
	booking, payment, txLedger                                                                    *sql.Stmt
}

// each is every statement with its SQL: the one list that prepare, in and
// close go through.
func (s *statements) each() []struct {
	dst **sql.Stmt
	sql string
} {
	return []struct {
		dst **sql.Stmt
		sql string
	}{
		{&s.applied, sqlApplied}, {&s.lead, sqlLead}, {&s.synced, sqlSynced}, {&s.leadContact, sqlLeadContact}, {&s.speed, sqlSpeed},
		{&s.stage, sqlStage}, {&s.update, sqlUpdate}, {&s.spend, sqlSpend}, {&s.cursor, sqlCursor},
		{&s.journey, sqlJourney}, {&s.journeyGone, sqlJourneyGone}, {&s.spendSet, sqlSpendSet},
		{&s.txOpened, sqlTxOpened}, {&s.txNamed, sqlTxNamed}, {&s.txNamedFact, sqlTxNamedFact}, {&s.txProperty, sqlTxProperty},
		{&s.closing, sqlClosing}, {&s.txClosing, sqlTxClosing},
		{&s.booking, sqlBooking}, {&s.payment, sqlPayment}, {&s.txLedger, sqlTxLedger},
	}
}

func prepare(ctx context.Context, db *sql.DB) (*statements, error) {
	s := &statements{}
	for _, p := range s.each() {
		st, err := db.PrepareContext(ctx, p.sql)
		if err != nil {
			_ = s.close()
			return nil, fmt.Errorf("prepare %q: %w", firstLine(p.sql), err)
		}
		*p.dst = st
	}
	return s, nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// in returns the statements bound to tx.
func (s *statements) in(ctx context.Context, tx *sql.Tx) *statements {
	out := &statements{}
	from, to := s.each(), out.each()
	for i := range from {
		*to[i].dst = tx.StmtContext(ctx, *from[i].dst)
	}
	return out
}

func (s *statements) close() error {
	var errs []error
	for _, p := range s.each() {
		if *p.dst != nil {
			errs = append(errs, (*p.dst).Close())
		}
	}
	return errors.Join(errs...)
}
