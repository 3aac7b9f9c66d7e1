package reporting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/jackc/pgx/v5"
)

// Store is one read-model database (a SQLite file, or a schema of a
// PostgreSQL database), its prepared statements, and the lock that makes
// its writers take turns.
type Store struct {
	DB *sql.DB
	// Name is the database's name in its place: a file name, or a schema.
	Name string
	// Where says where it is, for people: the file's path, or the schema.
	Where   string
	stmts   *statements
	dialect dialect
	mu      sync.Mutex
	// noKey turns the idempotency key off (tests that show it matters).
	noKey bool
	// bulk are a rebuild's multi-row INSERTs (SQLite), by table and rows.
	bulk map[string]*sql.Stmt
}

type dialect int

const (
	dialectSQLite dialect = iota
	dialectPostgres
)

// writersLock is the PostgreSQL advisory lock every writing transaction
// takes first, so that the writers of every replica take turns, as one
// process's writers do on SQLite: a journey is recomputed from the facts,
// which a concurrent transaction's uncommitted facts would miss.
const writersLock = 0x62666c6f77 // "bflow"

// OpenStore opens or creates the SQLite database at path, migrated to the
// current schema.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	return SQLiteDir(filepath.Dir(path)).Open(ctx, filepath.Base(path))
}

func newStore(ctx context.Context, db *sql.DB, name, where string, d dialect) (*Store, error) {
	st, err := prepare(ctx, db)
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Store{DB: db, Name: name, Where: where, stmts: st, dialect: d}, nil
}

// begin starts a writing transaction.
func (s *Store) begin(ctx context.Context) (*sql.Tx, error) {
	tx, err := s.DB.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	if s.dialect == dialectPostgres {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(writersLock)); err != nil {
			_ = tx.Rollback()
			return nil, fmt.Errorf("take the writers' lock: %w", err)
		}
	}
	return tx, nil
}

// Close closes the database.
func (s *Store) Close() error {
	errs := []error{s.stmts.close()}
	for _, st := range s.bulk {
		errs = append(errs, st.Close())
	}
	return errors.Join(append(errs, s.DB.Close())...)
}

// Applied is what one Apply did.
type Applied struct {
	// Events is how many events were new (the others had been applied).
	Events int
	// Observed are the speeds to lead the events completed.
	Observed []Observation
}

// Apply projects events in one transaction. An event whose id was applied
// before changes nothing. An event that does not decode fails the whole
// call with an error wrapping errUndecodable.
func (s *Store) Apply(ctx context.Context, events []Event) (Applied, error) {
	ds := make([]decoded, 0, len(events))
	for _, e := range events {
		d, err := decode(e)
		if err != nil {
			return Applied{}, err
		}
		ds = append(ds, d)
	}
	return s.apply(ctx, ds)
}

// apply projects ds in one transaction.
func (s *Store) apply(ctx context.Context, ds []decoded) (Applied, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	tx, err := s.begin(ctx)
	if err != nil {
		return Applied{}, err
	}
	defer func() { _ = tx.Rollback() }()
	b := &batch{
		tx:       tx,
		stmts:    s.stmts.in(ctx, tx),
		journeys: map[journeyKey]bool{},
		cursors:  map[string]cursor{},
		noKey:    s.noKey,
	}
	out, err := b.run(ctx, ds)
	if err != nil {
		return Applied{}, err
	}
	if err := tx.Commit(); err != nil {
		return Applied{}, fmt.Errorf("commit: %w", err)
	}
	out.Observed = b.observed
	return out, nil
}

// run applies ds and finishes the batch.
func (b *batch) run(ctx context.Context, ds []decoded) (Applied, error) {
	var out Applied
	for _, d := range ds {
		ok, err := b.apply(ctx, d)
		if err != nil {
			return Applied{}, err
		}
		if ok {
			out.Events++
		}
	}
	if err := b.finish(ctx); err != nil {
		return Applied{}, err
	}
	return out, nil
}

// rebuildBatch is a rebuild's batch projected in memory, ready to write:
// its rows per table, and the statements of its rare events (TMS, LEDGER,
// spend), queued in the order they came.
type rebuildBatch struct {
	events int
	rows   bulkRows
	leads  []dueLead  // their rows are made by the writer
	later  []queued   // SQLite
	pipe   *pgx.Batch // PostgreSQL
}

// queued is a statement to run later, with its arguments.
type queued struct {
	st   *sql.Stmt
	args []any
}

// project projects a rebuild's batch in memory, touching no database, so
// that the reader of the streams does it while the writer writes the batch
// before: a rebuild's two halves then run side by side. memo is what the
// rebuild keeps across its batches; only the reader may touch it.
func (s *Store) project(ctx context.Context, ds []decoded, memo *rebuildMemo) (rebuildBatch, error) {
	b := &batch{
		stmts:    s.stmts, // queued, to be bound to the writer's transaction
		journeys: map[journeyKey]bool{},
		cursors:  map[string]cursor{},
		noKey:    s.noKey,
		rebuild:  true,
		leads:    memo.leads,
		seen:     memo.seen,
		memo:     memo,
		rows:     bulkRows{},
		queue:    true,
	}
	if s.dialect == dialectPostgres {
		b.pipe = &pgx.Batch{}
	}
	out, err := b.run(ctx, ds)
	if err != nil {
		return rebuildBatch{}, err
	}
	return rebuildBatch{events: out.Events, rows: b.rows, leads: dueLeads(memo.leads, b.due), later: b.later, pipe: b.pipe}, nil
}

// write writes a rebuild's projected batch: into SQLite in one
// transaction; into PostgreSQL its statements in one pipeline (one round
// trip) and its rows with COPY. A rebuild writes a fresh database, which
// a failed rebuild leaves behind to be removed, so a batch into
// PostgreSQL need not be all or nothing.
func (s *Store) write(ctx context.Context, rb rebuildBatch) error {
	if err := addLeads(rb.rows, rb.leads); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dialect == dialectPostgres {
		if err := s.sendPipeline(ctx, rb.pipe); err != nil {
			return fmt.Errorf("write a batch: %w", err)
		}
		if err := s.writeBulk(ctx, nil, rb.rows); err != nil {
			return fmt.Errorf("write a batch: %w", err)
		}
		return nil
	}
	tx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for _, q := range rb.later {
		if _, err := tx.StmtContext(ctx, q.st).ExecContext(ctx, q.args...); err != nil {
			return fmt.Errorf("write a batch: %w", err)
		}
	}
	if err := s.writeBulk(ctx, tx, rb.rows); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// finishRebuild writes what a rebuild's batches kept (every lead, with its
// speed to lead) and derives the rest from the facts, as the live
// projection does event by event: every closed, booked or paid
// transaction, then every journey, in one statement.
func (s *Store) finishRebuild(ctx context.Context, memo *rebuildMemo, batchSize int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.writeLeads(ctx, memo.leads, batchSize); err != nil {
		return fmt.Errorf("finish the rebuild: %w", err)
	}
	// Each closed transaction's closing columns, and each booked or paid
	// one's commission columns, before the journeys that show them.
	for _, d := range []struct {
		what, which, query string
		stmt               func(*statements) *sql.Stmt
	}{
		{"closings", sqlAllClosed, sqlTxClosing, func(st *statements) *sql.Stmt { return st.txClosing }},
		{"commissions", sqlAllLedgered, sqlTxLedger, func(st *statements) *sql.Stmt { return st.txLedger }},
	} {
		var rows [][]any
		err := each(ctx, s.DB, d.which, nil, func(sc scanner) error {
			var id string
			if err := sc.Scan(&id); err != nil {
				return err
			}
			rows = append(rows, []any{id})
			return nil
		})
		if err == nil {
			err = s.execMany(ctx, d.stmt, d.query, rows, batchSize)
		}
		if err != nil {
			return fmt.Errorf("finish the rebuild: %s: %w", d.what, err)
		}
	}
	if s.dialect == dialectPostgres {
		// The planner's statistics of the facts, for the journeys' plan.
		for _, t := range []string{"leads", "stage_changes", "contact_updates", "transactions"} {
			if _, err := s.DB.ExecContext(ctx, `ANALYZE `+t); err != nil {
				return fmt.Errorf("finish the rebuild: %w", err)
			}
		}
	}
	if s.dialect == dialectPostgres {
		if _, err := s.DB.ExecContext(ctx, sqlAllJourneysWindowed); err != nil {
			return fmt.Errorf("finish the rebuild: journeys: %w", err)
		}
		return nil
	}
	// SQLite: the contact side of every journey from what the reader kept
	// (journeys.go), then the transaction columns of the contacts with one.
	rows := memo.journeys
	if rows == nil {
		rows = memo.journeyRows()
	}
	err := s.inTx(ctx, func(tx *sql.Tx, _ *statements) error { return s.writeRows(ctx, tx, bulkJourneys, rows) })
	if err == nil {
		_, err = s.DB.ExecContext(ctx, sqlJourneyTransactions)
	}
	if err != nil {
		return fmt.Errorf("finish the rebuild: journeys: %w", err)
	}
	return nil
}

// execMany runs one statement (query, prepared as stmt's) once per row,
// batchSize rows to a transaction; on PostgreSQL (a rebuild's end) each
// batchSize rows go in one pipeline instead.
func (s *Store) execMany(ctx context.Context, stmt func(*statements) *sql.Stmt, query string, rows [][]any, batchSize int) error {
	for i := 0; i < len(rows); i += batchSize {
		chunk := rows[i:min(i+batchSize, len(rows))]
		var err error
		if s.dialect == dialectPostgres {
			pipe := &pgx.Batch{}
			for _, args := range chunk {
				pipe.Queue(query, args...)
			}
			err = s.sendPipeline(ctx, pipe)
		} else {
			err = s.inTx(ctx, func(_ *sql.Tx, st *statements) error {
				for _, args := range chunk {
					if _, err := stmt(st).ExecContext(ctx, args...); err != nil {
						return err
					}
				}
				return nil
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// sendPipeline sends the statements of pipe to PostgreSQL at once and
// returns the first error.
func (s *Store) sendPipeline(ctx context.Context, pipe *pgx.Batch) error {
	return s.withPgx(ctx, func(c *pgx.Conn) error { return c.SendBatch(ctx, pipe).Close() })
}

func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx, *statements) error) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx, s.stmts.in(ctx, tx)); err != nil {
		return err
	}
	return tx.Commit()
}

// rebuildMemo is what a rebuild remembers across its batches: each lead's
// row, written at its end, each event id applied, and (into SQLite, whose
// journeys it derives from them) what each contact's journey needs of its
// stage changes and updates.
type rebuildMemo struct {
	leads    map[string]*leadRow
	seen     map[string]struct{}
	contacts map[journeyKey]*contactFacts
	// journeys are the journeys' rows (journeyRows), derived once the
	// last pass has read its events, while its last batches are written.
	journeys [][]any
}

// newRebuildMemo is the memo of a rebuild into st.
func newRebuildMemo(st *Store) rebuildMemo {
	m := rebuildMemo{leads: map[string]*leadRow{}, seen: map[string]struct{}{}}
	if st.dialect == dialectSQLite {
		m.contacts = map[journeyKey]*contactFacts{}
	}
	return m
}

// rebuiltTo returns where the rebuild that made the database stopped in
// each stream, or nil when no rebuild made it.
func (s *Store) rebuiltTo(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	err := each(ctx, s.DB, `SELECT stream, last_seq FROM rebuilt_to`, nil, func(sc scanner) error {
		var stream string
		var seq int64
		if err := sc.Scan(&stream, &seq); err != nil {
			return err
		}
		out[stream] = uint64(seq)
		return nil
	})
	if err != nil || len(out) == 0 {
		return nil, err
	}
	return out, nil
}

// setRebuiltTo records where a rebuild stopped in each stream it read.
func (s *Store) setRebuiltTo(ctx context.Context, streams []string, last map[string]uint64) error {
	tx, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	for _, stream := range streams {
		if _, err := tx.ExecContext(ctx, `INSERT INTO rebuilt_to (stream, last_seq) VALUES ($1, $2)`, stream, int64(last[stream])); err != nil {
			return fmt.Errorf("record where the rebuild stopped: %w", err)
		}
	}
	return tx.Commit()
}

// Cursors returns the last sequence applied from each stream.
func (s *Store) Cursors(ctx context.Context) (map[string]uint64, error) {
	rows, err := s.DB.QueryContext(ctx, `SELECT stream, last_seq FROM stream_cursors`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]uint64{}
	for rows.Next() {
		var stream string
		var seq int64
		if err := rows.Scan(&stream, &seq); err != nil {
			return nil, err
		}
		out[stream] = uint64(seq)
	}
	return out, rows.Err()
}
