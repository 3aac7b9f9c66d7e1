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
// update) are rows written at the end of their batch; a lead's row, which
// its LEADS event and its CRM event both fill (read one stream after the
// other), is kept until the end of the rebuild and written once, with its
// speed to lead. Into SQLite the rows go in multi-row INSERTs, into
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
	for _, t := range []bulkTable{bulkApplied, bulkStages, bulkUpdates} {
		if err := s.writeRows(ctx, tx, t, rows[t.name]); err != nil {
			return err
		}
	}
	return nil
}

// writeLeads writes every lead a rebuild has read, by lead id, batchSize
// rows to a transaction.
func (s *Store) writeLeads(ctx context.Context, leads map[string]*leadRow, batchSize int) error {
	ids := make([]string, 0, len(leads))
	for id := range leads {
		ids = append(ids, id)
	}
	sort.Strings(ids)
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
