package crmsync

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/brokerflow/brokerflow/pkg/service"
)

// Prefix is the environment prefix of every crm-sync setting.
const Prefix = "CRMSYNC_"

// Config is crm-sync's configuration, from CRMSYNC_* variables.
type Config struct {
	// CRM is the CRM the brokerage uses: "followupboss" or "liondesk".
	CRM      string         `env:"CRM" envDefault:"followupboss"`
	FUB      FUBConfig      `envPrefix:"FUB_"`
	LionDesk LionDeskConfig `envPrefix:"LIONDESK_"`
	// ActiveStages are the CRM stages that make a contact an active client
	// (ContactStageChanged.active_client), compared case-insensitively.
	ActiveStages []string `env:"ACTIVE_STAGES" envDefault:"Active Client,Under Contract"`
	// PollInterval is how often a CRM without webhooks (LionDesk) is asked
	// for changed contacts; 0 turns polling off.
	PollInterval time.Duration `env:"POLL_INTERVAL" envDefault:"30s"`
	// Concurrency is the number of leads synced at once.
	Concurrency     int           `env:"CONCURRENCY" envDefault:"4"`
	OpsAddr         string        `env:"OPS_ADDR" envDefault:":9092"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`

	NATS service.NATSConfig    `envPrefix:"NATS_"`
	Bus  service.ConsumeConfig `envPrefix:"BUS_"`
	Log  service.LogConfig     `envPrefix:"LOG_"`
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
	// RateLimit per RateWindow is the account's documented quota for the
	// calls Follow Up Boss counts (250 per 10 s for a registered system,
	// 125 without); the pacer learns the real one from its headers.
	RateLimit  int           `env:"RATE_LIMIT" envDefault:"250"`
	RateWindow time.Duration `env:"RATE_WINDOW" envDefault:"10s"`
}

// LionDeskConfig points the LionDesk (API v2) adapter at the vendor, the
// sandbox, or any compatible server.
type LionDeskConfig struct {
	BaseURL string `env:"BASE_URL" envDefault:"https://api-v2.liondesk.com"`
	// AccessToken is an OAuth access token (Authorization: Bearer). Brokerflow
	// does not refresh it: a revoked or expired token fails every call with
	// 401, a permanent error, until it is replaced.
	AccessToken     string        `env:"ACCESS_TOKEN"`
	AccessTokenFile string        `env:"ACCESS_TOKEN_FILE"`
	Timeout         time.Duration `env:"TIMEOUT" envDefault:"15s"`
	// LionDesk publishes no rate limit; 60 per 10 s is an assumption (the
	// sandbox's), and the pacer learns the real one from X-RateLimit-*.
	RateLimit  int           `env:"RATE_LIMIT" envDefault:"60"`
	RateWindow time.Duration `env:"RATE_WINDOW" envDefault:"10s"`
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
	if err := readSecret(&c.LionDesk.AccessToken, c.LionDesk.AccessTokenFile, "CRMSYNC_LIONDESK_ACCESS_TOKEN_FILE"); err != nil {
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
	case "liondesk":
		if c.LionDesk.AccessToken == "" {
			return fmt.Errorf("%w: CRMSYNC_LIONDESK_ACCESS_TOKEN is required for LionDesk", ErrConfig)
		}
		if u, err := url.Parse(c.LionDesk.BaseURL); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("%w: CRMSYNC_LIONDESK_BASE_URL %q is not an absolute URL", ErrConfig, c.LionDesk.BaseURL)
		}
		if c.LionDesk.Timeout <= 0 {
			return fmt.Errorf("%w: CRMSYNC_LIONDESK_TIMEOUT must be positive", ErrConfig)
		}
	default:
		return fmt.Errorf("%w: CRMSYNC_CRM %q is not supported (followupboss, liondesk)", ErrConfig, c.CRM)
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("%w: CRMSYNC_CONCURRENCY must be at least 1", ErrConfig)
	}
	return c.Bus.Validate()
}

// NewCRM returns the adapter cfg names.
func NewCRM(cfg Config) (CRM, error) {
	switch cfg.CRM {
	case "followupboss":
		pacer := NewPacer(nil, orDefault(cfg.FUB.RateLimit, 250), orDefault(cfg.FUB.RateWindow, 10*time.Second), FUBExempt)
		return NewFollowUpBoss(cfg.FUB, &http.Client{Timeout: cfg.FUB.Timeout, Transport: pacer}), nil
	case "liondesk":
		pacer := NewPacer(nil, orDefault(cfg.LionDesk.RateLimit, 60), orDefault(cfg.LionDesk.RateWindow, 10*time.Second), nil)
		return NewLionDesk(cfg.LionDesk, &http.Client{Timeout: cfg.LionDesk.Timeout, Transport: pacer}), nil
	}
	return nil, fmt.Errorf("%w: CRMSYNC_CRM %q is not supported", ErrConfig, cfg.CRM)
}

// orDefault is v, or def when v is not positive (a Config built in code).
func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}
