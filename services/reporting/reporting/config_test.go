package reporting_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

func TestConfig_databaseURLFromTheEnvironmentOrAFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "url")
	if err := os.WriteFile(file, []byte("# the reporting database\npostgres://reporting:s3cret@db:5432/brokerflow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		environ []string
		dsn     string
		err     string
	}{
		{"sqlite by default", nil, "", ""},
		{"from the variable", []string{"REPORTING_DATABASE_URL=postgres://u@db/x\n"}, "postgres://u@db/x", ""},
		{"from a file", []string{"REPORTING_DATABASE_URL_FILE=" + file}, "postgres://reporting:s3cret@db:5432/brokerflow", ""},
		{"both", []string{"REPORTING_DATABASE_URL=postgres://u@db/x", "REPORTING_DATABASE_URL_FILE=" + file}, "", "not both"},
		{"not a DSN", []string{"REPORTING_DATABASE_URL=postgres://u:pw@db:notaport/x"}, "", "REPORTING_DATABASE_URL does not parse"},
		{"a missing file", []string{"REPORTING_DATABASE_URL_FILE=" + filepath.Join(dir, "none")}, "", "REPORTING_DATABASE_URL_FILE"},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			t.Parallel()
			cfg, err := reporting.ConfigFromEnv(c.environ)
			var dsn string
			if err == nil {
				dsn, err = cfg.DSN()
			}
			switch {
			case c.err == "" && err != nil:
				t.Fatal(err)
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err) || !errors.Is(err, reporting.ErrConfig)):
				t.Fatalf("err %v, want one saying %q", err, c.err)
			case c.err != "" && strings.Contains(err.Error(), "pw"):
				t.Fatalf("the error shows the password: %v", err)
			case dsn != c.dsn:
				t.Fatalf("dsn %q, want %q", dsn, c.dsn)
			}
		})
	}
}
