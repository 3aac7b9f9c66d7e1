package reporting

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/brokerflow/brokerflow/pkg/service"
)

// Prefix is the environment prefix of every reporting setting.
const Prefix = "REPORTING_"

// Config is the reporting service's configuration, from REPORTING_* variables.
type Config struct {
	// DataDir holds the SQLite databases and CURRENT, which names the one
	// in use; a rebuild (brokerflow replay) writes a new one beside it.
	DataDir string `env:"DATA_DIR" envDefault:".brokerflow/data/reporting"`
	// DatabaseURL, when set, keeps the read model in this PostgreSQL
	// database instead (one schema per read model; DataDir is not used).
	DatabaseURL string `env:"DATABASE_URL"`
	// DatabaseURLFile is a file whose first line is DatabaseURL (a mounted
	// Secret: the DSN holds a password).
	DatabaseURLFile string `env:"DATABASE_URL_FILE"`
	// Addr serves the JSON API, the CSV exports and /metrics; empty turns
	// the listener off (the all-in-one serves the handler itself).
	Addr string `env:"ADDR" envDefault:":8090"`
	// Attribution credits a contact (and what it closes) to the source of
	// its first lead ("first", the default) or of its last ("last").
	Attribution string `env:"ATTRIBUTION" envDefault:"first"`
	// SwitchPoll is how often CURRENT is read, to switch to a rebuilt database.
	SwitchPoll time.Duration `env:"SWITCH_POLL" envDefault:"1s"`
	// Concurrency is the number of events projected at once per stream;
	// their transactions take turns on the one database.
	Concurrency     int           `env:"CONCURRENCY" envDefault:"4"`
	OpsAddr         string        `env:"OPS_ADDR" envDefault:":9093"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`

	NATS service.NATSConfig    `envPrefix:"NATS_"`
	Bus  service.ConsumeConfig `envPrefix:"BUS_"`
	Log  service.LogConfig     `envPrefix:"LOG_"`
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("reporting config")

// ConfigFromEnv parses REPORTING_* from environ and validates it.
func ConfigFromEnv(environ []string) (Config, error) {
	var c Config
	if err := service.ParseEnv(&c, Prefix, environ); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports the first invalid setting, naming the variable.
func (c Config) Validate() error {
	if c.DatabaseURL != "" && c.DatabaseURLFile != "" {
		return fmt.Errorf("%w: set REPORTING_DATABASE_URL or REPORTING_DATABASE_URL_FILE, not both", ErrConfig)
	}
	if c.DataDir == "" && c.DatabaseURL == "" && c.DatabaseURLFile == "" {
		return fmt.Errorf("%w: REPORTING_DATA_DIR is required (or REPORTING_DATABASE_URL)", ErrConfig)
	}
	if c.DatabaseURL != "" {
		if _, err := pgx.ParseConfig(strings.TrimSpace(c.DatabaseURL)); err != nil {
			return fmt.Errorf("%w: REPORTING_DATABASE_URL does not parse: want postgres://user:password@host:5432/database or key=value pairs", ErrConfig)
		}
	}
	if _, err := ParseAttribution(c.Attribution); err != nil {
		return fmt.Errorf("%w: REPORTING_ATTRIBUTION: %w", ErrConfig, err)
	}
	if c.SwitchPoll <= 0 {
		return fmt.Errorf("%w: REPORTING_SWITCH_POLL must be positive", ErrConfig)
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("%w: REPORTING_CONCURRENCY must be at least 1", ErrConfig)
	}
	return c.Bus.Validate()
}

// DSN is the PostgreSQL database's DSN, from REPORTING_DATABASE_URL or the
// first line of REPORTING_DATABASE_URL_FILE; "" keeps the read model in
// SQLite.
func (c Config) DSN() (string, error) {
	if c.DatabaseURLFile == "" {
		// A Secret's value, as Kubernetes gives it, may end in a newline.
		return strings.TrimSpace(c.DatabaseURL), nil
	}
	lines, err := service.Secrets(nil, c.DatabaseURLFile)
	if err != nil {
		return "", fmt.Errorf("%w: REPORTING_DATABASE_URL_FILE: %w", ErrConfig, err)
	}
	if len(lines) == 0 {
		return "", fmt.Errorf("%w: REPORTING_DATABASE_URL_FILE %s is empty", ErrConfig, c.DatabaseURLFile)
	}
	return lines[0], nil
}

// Attribution is which of a contact's leads a contact, its transactions and
// its commissions are credited to.
type Attribution string

// The attribution rules.
const (
	FirstTouch Attribution = "first"
	LastTouch  Attribution = "last"
)

// ParseAttribution reads "first" or "last".
func ParseAttribution(s string) (Attribution, error) {
	switch Attribution(s) {
	case FirstTouch, LastTouch:
		return Attribution(s), nil
	}
	return "", fmt.Errorf("attribution %q: want first or last", s)
}
