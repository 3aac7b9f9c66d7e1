package reporting

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// A rebuild projects each batch in memory and writes each table once per
// batch: it writes a fresh database, and remembers every event id it has
// applied, so that no row it writes can be there already. The facts that
// one event alone makes (an applied event, a stage change, a contact
// update) are rows written at the end of their batch. A lead's row, which
// its LEADS event and its CRM event both fill, is written with the batch of
// its LEADS event, with its speed to lead: a rebuild reads CRM before
// LEADS, so the row is whole then. The rebuild keeps every lead's row, and
// writes at its end those it did not (no LEADS event read) and those an
// event changed after they were written. Into SQLite the rows go in multi-row INSERTs, into
// PostgreSQL with COPY. The rare events (TMS, spend) keep their statements.

// bulkTable is a table a rebuild writes rows into, and its columns.
type bulkTable struct {
	name string
	cols []string
}

var (
	bulkApplied = bulkTable{"applied_events", []string{"event_id", "stream", "seq", "subject", "event_type", "projected"}}
	bulkStages  = bulkTable{"stage_changes", []string{"stream", "seq", "event_id", "crm", "contact_id", "old_stage", "new_stage",
		"active_client", "changed_at", "crm_source", "lead_id", "crm_event_id"}}
	bulkUpdates = bulkTable{"contact_updates", []string{"stream", "seq", "event_id", "crm", "contact_id", "changed_fields",
		"stage", "updated_at", "crm_source", "crm_event_id"}}
	bulkLeads = bulkTable{"leads", []string{"lead_id", "source", "status", "reject_reason", "received_at", "inquiry_type",
		"utm_source", "utm_medium", "utm_campaign", "lead_stream", "lead_seq", "webhook_stream", "webhook_seq",
		"crm", "contact_id", "sync_outcome", "matched_by", "synced_at", "sync_seq", "speed_to_lead_ms"}}
)

// bulkRowsPerInsert is how many rows one SQLite INSERT writes.
const bulkRowsPerInsert = 32

// insertSQL is a multi-row INSERT of n rows into t for SQLite. Its
// placeholders are anonymous (?): SQLite finds a numbered one ($N) by a
// scan of the statement's names, which made binding hundreds of them
// quadratic.
func (t bulkTable) insertSQL(n int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(t.cols)), ", ") + ")"
	rows := make([]string, n)
	for i := range rows {
		rows[i] = row
	}
	return "INSERT INTO " + t.name + " (" + strings.Join(t.cols, ", ") + ") VALUES " + strings.Join(rows, ", ")
}

// bulkRows are the rows of a batch, per table, in the order they came.
type bulkRows map[string][][]any

func (r bulkRows) add(t bulkTable, row ...any) { r[t.name] = append(r[t.name], row) }

// plain turns a nullable into nil or its value, as COPY and SQLite take it.
func plain(v any) any {
	switch x := v.(type) {
	case sql.NullString:
		if !x.Valid {
			return nil
		}
		return x.String
	case sql.NullInt64:
		if !x.Valid {
			return nil
		}
		return x.Int64
	case int:
		return int64(x)
	}
	return v
}

// leadRow is a lead's row as a rebuild builds it: what sqlLead and
// sqlSynced would have left, applied in the same order.
type leadRow struct {
	source, status, rejectReason, receivedAt, inquiry, utmSource, utmMedium, utmCampaign sql.NullString
	leadStream, webhookStream, crm, contactID, outcome, matchedBy, syncedAt              sql.NullString
	leadSeq, webhookSeq, syncSeq                                                         sql.NullInt64
	// due: its row is written at the end of this batch; written: it was;
	// dirty: an event changed it after, and it is written again at the
	// rebuild's end.
	due, written, dirty bool
}

// setLead is sqlLead's upsert: the lead's own columns, in args' order.
func (r *leadRow) setLead(args []any) {
	str := func(i int) sql.NullString {
		switch x := args[i].(type) {
		case string:
			return sql.NullString{String: x, Valid: true}
		case sql.NullString:
			return x
		}
		panic(fmt.Sprintf("lead column %d: %T", i, args[i]))
	}
	r.source, r.status, r.rejectReason, r.receivedAt = str(1), str(2), str(3), str(4)
	r.inquiry = str(5)
	if r.inquiry.String == "" { // NULLIF($6, '')
		r.inquiry = sql.NullString{}
	}
	r.utmSource, r.utmMedium, r.utmCampaign, r.leadStream = str(6), str(7), str(8), str(9)
	r.leadSeq = sql.NullInt64{Int64: args[10].(int64), Valid: true}
	r.webhookStream, r.webhookSeq = str(11), args[12].(sql.NullInt64)
}

// setSynced is sqlSynced's upsert: the CRM step, and the source while the
// lead's own is not known.
func (r *leadRow) setSynced(args []any) {
	if !r.source.Valid {
		r.source = args[1].(sql.NullString)
	}
	r.crm, r.contactID = args[2].(sql.NullString), args[3].(sql.NullString)
	r.outcome = sql.NullString{String: args[4].(string), Valid: true}
	r.matchedBy = args[5].(sql.NullString)
	r.syncedAt = sql.NullString{String: args[6].(string), Valid: true}
	r.syncSeq = sql.NullInt64{Int64: args[7].(int64), Valid: true}
}

// row is the lead's row in bulkLeads' columns, with its speed to lead once
// its receipt and its contact are both known (as the live projection fills it).
func (r *leadRow) row(id string) ([]any, error) {
	speed := sql.NullInt64{}
	if r.receivedAt.Valid && r.syncedAt.Valid && r.contactID.Valid {
		rt, err := parseTime(r.receivedAt.String)
		if err != nil {
			return nil, err
		}
		st, err := parseTime(r.syncedAt.String)
		if err != nil {
			return nil, err
		}
		speed = sql.NullInt64{Int64: speedMs(rt, st), Valid: true}
	}
	out := []any{id, r.source, r.status, r.rejectReason, r.receivedAt, r.inquiry, r.utmSource, r.utmMedium, r.utmCampaign,
		r.leadStream, r.leadSeq, r.webhookStream, r.webhookSeq, r.crm, r.contactID, r.outcome, r.matchedBy, r.syncedAt,
		r.syncSeq, speed}
	for i := range out {
		out[i] = plain(out[i])
	}
	return out, nil
}

// writeRows writes rows into t: on SQLite in tx, bulkRowsPerInsert rows a
// statement; on PostgreSQL with COPY.
func (s *Store) writeRows(ctx context.Context, tx *sql.Tx, t bulkTable, rows [][]any) error {
	if len(rows) == 0 {
		return nil
	}
	if s.dialect == dialectPostgres {
		return s.withPgx(ctx, func(c *pgx.Conn) error {
			_, err := c.CopyFrom(ctx, pgx.Identifier{t.name}, t.cols, pgx.CopyFromRows(rows))
			return err
		})
	}
	args := make([]any, 0, bulkRowsPerInsert*len(t.cols))
	for len(rows) > 0 {
		n := min(len(rows), bulkRowsPerInsert)
		st, err := s.bulkStmt(ctx, t, n)
		if err != nil {
			return err
		}
		args = args[:0]
		for _, r := range rows[:n] {
			args = append(args, r...)
		}
		if _, err := tx.StmtContext(ctx, st).ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("write %s: %w", t.name, err)
		}
		rows = rows[n:]
	}
	return nil
}

// bulkStmt is the prepared multi-row INSERT of n rows into t (SQLite).
// The caller holds s.mu.
func (s *Store) bulkStmt(ctx context.Context, t bulkTable, n int) (*sql.Stmt, error) {
	key := fmt.Sprintf("%s/%d", t.name, n)
	if st, ok := s.bulk[key]; ok {
		return st, nil
	}
	st, err := s.DB.PrepareContext(ctx, t.insertSQL(n))
	if err != nil {
		return nil, fmt.Errorf("prepare the insert into %s: %w", t.name, err)
	}
	if s.bulk == nil {
		s.bulk = map[string]*sql.Stmt{}
	}
	s.bulk[key] = st
	return st, nil
}

// writeBulk writes a batch's rows, table by table.
func (s *Store) writeBulk(ctx context.Context, tx *sql.Tx, rows bulkRows) error {
	for _, t := range []bulkTable{bulkApplied, bulkStages, bulkUpdates, bulkLeads} {
		if err := s.writeRows(ctx, tx, t, rows[t.name]); err != nil {
			return err
		}
	}
	return nil
}

// dueLead is a lead's row as it was when its batch was projected: the
// writer makes its columns, while the reader goes on changing the kept row.
type dueLead struct {
	id  string
	row leadRow
}

// dueLeads are the rows of the leads due in a batch, as they are now; it
// marks them written.
func dueLeads(leads map[string]*leadRow, due []string) []dueLead {
	out := make([]dueLead, 0, len(due))
	for _, id := range due {
		r := leads[id]
		r.due, r.written = false, true
		out = append(out, dueLead{id, *r})
	}
	return out
}

// addLeads adds the rows of leads to rows.
func addLeads(rows bulkRows, leads []dueLead) error {
	for _, l := range leads {
		row, err := l.row.row(l.id)
		if err != nil {
			return fmt.Errorf("lead %s: %w", l.id, err)
		}
		rows.add(bulkLeads, row...)
	}
	return nil
}

// writeLeads writes, at a rebuild's end, the leads its batches did not:
// those with no LEADS event in the rebuild (it started after it), and
// those an event changed after their row was written, whose row is
// replaced. By lead id, batchSize rows to a transaction.
func (s *Store) writeLeads(ctx context.Context, leads map[string]*leadRow, batchSize int) error {
	var ids, dirty []string
	for id, r := range leads {
		if !r.written || r.dirty {
			ids = append(ids, id)
		}
		if r.dirty {
			dirty = append(dirty, id)
		}
	}
	sort.Strings(ids)
	sort.Strings(dirty)
	if err := s.deleteLeads(ctx, dirty, batchSize); err != nil {
		return err
	}
	rows := make([][]any, 0, min(len(ids), batchSize))
	for len(ids) > 0 {
		n := min(len(ids), batchSize)
		rows = rows[:0]
		for _, id := range ids[:n] {
			r, err := leads[id].row(id)
			if err != nil {
				return fmt.Errorf("lead %s: %w", id, err)
			}
			rows = append(rows, r)
		}
		var err error
		if s.dialect == dialectPostgres {
			err = s.writeRows(ctx, nil, bulkLeads, rows)
		} else {
			err = s.inTx(ctx, func(tx *sql.Tx, _ *statements) error { return s.writeRows(ctx, tx, bulkLeads, rows) })
		}
		if err != nil {
			return fmt.Errorf("write leads: %w", err)
		}
		ids = ids[n:]
	}
	return nil
}

// deleteLeads deletes the rows of the leads ids, batchSize to a transaction.
func (s *Store) deleteLeads(ctx context.Context, ids []string, batchSize int) error {
	for len(ids) > 0 {
		n := min(len(ids), batchSize)
		err := s.inTx(ctx, func(tx *sql.Tx, _ *statements) error {
			for _, id := range ids[:n] {
				if _, err := tx.ExecContext(ctx, `DELETE FROM leads WHERE lead_id = $1`, id); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("replace changed leads: %w", err)
		}
		ids = ids[n:]
	}
	return nil
}

// withPgx runs fn on one of the pool's PostgreSQL connections, as pgx's own.
func (s *Store) withPgx(ctx context.Context, fn func(*pgx.Conn) error) error {
	conn, err := s.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("not a pgx connection: %T", dc)
		}
		return fn(c.Conn())
	})
}
