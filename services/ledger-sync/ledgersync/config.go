package ledgersync

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/agents"
	"github.com/brokerflow/brokerflow/pkg/commission"
	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/pkg/tms/skyslope"
)

// Prefix is the environment prefix of every ledger-sync setting.
const Prefix = "LEDGERSYNC_"

// Ledger names.
const (
	LedgerNone       = "none"
	LedgerQuickBooks = "quickbooks"
)

// PayerClient makes the transaction's client the paying party.
const PayerClient = "client"

// Config is ledger-sync's configuration, from LEDGERSYNC_* variables.
type Config struct {
	// Ledger is the brokerage's accounting ledger: none (ledger-sync is
	// off) or quickbooks.
	Ledger     string            `env:"LEDGER" envDefault:"none"`
	QuickBooks quickbooks.Config `envPrefix:"QUICKBOOKS_"`
	// CDCInterval, when above zero, polls QuickBooks' Change Data Capture
	// for payments this often: for a company whose webhooks are not set up.
	CDCInterval time.Duration `env:"QUICKBOOKS_CDC_INTERVAL" envDefault:"0s"`

	// TMS is the transaction manager the closings come from, read again
	// before each booking: dotloop; or skyslope, whose public APIs give no
	// commission: its closings are failure records ledger.closing_incomplete
	// for a person to book by hand, and nothing is read (no credentials).
	TMS     string         `env:"TMS" envDefault:"dotloop"`
	Dotloop dotloop.Config `envPrefix:"DOTLOOP_"`
	// Where in the TMS's details each fact of a closing is (as tms-sync's
	// TMSSYNC_*_FIELD; docs/tms.md#closings).
	PriceField          string `env:"PRICE_FIELD" envDefault:"Financials:Purchase/Sale Price"`
	CommissionField     string `env:"COMMISSION_FIELD" envDefault:"Financials:Sale Commission Total"`
	CloseDateField      string `env:"CLOSE_DATE_FIELD" envDefault:"Contract Dates:Closing Date"`
	ReferralField       string `env:"REFERRAL_FIELD" envDefault:"Referral:Referral Fee"`
	ReferralSourceField string `env:"REFERRAL_SOURCE_FIELD" envDefault:"Referral:Referral Source"`
	// PropertySection is the details' section of the property's address.
	PropertySection string `env:"PROPERTY_SECTION" envDefault:"Property Address"`
	Currency        string `env:"CURRENCY" envDefault:"USD"`

	// AgentsFile is the agent directory (pkg/agents) and PlansFile the
	// commission plans (pkg/commission), both required with a ledger.
	AgentsFile string `env:"AGENTS_FILE"`
	PlansFile  string `env:"PLANS_FILE"`

	// Document is invoice or sales_receipt; AgentAs how the agent is
	// attached to it: class or vendor.
	Document string `env:"DOCUMENT" envDefault:"invoice"`
	AgentAs  string `env:"AGENT_AS" envDefault:"class"`
	// Payer is "client" (the transaction's buyer or seller) or the name of
	// the title or escrow company that pays every commission.
	Payer string `env:"PAYER" envDefault:"client"`
	// Bill books a Bill to the agent's Vendor for their payout.
	Bill bool `env:"BILL" envDefault:"false"`

	Concurrency     int           `env:"CONCURRENCY" envDefault:"2"`
	OpsAddr         string        `env:"OPS_ADDR" envDefault:":9095"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`

	NATS service.NATSConfig    `envPrefix:"NATS_"`
	Bus  service.ConsumeConfig `envPrefix:"BUS_"`
	Log  service.LogConfig     `envPrefix:"LOG_"`

	// Agents and Plans are loaded by Resolve from their files unless set
	// already (the all-in-one's sandbox).
	Agents *agents.Directory `env:"-"`
	Plans  *commission.Plans `env:"-"`
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("ledger-sync config")

// ConfigFromEnv parses LEDGERSYNC_* from environ and validates it.
func ConfigFromEnv(environ []string) (Config, error) {
	var c Config
	if err := service.ParseEnv(&c, Prefix, environ); err != nil {
		return c, err
	}
	return c, c.Resolve()
}

// Enabled reports whether a ledger is configured.
func (c Config) Enabled() bool { return c.Ledger != LedgerNone && c.Ledger != "" }

// Resolve reads the secrets, the agent directory and the plans, then
// validates.
func (c *Config) Resolve() error {
	if !c.Enabled() {
		return c.Validate()
	}
	if c.TMS == dotloop.Name {
		if err := c.Dotloop.ReadSecret(Prefix + "DOTLOOP_"); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	if err := c.resolveLedger(); err != nil {
		return err
	}
	if c.Agents == nil {
		if c.AgentsFile == "" {
			return fmt.Errorf("%w: LEDGERSYNC_AGENTS_FILE is required with LEDGERSYNC_LEDGER=%s (docs/ledger.md)", ErrConfig, c.Ledger)
		}
		d, err := agents.Load(c.AgentsFile)
		if err != nil {
			return fmt.Errorf("%w: LEDGERSYNC_AGENTS_FILE: %w", ErrConfig, err)
		}
		c.Agents = d
	}
	if c.Plans == nil {
		if c.PlansFile == "" {
			return fmt.Errorf("%w: LEDGERSYNC_PLANS_FILE is required with LEDGERSYNC_LEDGER=%s (docs/ledger.md#commission-plans)", ErrConfig, c.Ledger)
		}
		p, err := commission.Load(c.PlansFile)
		if err != nil {
			return fmt.Errorf("%w: LEDGERSYNC_PLANS_FILE: %w", ErrConfig, err)
		}
		c.Plans = p
	}
	return c.Validate()
}

// Validate reports the first invalid setting, naming the variable.
func (c Config) Validate() error {
	switch c.Ledger {
	case LedgerNone, "":
		return nil
	case LedgerQuickBooks:
		if err := c.validateLedger(); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: LEDGERSYNC_LEDGER %q is not none or quickbooks", ErrConfig, c.Ledger)
	}
	switch c.TMS {
	case dotloop.Name:
		if err := c.Dotloop.Validate(Prefix + "DOTLOOP_"); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	case skyslope.Name:
		// Nothing is read from SkySlope: its closings have no commission.
	default:
		return fmt.Errorf("%w: LEDGERSYNC_TMS %q is not dotloop or skyslope", ErrConfig, c.TMS)
	}
	for _, f := range []struct{ name, v string }{
		{"PRICE_FIELD", c.PriceField}, {"COMMISSION_FIELD", c.CommissionField}, {"CLOSE_DATE_FIELD", c.CloseDateField},
		{"REFERRAL_FIELD", c.ReferralField}, {"REFERRAL_SOURCE_FIELD", c.ReferralSourceField},
	} {
		if sec, fld, ok := strings.Cut(f.v, ":"); !ok || sec == "" || fld == "" {
			return fmt.Errorf("%w: LEDGERSYNC_%s %q must be <section>:<field>", ErrConfig, f.name, f.v)
		}
	}
	switch {
	case c.Document != ledger.DocumentInvoice && c.Document != ledger.DocumentSalesReceipt:
		return fmt.Errorf("%w: LEDGERSYNC_DOCUMENT %q is not %s or %s", ErrConfig, c.Document, ledger.DocumentInvoice, ledger.DocumentSalesReceipt)
	case c.AgentAs != ledger.AgentAsClass && c.AgentAs != ledger.AgentAsVendor:
		return fmt.Errorf("%w: LEDGERSYNC_AGENT_AS %q is not %s or %s", ErrConfig, c.AgentAs, ledger.AgentAsClass, ledger.AgentAsVendor)
	case strings.TrimSpace(c.Payer) == "":
		return fmt.Errorf("%w: LEDGERSYNC_PAYER is empty: client, or the title or escrow company's name", ErrConfig)
	case len(c.Currency) != 3:
		return fmt.Errorf("%w: LEDGERSYNC_CURRENCY %q is not an ISO 4217 code", ErrConfig, c.Currency)
	case c.Concurrency < 1:
		return fmt.Errorf("%w: LEDGERSYNC_CONCURRENCY must be at least 1", ErrConfig)
	case c.CDCInterval < 0:
		return fmt.Errorf("%w: LEDGERSYNC_QUICKBOOKS_CDC_INTERVAL %s must be 0 (off) or positive", ErrConfig, c.CDCInterval)
	case c.Agents == nil:
		return fmt.Errorf("%w: no agent directory (LEDGERSYNC_AGENTS_FILE)", ErrConfig)
	case c.Plans == nil:
		return fmt.Errorf("%w: no commission plans (LEDGERSYNC_PLANS_FILE)", ErrConfig)
	}
	if err := c.Plans.Check(c.Agents); err != nil {
		return fmt.Errorf("%w: LEDGERSYNC_PLANS_FILE and LEDGERSYNC_AGENTS_FILE: %w", ErrConfig, err)
	}
	return c.Bus.Validate()
}

func (c Config) fields() tms.ClosingFields {
	return tms.ClosingFields{
		Price: c.PriceField, Commission: c.CommissionField, CloseDate: c.CloseDateField,
		Referral: c.ReferralField, ReferralSource: c.ReferralSourceField,
	}
}
