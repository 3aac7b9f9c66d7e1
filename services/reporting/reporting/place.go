package reporting

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
)

// A Place is where the read model's databases live, and which of them is
// in use: a directory of SQLite files, or a PostgreSQL database with one
// schema per read model. A rebuild writes a new one beside the one in use
// and switches by naming it CURRENT; the service then catches the new one
// up from the one LIVE names (the one it last projected into), and names it
// LIVE. Its methods are unexported: make one with OpenPlace, SQLiteDir or
// PostgreSQL.
type Place interface {
	// String says where, for messages; it never holds a password.
	String() string
	// Open opens (creating and migrating) the database called name.
	Open(ctx context.Context, name string) (*Store, error)
	// Remove deletes the database called name.
	Remove(ctx context.Context, name string) error
	// Close releases what the place holds (not the stores it opened).
	Close() error

	open(ctx context.Context, name string, o openOptions) (*Store, error)
	exists(ctx context.Context, name string) (bool, error)
	// newName is the name of a new database made at t.
	newName(t time.Time) string
	// read returns the name recorded under role (currentRole, liveRole),
	// or "" when there is none.
	read(ctx context.Context, role string) (string, error)
	// write records name under role, atomically.
	write(ctx context.Context, role, name string) error
	// initCurrent records name as CURRENT unless one is, and returns the
	// one that is (several replicas may start at once).
	initCurrent(ctx context.Context, name string) (string, error)
	// finishBulk makes a rebuilt database durable before it is switched to.
	finishBulk(ctx context.Context, s *Store) error
}

// The roles a place records a database name under.
const (
	currentRole = "CURRENT"
	liveRole    = "LIVE"
)

// OpenPlace is PostgreSQL when dsn is set, and else the SQLite directory dir.
func OpenPlace(ctx context.Context, dir, dsn string) (Place, error) {
	if dsn != "" {
		return PostgreSQL(ctx, dsn)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("reporting data directory: %w", err)
	}
	return SQLiteDir(dir), nil
}

// sqliteDir is a directory of SQLite files: CURRENT and LIVE are files
// holding a file name, replaced by a rename (atomic on one file system).
type sqliteDir struct{ dir string }

// SQLiteDir is the place of SQLite databases in dir.
func SQLiteDir(dir string) Place { return sqliteDir{dir} }

func (p sqliteDir) String() string { return "SQLite in " + p.dir }
func (sqliteDir) Close() error     { return nil }

func (p sqliteDir) Open(ctx context.Context, name string) (*Store, error) {
	return p.open(ctx, name, openOptions{})
}

func (p sqliteDir) open(ctx context.Context, name string, o openOptions) (*Store, error) {
	if err := checkFileName(name); err != nil {
		return nil, err
	}
	path := filepath.Join(p.dir, name)
	db, err := openSQLite(ctx, path, o)
	if err != nil {
		return nil, err
	}
	return newStore(ctx, db, name, path, dialectSQLite)
}

func (p sqliteDir) exists(_ context.Context, name string) (bool, error) {
	_, err := os.Stat(filepath.Join(p.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

func (sqliteDir) newName(t time.Time) string {
	return "reporting-" + t.UTC().Format("20060102T150405.000000000Z") + ".db"
}

// Remove deletes a database file and its WAL companions.
func (p sqliteDir) Remove(_ context.Context, name string) error {
	if err := checkFileName(name); err != nil {
		return err
	}
	path := filepath.Join(p.dir, name)
	var errs []error
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (p sqliteDir) read(_ context.Context, role string) (string, error) {
	b, err := os.ReadFile(filepath.Join(p.dir, role))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	name := strings.TrimSpace(string(b))
	if err := checkFileName(name); err != nil {
		return "", fmt.Errorf("%s in %s: %w", role, p.dir, err)
	}
	return name, nil
}

func checkFileName(name string) error {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "." || name == ".." {
		return fmt.Errorf("%q is not a database file name", name)
	}
	return nil
}

func (p sqliteDir) write(_ context.Context, role, name string) error {
	tmp, err := os.CreateTemp(p.dir, "."+strings.ToLower(role)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.WriteString(name + "\n"); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(p.dir, role))
}

func (p sqliteDir) initCurrent(ctx context.Context, name string) (string, error) {
	cur, err := p.read(ctx, currentRole)
	if err != nil || cur != "" {
		return cur, err
	}
	return name, p.write(ctx, currentRole, name)
}

// finishBulk makes a rebuilt file what a live one is: in WAL mode, and
// durable. It was written with no journal and no fsync, so the file itself
// is synced here, before anyone can switch to it.
func (p sqliteDir) finishBulk(ctx context.Context, s *Store) error {
	_, err := s.DB.ExecContext(ctx, `PRAGMA journal_mode = WAL`)
	if err == nil {
		_, err = s.DB.ExecContext(ctx, `PRAGMA synchronous = FULL`)
	}
	if err == nil {
		_, err = s.DB.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	}
	if err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(p.dir, s.Name))
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// postgres is a PostgreSQL database: each read model is a schema of it
// (the same tables and migrations as a SQLite file), and CURRENT and LIVE
// are rows of the table reporting_databases in the connection's own
// schema (public, unless the DSN's search_path says otherwise).
type postgres struct {
	cfg  *pgx.ConnConfig
	base *sql.DB
}

// PostgreSQL is the place of read models in the PostgreSQL database dsn
// names (a URL, postgres://user:password@host:5432/db, or key=value
// pairs). Its user needs to create schemas in it.
func PostgreSQL(ctx context.Context, dsn string) (Place, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's message may quote the DSN, password included.
		return nil, errors.New("the PostgreSQL DSN does not parse: want postgres://user:password@host:5432/database or key=value pairs")
	}
	p := &postgres{cfg: cfg, base: stdlib.OpenDB(*cfg)}
	p.base.SetMaxOpenConns(2)
	_, err = p.base.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS reporting_databases (
  role        TEXT NOT NULL PRIMARY KEY,
  schema_name TEXT NOT NULL
)`)
	if err != nil {
		_ = p.base.Close()
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return p, nil
}

func (p *postgres) String() string {
	return fmt.Sprintf("PostgreSQL database %s on %s:%d", p.cfg.Database, p.cfg.Host, p.cfg.Port)
}

func (p *postgres) Close() error { return p.base.Close() }

// schemaName is what a read model's name must be: a plain lower-case
// identifier (quoted all the same, as it may be a keyword).
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func checkSchema(name string) error {
	if !schemaName.MatchString(name) || strings.HasPrefix(name, "pg_") {
		return fmt.Errorf("%q is not a read-model schema name (lower-case letters, digits and _)", name)
	}
	return nil
}

func (p *postgres) Open(ctx context.Context, name string) (*Store, error) {
	return p.open(ctx, name, openOptions{})
}

func (p *postgres) open(ctx context.Context, name string, o openOptions) (*Store, error) {
	if err := checkSchema(name); err != nil {
		return nil, err
	}
	if _, err := p.base.ExecContext(ctx, `CREATE SCHEMA IF NOT EXISTS `+pgx.Identifier{name}.Sanitize()); err != nil {
		return nil, fmt.Errorf("create schema %s: %w", name, err)
	}
	cfg := p.cfg.Copy()
	cfg.RuntimeParams["search_path"] = pgx.Identifier{name}.Sanitize()
	if o.bulk {
		// A rebuild into a fresh schema: no wait for the WAL's flush until
		// the switch, which commits synchronously (and so flushes it all).
		cfg.RuntimeParams["synchronous_commit"] = "off"
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(8)
	if err := migrate(ctx, db, goose.DialectPostgres); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("migrate schema %s: %w", name, err)
	}
	return newStore(ctx, db, name, "schema "+name, dialectPostgres)
}

func (p *postgres) exists(ctx context.Context, name string) (bool, error) {
	var n int
	err := p.base.QueryRowContext(ctx, `SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1`, name).Scan(&n)
	return n > 0, err
}

func (*postgres) newName(t time.Time) string {
	return "reporting_" + strings.NewReplacer("T", "t", ".", "_").Replace(t.UTC().Format("20060102T150405.000000000"))
}

func (p *postgres) Remove(ctx context.Context, name string) error {
	if err := checkSchema(name); err != nil {
		return err
	}
	_, err := p.base.ExecContext(ctx, `DROP SCHEMA IF EXISTS `+pgx.Identifier{name}.Sanitize()+` CASCADE`)
	return err
}

func (p *postgres) read(ctx context.Context, role string) (string, error) {
	var name string
	err := p.base.QueryRowContext(ctx, `SELECT schema_name FROM reporting_databases WHERE role = $1`, role).Scan(&name)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	if err := checkSchema(name); err != nil {
		return "", fmt.Errorf("%s in reporting_databases: %w", role, err)
	}
	return name, nil
}

func (p *postgres) write(ctx context.Context, role, name string) error {
	_, err := p.base.ExecContext(ctx, `INSERT INTO reporting_databases (role, schema_name) VALUES ($1, $2)
ON CONFLICT (role) DO UPDATE SET schema_name = excluded.schema_name`, role, name)
	return err
}

func (p *postgres) initCurrent(ctx context.Context, name string) (string, error) {
	_, err := p.base.ExecContext(ctx, `INSERT INTO reporting_databases (role, schema_name) VALUES ($1, $2) ON CONFLICT (role) DO NOTHING`, currentRole, name)
	if err != nil {
		return "", err
	}
	return p.read(ctx, currentRole)
}

func (*postgres) finishBulk(ctx context.Context, s *Store) error {
	// The planner's statistics of the new tables, before anyone reads them.
	for _, t := range Tables {
		if _, err := s.DB.ExecContext(ctx, `ANALYZE `+t.Name); err != nil {
			return err
		}
	}
	return nil
}
