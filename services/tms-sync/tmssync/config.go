package tmssync

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/agents"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/pkg/tms/skyslope"
)

// Prefix is the environment prefix of every tms-sync setting.
const Prefix = "TMSSYNC_"

// TMS names.
const (
	TMSNone     = "none"
	TMSDotloop  = dotloop.Name
	TMSSkySlope = skyslope.Name
)

// Config is tms-sync's configuration, from TMSSYNC_* variables.
type Config struct {
	// TMS is the brokerage's transaction manager: none (tms-sync is off),
	// dotloop, or skyslope.
	TMS      string          `env:"TMS" envDefault:"none"`
	Dotloop  dotloop.Config  `envPrefix:"DOTLOOP_"`
	SkySlope skyslope.Config `envPrefix:"SKYSLOPE_"`
	// PollInterval is how often the sales of a TMS without webhooks
	// (SkySlope) are read for closings.
	PollInterval time.Duration `env:"POLL_INTERVAL" envDefault:"1m"`
	// AgentsFile is the agent directory (pkg/agents), required with a TMS.
	AgentsFile string `env:"AGENTS_FILE"`
	// CRM, when "followupboss", is read for the one thing the CRM's events
	// do not carry: the contact's assigned agent. "none" gives every
	// contact to the directory's default agent.
	CRM string              `env:"CRM" envDefault:"none"`
	FUB followupboss.Config `envPrefix:"FUB_"`

	// OpeningStages maps each CRM stage that opens a transaction to its
	// type: "Active Client:PURCHASE_OFFER,Listing Client:LISTING_FOR_SALE".
	// The client's role follows from the type (BUYER, SELLER). Stages
	// compare case-insensitively.
	OpeningStages map[string]string `env:"OPENING_STAGES" envDefault:"Active Client:PURCHASE_OFFER"`
	// LostStages end an episode without a transaction closing.
	LostStages []string `env:"LOST_STAGES" envDefault:"Trash,Lost"`
	// Templates maps a transaction type to the TMS template applied when
	// the transaction opens: "PURCHASE_OFFER:1424".
	Templates map[string]string `env:"TEMPLATES"`

	// The closing: where in the TMS's details each fact is, as
	// "<section>:<field>" (docs/tms.md#closings); empty takes the TMS's
	// default (tmsDefaults). SoldStatus is the TMS's status of a closed
	// transaction (Dotloop's SOLD, SkySlope's Closed).
	PriceField          string `env:"PRICE_FIELD"`
	CommissionField     string `env:"COMMISSION_FIELD"`
	CloseDateField      string `env:"CLOSE_DATE_FIELD"`
	SoldStatus          string `env:"SOLD_STATUS"`
	ReferralField       string `env:"REFERRAL_FIELD" envDefault:"Referral:Referral Fee"`
	ReferralSourceField string `env:"REFERRAL_SOURCE_FIELD" envDefault:"Referral:Referral Source"`
	Currency            string `env:"CURRENCY" envDefault:"USD"`
	// SoldWait is how long a transaction marked sold may lack its price or
	// commission before it becomes a failure record saying which.
	SoldWait time.Duration `env:"SOLD_WAIT" envDefault:"24h"`

	Concurrency     int           `env:"CONCURRENCY" envDefault:"4"`
	OpsAddr         string        `env:"OPS_ADDR" envDefault:":9096"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`

	NATS service.NATSConfig    `envPrefix:"NATS_"`
	Bus  service.ConsumeConfig `envPrefix:"BUS_"`
	Log  service.LogConfig     `envPrefix:"LOG_"`

	// Agents is the loaded directory; Resolve loads AgentsFile into it
	// unless it is set already (the all-in-one's sandbox directory).
	Agents *agents.Directory `env:"-"`
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("tms-sync config")

// ConfigFromEnv parses TMSSYNC_* from environ and validates it.
func ConfigFromEnv(environ []string) (Config, error) {
	var c Config
	if err := service.ParseEnv(&c, Prefix, environ); err != nil {
		return c, err
	}
	return c, c.Resolve()
}

// Enabled reports whether a TMS is configured.
func (c Config) Enabled() bool { return c.TMS != TMSNone && c.TMS != "" }

// Resolve reads the secrets and the agent directory, then validates.
func (c *Config) Resolve() error {
	if !c.Enabled() {
		return nil
	}
	if err := c.Dotloop.ReadSecret(Prefix + "DOTLOOP_"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if err := c.SkySlope.ReadSecrets(Prefix + "SKYSLOPE_"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.Agents == nil {
		if c.AgentsFile == "" {
			return fmt.Errorf("%w: TMSSYNC_AGENTS_FILE is required with TMSSYNC_TMS=%s (docs/tms.md#the-agent-directory)", ErrConfig, c.TMS)
		}
		d, err := agents.Load(c.AgentsFile)
		if err != nil {
			return fmt.Errorf("%w: TMSSYNC_AGENTS_FILE: %w", ErrConfig, err)
		}
		c.Agents = d
	}
	return c.Validate()
}

// tmsDefaults are each TMS's closing fields and sold status, where the
// configuration leaves them empty. SkySlope has no commission field: its
// public API does not expose one.
var tmsDefaults = map[string]struct{ price, commission, closeDate, sold string }{
	TMSDotloop:  {"Financials:Purchase/Sale Price", "Financials:Sale Commission Total", "Contract Dates:Closing Date", "SOLD"},
	TMSSkySlope: {skyslope.SectionSale + ":" + skyslope.FieldSalePrice, "", skyslope.SectionSale + ":" + skyslope.FieldCloseDate, skyslope.StatusClosed},
}

// withDefaults returns c with its TMS's defaults in the settings left empty.
func (c Config) withDefaults() Config {
	d := tmsDefaults[c.TMS]
	for _, f := range []struct {
		v   *string
		def string
	}{
		{&c.PriceField, d.price}, {&c.CommissionField, d.commission}, {&c.CloseDateField, d.closeDate}, {&c.SoldStatus, d.sold},
	} {
		if *f.v == "" {
			*f.v = f.def
		}
	}
	return c
}

// Validate reports the first invalid setting, naming the variable.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch c.TMS {
	case TMSNone:
		return nil
	case TMSDotloop:
		if err := c.Dotloop.Validate(Prefix + "DOTLOOP_"); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	case TMSSkySlope:
		if err := c.SkySlope.Validate(Prefix + "SKYSLOPE_"); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if c.PollInterval <= 0 {
			return fmt.Errorf("%w: TMSSYNC_POLL_INTERVAL must be positive", ErrConfig)
		}
	default:
		return fmt.Errorf("%w: TMSSYNC_TMS %q is not one of none, dotloop, skyslope", ErrConfig, c.TMS)
	}
	switch c.CRM {
	case "none":
	case followupboss.Name:
		if err := c.FUB.Validate(Prefix + "FUB_"); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	default:
		return fmt.Errorf("%w: TMSSYNC_CRM %q is not none or followupboss", ErrConfig, c.CRM)
	}
	if len(c.OpeningStages) == 0 {
		return fmt.Errorf("%w: TMSSYNC_OPENING_STAGES names no stage", ErrConfig)
	}
	for stage, typ := range c.OpeningStages {
		if _, ok := roles[typ]; !ok || strings.TrimSpace(stage) == "" {
			return fmt.Errorf("%w: TMSSYNC_OPENING_STAGES: %q:%q must be a stage and %s or %s", ErrConfig, stage, typ, tms.TypePurchase, tms.TypeListing)
		}
	}
	for _, f := range []struct{ name, v string }{
		{"PRICE_FIELD", c.PriceField}, {"COMMISSION_FIELD", c.CommissionField}, {"CLOSE_DATE_FIELD", c.CloseDateField},
		{"REFERRAL_FIELD", c.ReferralField}, {"REFERRAL_SOURCE_FIELD", c.ReferralSourceField},
	} {
		if f.v == "" && f.name == "COMMISSION_FIELD" && c.TMS == TMSSkySlope {
			continue // none: the closing says the commission is unavailable
		}
		if sec, fld, ok := strings.Cut(f.v, ":"); !ok || sec == "" || fld == "" {
			return fmt.Errorf("%w: TMSSYNC_%s %q must be <section>:<field>", ErrConfig, f.name, f.v)
		}
	}
	if c.SoldWait < 0 {
		return fmt.Errorf("%w: TMSSYNC_SOLD_WAIT must not be negative", ErrConfig)
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("%w: TMSSYNC_CONCURRENCY must be at least 1", ErrConfig)
	}
	return c.Bus.Validate()
}

// roles maps a transaction type to the client's role and initial status.
var roles = map[string]struct{ role, status, side string }{
	tms.TypePurchase: {tms.RoleBuyer, "PRE_OFFER", "buy"},
	tms.TypeListing:  {tms.RoleSeller, "PRE_LISTING", "sell"},
}

// opening returns the transaction type stage opens, if it opens one.
func (c Config) opening(stage string) (string, bool) {
	for s, typ := range c.OpeningStages {
		if strings.EqualFold(strings.TrimSpace(s), strings.TrimSpace(stage)) {
			return typ, true
		}
	}
	return "", false
}

func (c Config) lost(stage string) bool {
	for _, s := range c.LostStages {
		if strings.EqualFold(strings.TrimSpace(s), strings.TrimSpace(stage)) {
			return true
		}
	}
	return false
}
