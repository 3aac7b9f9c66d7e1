package crmsync

import (
	"errors"
	"fmt"
	"time"

	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/crm/liondesk"
	"github.com/brokerflow/brokerflow/pkg/service"
)

// Prefix is the environment prefix of every crm-sync setting.
const Prefix = "CRMSYNC_"

// Config is crm-sync's configuration, from CRMSYNC_* variables.
type Config struct {
	// CRM is the CRM the brokerage uses: "followupboss" or "liondesk".
	CRM string `env:"CRM" envDefault:"followupboss"`
	// FUB and LionDesk are the adapters' own settings, read from
	// CRMSYNC_FUB_* and CRMSYNC_LIONDESK_*.
	FUB      followupboss.Config `envPrefix:"FUB_"`
	LionDesk liondesk.Config     `envPrefix:"LIONDESK_"`
	// ActiveStages are the CRM stages that make a contact an active client
	// (ContactStageChanged.active_client), compared case-insensitively.
	ActiveStages []string `env:"ACTIVE_STAGES" envDefault:"Active Client,Under Contract"`
	// PollInterval is how often a CRM without webhooks (LionDesk) is asked
	// for changed contacts; 0 turns polling off.
	PollInterval time.Duration `env:"POLL_INTERVAL" envDefault:"30s"`
	// FUBReconcileInterval is how often Follow Up Boss, whose changes come
	// by webhook, is asked for the people changed since the last time, to
	// announce the changes whose webhooks were lost for good; 0 turns it
	// off. Each poll costs one counted call per 100 people changed, and a
	// read per person whose change no webhook brought.
	FUBReconcileInterval time.Duration `env:"FUB_RECONCILE_INTERVAL" envDefault:"5m"`
	// IdentityPeppers key the identity records' key names (an HMAC of each
	// email and phone): the current pepper first, then previous ones still
	// read during a rotation. From CRMSYNC_IDENTITY_PEPPER (comma-separated)
	// and the lines of CRMSYNC_IDENTITY_PEPPER_FILE. Required: `brokerflow
	// run` generates one into its data directory.
	IdentityPeppers    []string `env:"IDENTITY_PEPPER"`
	IdentityPepperFile string   `env:"IDENTITY_PEPPER_FILE"`
	// IdentityVisibleAfter is how long a person the CRM just created may
	// stay hidden from its search (Follow Up Boss shows a new person once
	// agent assignment completes). A lead whose creation was interrupted is
	// retried for that long before it is created again.
	IdentityVisibleAfter time.Duration `env:"IDENTITY_VISIBLE_AFTER" envDefault:"30s"`
	// Concurrency is the number of leads synced at once.
	Concurrency     int           `env:"CONCURRENCY" envDefault:"4"`
	OpsAddr         string        `env:"OPS_ADDR" envDefault:":9092"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`

	NATS service.NATSConfig    `envPrefix:"NATS_"`
	Bus  service.ConsumeConfig `envPrefix:"BUS_"`
	Log  service.LogConfig     `envPrefix:"LOG_"`
}

// minPepper is the shortest identity pepper accepted.
const minPepper = 16

// callWindow is how long one CRM call may take, its pacing and timeout
// included, before a later delivery of its lead may ask whether it landed.
func (c Config) callWindow() time.Duration {
	timeout := c.FUB.Timeout
	if c.CRM == liondesk.Name {
		timeout = c.LionDesk.Timeout
	}
	if timeout <= 0 {
		timeout = time.Minute
	}
	return 2*timeout + 5*time.Second
}

func (c Config) keyer(crmName string) keyer {
	k := keyer{crm: crmName}
	for i, p := range c.IdentityPeppers {
		if i == 0 {
			k.pepper = []byte(p)
		} else {
			k.previous = append(k.previous, []byte(p))
		}
	}
	return k
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("crm-sync config")

// ConfigFromEnv parses CRMSYNC_* from environ and validates it.
func ConfigFromEnv(environ []string) (Config, error) {
	var c Config
	if err := service.ParseEnv(&c, Prefix, environ); err != nil {
		return c, err
	}
	if err := c.Resolve(); err != nil {
		return c, err
	}
	// Only the service itself needs the pepper: a command that reads
	// crm-sync's settings to call the CRM does not.
	if len(c.IdentityPeppers) == 0 {
		return c, fmt.Errorf("%w: CRMSYNC_IDENTITY_PEPPER or CRMSYNC_IDENTITY_PEPPER_FILE is required: "+
			"a secret of at least %d characters that keys the identity records (e.g. `openssl rand -hex 32`)", ErrConfig, minPepper)
	}
	return c, nil
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
	peppers, err := service.Secrets(c.IdentityPeppers, c.IdentityPepperFile)
	if err != nil {
		return fmt.Errorf("%w: CRMSYNC_IDENTITY_PEPPER_FILE: %w", ErrConfig, err)
	}
	c.IdentityPeppers, c.IdentityPepperFile = peppers, ""
	return c.Validate()
}

func readSecret(dst *string, file, name string) error {
	if err := service.ReadSecret(dst, file, name); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// Validate reports the first invalid setting, naming the variable.
func (c Config) Validate() error {
	switch c.CRM {
	case followupboss.Name:
		if err := c.FUB.Validate(Prefix + "FUB_"); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	case liondesk.Name:
		if err := c.LionDesk.Validate(Prefix + "LIONDESK_"); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	default:
		return fmt.Errorf("%w: CRMSYNC_CRM %q is not supported (followupboss, liondesk)", ErrConfig, c.CRM)
	}
	for _, p := range c.IdentityPeppers {
		if len(p) < minPepper {
			return fmt.Errorf("%w: CRMSYNC_IDENTITY_PEPPER: a pepper must have at least %d characters", ErrConfig, minPepper)
		}
	}
	if c.PollInterval < 0 || c.FUBReconcileInterval < 0 {
		return fmt.Errorf("%w: CRMSYNC_POLL_INTERVAL and CRMSYNC_FUB_RECONCILE_INTERVAL must not be negative", ErrConfig)
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("%w: CRMSYNC_CONCURRENCY must be at least 1", ErrConfig)
	}
	return c.Bus.Validate()
}

// NewCRM returns the adapter cfg names. Each paces its calls to the
// account's quota (CRMSYNC_FUB_RATE_LIMIT, CRMSYNC_LIONDESK_RATE_LIMIT).
func NewCRM(cfg Config) (CRM, error) {
	switch cfg.CRM {
	case followupboss.Name:
		return followupboss.New(cfg.FUB), nil
	case liondesk.Name:
		return liondesk.New(cfg.LionDesk), nil
	}
	return nil, fmt.Errorf("%w: CRMSYNC_CRM %q is not supported", ErrConfig, cfg.CRM)
}
