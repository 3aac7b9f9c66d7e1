package pgtest_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func psql(t *testing.T, bin, dsn, query string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "psql"), "-XAt", "-d", dsn, "-c", query)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("psql: %v\n%s", err, errOut.String())
	}
	return strings.TrimSpace(out.String())
}

// A server of its own: it answers on its port, its files belong to a user
// other than root (initdb refuses root), and Stop removes them.
func TestStart_runsAsANonRootUserAndStopRemovesIt(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = s.Stop()
		}
	})
	if got := psql(t, s.BinDir, s.DSN(""), "SELECT current_database() || ' ' || current_setting('fsync') || ' ' || inet_server_port()"); got != "postgres off "+itoa(s.Port) {
		t.Fatalf("server says %q", got)
	}
	fi, err := os.Stat(filepath.Join(s.Dir, "data", "PG_VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == 0 {
		t.Fatal("the cluster belongs to root")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("stop: %v\n%s", err, s.Log())
	}
	stopped = true
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("%s is still there: %v", s.Dir, err)
	}
}

// Each database New returns is a new, empty one on the shared server.
func TestNew_givesEachTestItsOwnDatabase(t *testing.T) {
	t.Parallel()
	a, b := pgtest.New(t), pgtest.New(t)
	if a == b {
		t.Fatalf("two calls got the same database %s", a)
	}
	bin, err := pgtest.FindBinDir()
	if err != nil {
		t.Fatal(err)
	}
	psql(t, bin, a, "CREATE TABLE only_in_a (x int)")
	if got := psql(t, bin, b, "SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'"); got != "0" {
		t.Fatalf("a table made in one database is in the other: %s", got)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
