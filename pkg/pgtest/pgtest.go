// Package pgtest starts a real PostgreSQL, from the operating system's
// package (Debian's postgresql), on a random loopback port in a temporary
// directory: for tests, and for the benchmark program.
//
// initdb and postgres refuse to run as root. As root, the server runs as the
// system user "postgres" (which Debian's package creates), or else "nobody",
// and its directory belongs to that user.
//
// A test that needs PostgreSQL and cannot find it fails: it never skips.
// `make test` installs the package when it is missing and it runs as root.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrNotInstalled is returned when no initdb can be found.
var ErrNotInstalled = errors.New("pgtest: PostgreSQL is not installed (no initdb on PATH or in /usr/lib/postgresql/*/bin): " +
	"install Debian's postgresql package (`apt-get install -y postgresql`; `make test` does it when run as root)")

// Server is a running PostgreSQL.
type Server struct {
	// Dir holds the cluster, its socket and its log; it is removed at Stop.
	Dir  string
	Port int
	// BinDir is where initdb, pg_ctl and postgres were found.
	BinDir string

	cred *syscall.Credential
	mu   sync.Mutex
	dbs  int
}

// Options change how the server runs.
type Options struct {
	// Durable keeps fsync and synchronous commits on; by default they are
	// off, as a throw-away test cluster needs no crash safety.
	Durable bool
}

// FindBinDir returns the directory of initdb: from PATH (following a link
// such as /usr/local/bin/initdb), or the newest /usr/lib/postgresql/*/bin.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if target, err := filepath.EvalSymlinks(p); err == nil {
			p = target
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) })
	if len(dirs) == 0 {
		return "", ErrNotInstalled
	}
	return filepath.Dir(dirs[0]), nil
}

// version is the major version in /usr/lib/postgresql/<v>/bin/initdb.
func version(path string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return v
}

// Start initializes a cluster in a new temporary directory and starts it
// on a free loopback port. Stop it with Stop.
func Start(ctx context.Context, o Options) (*Server, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	s := &Server{BinDir: bin}
	if os.Geteuid() == 0 {
		if s.cred, err = nonRoot(); err != nil {
			return nil, err
		}
	}
	// Not under a test's TempDir: its parents are root's, 0700.
	if s.Dir, err = os.MkdirTemp("", "pgtest-"); err != nil {
		return nil, err
	}
	if s.cred != nil {
		if err := os.Chown(s.Dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			_ = os.RemoveAll(s.Dir)
			return nil, err
		}
	}
	if err := s.initdb(ctx); err != nil {
		_ = os.RemoveAll(s.Dir)
		return nil, err
	}
	// A free port can be taken by someone else before the server binds it:
	// try again on another.
	for attempt := 0; ; attempt++ {
		if s.Port, err = freePort(ctx); err == nil {
			err = s.start(ctx, o)
		}
		if err == nil || attempt == 2 || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		_ = os.RemoveAll(s.Dir)
		return nil, err
	}
	return s, nil
}

// nonRoot is the user the server runs as when the caller is root.
func nonRoot() (*syscall.Credential, error) {
	var errs []error
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("pgtest: running as root, and no user to run PostgreSQL as: %w", errors.Join(errs...))
}

func (s *Server) data() string { return filepath.Join(s.Dir, "data") }

// run runs one of the server's programs as the server's user.
func (s *Server) run(ctx context.Context, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, name), args...)
	cmd.Dir = s.Dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("pgtest: %s: %w\n%s", name, err, out.String())
	}
	return nil
}

func (s *Server) initdb(ctx context.Context) error {
	// Trust on the loopback only; C collation, so that text sorts byte by
	// byte as SQLite sorts it; no fsync while the cluster is written.
	return s.run(ctx, "initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync")
}

func (s *Server) start(ctx context.Context, o Options) error {
	opts := []string{"-p", strconv.Itoa(s.Port), "-k", s.Dir, "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"}
	if !o.Durable {
		opts = append(opts, "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off")
	}
	return s.run(ctx, "pg_ctl", "-D", s.data(), "-l", filepath.Join(s.Dir, "log"), "-o", strings.Join(opts, " "), "-w", "-t", "60", "start")
}

// Stop stops the server and removes its directory.
func (s *Server) Stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := s.run(ctx, "pg_ctl", "-D", s.data(), "-m", "immediate", "-w", "stop")
	return errors.Join(err, os.RemoveAll(s.Dir))
}

// DSN is the connection string of database db (the "postgres" database
// when empty), as the superuser "postgres".
func (s *Server) DSN(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.Port, db)
}

// Log is the server's log so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "log"))
	return string(b)
}

// CreateDatabase makes a new, empty database and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context) (string, error) {
	s.mu.Lock()
	s.dbs++
	name := fmt.Sprintf("test_%d", s.dbs)
	s.mu.Unlock()
	if err := s.run(ctx, "createdb", "-h", s.Dir, "-p", strconv.Itoa(s.Port), "-U", "postgres", name); err != nil {
		return "", err
	}
	return s.DSN(name), nil
}

func freePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// The server a test binary shares: started on first use, stopped by Main.
var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// New returns a DSN of a new, empty database on the test binary's shared
// server, started on first use. The test fails, rather than skips, when
// PostgreSQL cannot be started. A package that calls New runs its tests
// through Main, which stops the server at the end.
func New(tb testing.TB) string {
	tb.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		shared.srv, shared.err = Start(ctx, Options{})
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, err := shared.srv.CreateDatabase(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return dsn
}

// Main runs the tests, then stops the shared server if one was started:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}
