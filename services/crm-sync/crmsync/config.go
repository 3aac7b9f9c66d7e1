package crmsync

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/brokerflow/brokerflow/pkg/service"
)

// Prefix is the environment prefix of every crm-sync setting.
const Prefix = "CRMSYNC_"

// Config is crm-sync's configuration, from CRMSYNC_* variables.
type Config struct {
	// CRM is the CRM the brokerage uses: "followupboss".
	CRM string    `env:"CRM" envDefault:"followupboss"`
	FUB FUBConfig `envPrefix:"FUB_"`
	// Concurrency is the number of leads synced at once.
	Concurrency     int           `env:"CONCURRENCY" envDefault:"4"`
	OpsAddr         string        `env:"OPS_ADDR" envDefault:":9092"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`

	NATS service.NATSConfig     `envPrefix:"NATS_"`
	Bus  service.TopologyConfig `envPrefix:"BUS_"`
}

// FUBConfig points the Follow Up Boss adapter at the vendor, the sandbox,
// or any compatible server.
type FUBConfig struct {
	BaseURL string `env:"BASE_URL" envDefault:"https://api.followupboss.com"`
	// APIKey is the account's API key (HTTP Basic username).
	APIKey     string `env:"API_KEY"`
	APIKeyFile string `env:"API_KEY_FILE"`
	// System and SystemKey are the registered system (X-System, X-System-Key).
	System        string        `env:"SYSTEM" envDefault:"brokerflow"`
	SystemKey     string        `env:"SYSTEM_KEY"`
	SystemKeyFile string        `env:"SYSTEM_KEY_FILE"`
	Timeout       time.Duration `env:"TIMEOUT" envDefault:"15s"`
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("crm-sync config")

// ConfigFromEnv parses CRMSYNC_* from environ and validates it.
func ConfigFromEnv(environ []string) (Config, error) {
	var c Config
	if err := service.ParseEnv(&c, Prefix, environ); err != nil {
		return c, err
	}
	err := c.Resolve()
	return c, err
}

// Resolve reads the secrets from their files, then validates.
func (c *Config) Resolve() error {
	if err := readSecret(&c.FUB.APIKey, c.FUB.APIKeyFile, "CRMSYNC_FUB_API_KEY_FILE"); err != nil {
		return err
	}
	if err := readSecret(&c.FUB.SystemKey, c.FUB.SystemKeyFile, "CRMSYNC_FUB_SYSTEM_KEY_FILE"); err != nil {
		return err
	}
	return c.Validate()
}

func readSecret(dst *string, file, name string) error {
	if *dst != "" || file == "" {
		return nil
	}
	s, err := service.Secrets(nil, file)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrConfig, name, err)
	}
	if len(s) == 0 {
		return fmt.Errorf("%w: %s: the file holds no secret", ErrConfig, name)
	}
	*dst = s[0]
	return nil
}

// Validate reports the first invalid setting, naming the variable.
func (c Config) Validate() error {
	switch c.CRM {
	case "followupboss":
		if c.FUB.APIKey == "" {
			return fmt.Errorf("%w: CRMSYNC_FUB_API_KEY is required for Follow Up Boss (or run brokerflow with --sandbox)", ErrConfig)
		}
		if u, err := url.Parse(c.FUB.BaseURL); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("%w: CRMSYNC_FUB_BASE_URL %q is not an absolute URL", ErrConfig, c.FUB.BaseURL)
		}
		if c.FUB.Timeout <= 0 {
			return fmt.Errorf("%w: CRMSYNC_FUB_TIMEOUT must be positive", ErrConfig)
		}
	default:
		return fmt.Errorf("%w: CRMSYNC_CRM %q is not supported (followupboss)", ErrConfig, c.CRM)
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("%w: CRMSYNC_CONCURRENCY must be at least 1", ErrConfig)
	}
	return c.Bus.Topology().Validate()
}

// NewCRM returns the adapter cfg names.
func NewCRM(cfg Config) (CRM, error) {
	if cfg.CRM == "followupboss" {
		return NewFollowUpBoss(cfg.FUB, nil), nil
	}
	return nil, fmt.Errorf("%w: CRMSYNC_CRM %q is not supported", ErrConfig, cfg.CRM)
}
