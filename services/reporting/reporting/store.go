package reporting

import (
	"context"
	"database/sql"
	"embed"
	"encoding/csv"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver, registered as "sqlite"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Table is one table of the read model and the columns that order its rows.
type Table struct {
	Name string
	Key  []string
}

// Tables is every table of the read model, in the order the docs describe
// them. The migration library's own version table is not one: it records
// when each migration ran, which a replay cannot reproduce.
var Tables = []Table{
	{"leads", []string{"lead_id"}},
	{"journeys", []string{"crm", "contact_id"}},
	{"stage_changes", []string{"stream", "seq"}},
	{"contact_updates", []string{"stream", "seq"}},
	{"transactions", []string{"transaction_id"}},
	{"transaction_closings", []string{"stream", "seq"}},
	{"commission_bookings", []string{"stream", "seq"}},
	{"commission_payments", []string{"ledger", "document_id", "payment_id"}},
	{"spend", []string{"source", "month"}},
	{"spend_sets", []string{"source", "month", "seq"}},
	{"applied_events", []string{"event_id"}},
	{"stream_cursors", []string{"stream"}},
}

// TableNamed returns the table called name.
func TableNamed(name string) (Table, bool) {
	i := slices.IndexFunc(Tables, func(t Table) bool { return t.Name == name })
	if i < 0 {
		return Table{}, false
	}
	return Tables[i], true
}

// timeLayout is how every time is stored: UTC, fixed width, so that text
// order is time order, and PostgreSQL casts it to timestamptz.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) { return time.Parse(timeLayout, s) }

// openOptions say how a database file is opened.
type openOptions struct {
	// bulk is for a rebuild into a fresh file: no fsync until the switch
	// (a crash then only loses a rebuild that is run again).
	bulk bool
}

// openSQLite opens (creating) the SQLite database at path and brings its
// schema up to date with the versioned migrations.
func openSQLite(ctx context.Context, path string, o openOptions) (*sql.DB, error) {
	sync, journal := "NORMAL", "WAL"
	if o.bulk {
		sync, journal = "OFF", "OFF"
	}
	q := url.Values{}
	for _, p := range []string{"journal_mode(" + journal + ")", "synchronous(" + sync + ")", "busy_timeout(10000)", "cache_size(-65536)", "temp_store(MEMORY)"} {
		q.Add("_pragma", p)
	}
	q.Set("_txlock", "immediate")
	db, err := sql.Open("sqlite", "file:"+filepath.ToSlash(path)+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// One writer at a time (the projector holds its own lock too); readers
	// run beside it in WAL mode.
	db.SetMaxOpenConns(4)
	if err := migrate(ctx, db, goose.DialectSQLite3); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrate %s: %w", path, err)
	}
	return db, nil
}

// migrate applies the pending migrations with goose: the same files for
// SQLite and PostgreSQL.
func migrate(ctx context.Context, db *sql.DB, dialect goose.Dialect) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(dialect, db, fsys)
	if err != nil {
		return err
	}
	_, err = p.Up(ctx)
	return err
}

// WriteCSV writes table's rows as CSV, ordered by its key, with a header.
// NULL is an empty field.
func WriteCSV(ctx context.Context, db *sql.DB, t Table, w io.Writer) error {
	rows, err := db.QueryContext(ctx, "SELECT * FROM "+t.Name+" ORDER BY "+strings.Join(t.Key, ", "))
	if err != nil {
		return fmt.Errorf("read %s: %w", t.Name, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(cols); err != nil {
		return err
	}
	vals := make([]any, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	rec := make([]string, len(cols))
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			return err
		}
		for i, v := range vals {
			rec[i] = csvField(v)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	cw.Flush()
	return cw.Error()
}

func csvField(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case []byte:
		return string(x)
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case time.Time:
		return formatTime(x)
	default:
		return fmt.Sprint(x)
	}
}
