package ledgersync

import (
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/pkg/tms/skyslope"
)

func (c *Config) resolveLedger() error {
	if err := c.QuickBooks.ReadSecret(Prefix + "QUICKBOOKS_"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

func (c Config) validateLedger() error {
	if err := c.QuickBooks.Validate(Prefix + "QUICKBOOKS_"); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return nil
}

// New returns ledger-sync with the ledger and the TMS cfg names; their
// OAuth tokens are read from the oauth_tokens bucket.
func New(cfg Config, deps Deps) (*Syncer, error) {
	if !cfg.Enabled() {
		return nil, fmt.Errorf("%w: LEDGERSYNC_LEDGER is none: ledger-sync has nothing to do", ErrConfig)
	}
	if deps.NATS == nil {
		return nil, service.ErrNoConnection
	}
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, err
	}
	qb := quickbooks.New(cfg.QuickBooks, oauth.NewStore(js, cfg.QuickBooks.OAuthConfig()))
	if cfg.TMS == skyslope.Name {
		// SkySlope's closings carry no commission to read again.
		return NewWithAdapters(cfg, deps, qb, nil)
	}
	dl := dotloop.New(cfg.Dotloop, oauth.NewStore(js, cfg.Dotloop.OAuthConfig()))
	return NewWithAdapters(cfg, deps, qb, dl)
}
