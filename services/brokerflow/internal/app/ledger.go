package app

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/brokerflow/brokerflow/pkg/commission"
	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/services/ledger-sync/ledgersync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
	"github.com/brokerflow/brokerflow/services/tms-sync/tmssync"
)

// SandboxPlan is the commission plan of --sandbox when
// LEDGERSYNC_PLANS_FILE is not set: 70/30 with an $18,000 cap (then 100%),
// a $395 transaction fee and a 6% franchise fee.
var SandboxPlan = commission.Plan{
	ID: "sandbox-70-30", Default: true, AgentSplitBP: 7000, PostCapAgentSplitBP: 10000, CapMinor: 1_800_000,
	YearStartMonth: time.January, YearStartDay: 1, TransactionFeeMinor: 39_500, FranchiseFeeBP: 600, Referral: commission.ReferralOffTheTop,
}

// sandboxLedger turns ledger-sync on with --sandbox, unless
// LEDGERSYNC_LEDGER says otherwise and as long as tms-sync reads the
// sandbox's Dotloop: QuickBooks Online of the sandbox with its client
// credentials, and the sandbox plan (shareWithTMSSync gives it the Dotloop
// tms-sync reads).
func sandboxLedger(c *Config, environ []string) {
	if !isSet(environ, ledgersync.Prefix+"LEDGER") && c.TMSSync.TMS == tmssync.TMSDotloop {
		c.LedgerSync.Ledger = ledgersync.LedgerQuickBooks
	}
	if c.LedgerSync.Ledger != ledgersync.LedgerQuickBooks {
		return
	}
	qb := &c.LedgerSync.QuickBooks
	qb.ClientID, qb.ClientSecret, qb.ClientSecretFile = sandbox.DefaultQuickBooksClientID, sandbox.DefaultQuickBooksClientSecret, ""
	sandboxLedgerURLs(&c.LedgerSync, "http://"+c.SandboxAddr)
	if c.LedgerSync.PlansFile == "" {
		c.LedgerSync.Plans, _ = commission.New(SandboxPlan)
	}
	if len(c.Gateway.QuickBooksVerifierTokens) == 0 && c.Gateway.QuickBooksVerifierTokensFile == "" {
		// The sandbox's QuickBooks signs its webhooks with its verifier
		// token; Start points them at the gateway.
		c.Gateway.QuickBooksVerifierTokens = []string{sandbox.DefaultQuickBooksVerifierToken}
	}
}

// DefaultCDCInterval is how often the all-in-one's ledger-sync polls
// QuickBooks' Change Data Capture when the gateway has no verifier token:
// no webhook can reach it.
const DefaultCDCInterval = 5 * time.Minute

// ledgerPolling turns Change Data Capture polling on when ledger-sync books
// in QuickBooks and the gateway takes no QuickBooks webhooks, unless
// LEDGERSYNC_QUICKBOOKS_CDC_INTERVAL says otherwise.
func ledgerPolling(c *Config, environ []string) {
	if c.LedgerSync.Ledger != ledgersync.LedgerQuickBooks || isSet(environ, ledgersync.Prefix+"QUICKBOOKS_CDC_INTERVAL") {
		return
	}
	if len(c.Gateway.QuickBooksVerifierTokens) == 0 && c.Gateway.QuickBooksVerifierTokensFile == "" {
		c.LedgerSync.CDCInterval = DefaultCDCInterval
	}
}

// sandboxQuickBooksWebhooks makes the sandbox's QuickBooks send its
// payments' webhooks to the gateway at webhookURL, signed with the
// sandbox's verifier token, when the gateway takes it.
func sandboxQuickBooksWebhooks(c Config, q *sandbox.QuickBooks, webhookURL string) error {
	if !slices.Contains(c.Gateway.QuickBooksVerifierTokens, sandbox.DefaultQuickBooksVerifierToken) {
		return nil
	}
	h := q.Webhooks()
	h.URL, h.VerifierToken, h.Enabled = webhookURL+"/webhooks/quickbooks", sandbox.DefaultQuickBooksVerifierToken, true
	return q.SetWebhooks(h)
}

// sandboxLedgerURLs points ledger-sync's QuickBooks and Dotloop at the
// sandbox at base (http://host:port).
func sandboxLedgerURLs(c *ledgersync.Config, base string) {
	c.QuickBooks.BaseURL = base + "/quickbooks"
	c.QuickBooks.AuthURL = base + "/quickbooks/connect/oauth2"
	c.QuickBooks.TokenURL = base + "/quickbooks/oauth2/v1/tokens/bearer"
	c.Dotloop.BaseURL, c.Dotloop.AuthURL = base+"/dotloop/public/v2", base+"/dotloop/oauth"
}

// shareWithTMSSync gives ledger-sync tms-sync's TMS (SkySlope: nothing to
// read again) unless LEDGERSYNC_TMS names one, and its agent directory when it
// names none of its own (one directory of the brokerage's agents), and
// tms-sync's Dotloop client when it sets none: it reads the closings of the
// account tms-sync follows.
func shareWithTMSSync(c *Config, environ []string) {
	if c.LedgerSync.AgentsFile == "" && c.LedgerSync.Agents == nil {
		c.LedgerSync.AgentsFile, c.LedgerSync.Agents = c.TMSSync.AgentsFile, c.TMSSync.Agents
	}
	if c.TMSSync.TMS == tmssync.TMSDotloop && !isSet(environ, ledgersync.Prefix+"DOTLOOP_CLIENT_ID") {
		c.LedgerSync.TMS, c.LedgerSync.Dotloop = dotloop.Name, c.TMSSync.Dotloop
	}
	if c.TMSSync.TMS == tmssync.TMSSkySlope && !isSet(environ, ledgersync.Prefix+"TMS") {
		c.LedgerSync.TMS = tmssync.TMSSkySlope
	}
}

// connectSandboxQuickBooks stores a fresh pair of the sandbox company's
// tokens and its realm id in oauth_tokens, as `brokerflow connect
// quickbooks` would after a consent.
func connectSandboxQuickBooks(ctx context.Context, nc *nats.Conn, cfg ledgersync.Config, q *sandbox.QuickBooks) error {
	tok := q.IssueTokens(sandbox.DefaultQuickBooksRealm)
	t := (&oauth2.Token{
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType,
		Expiry: time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second),
	}).WithExtra(map[string]any{"realmId": sandbox.DefaultQuickBooksRealm})
	return saveTokens(ctx, nc, cfg.QuickBooks.OAuthConfig(), t, quickbooks.Name)
}

// saveTokens stores t as the tokens of the OAuth client c.
func saveTokens(ctx context.Context, nc *nats.Conn, c oauth.Config, t *oauth2.Token, vendor string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := oauth.NewStore(js, c).Save(ctx, t); err != nil {
		return fmt.Errorf("sandbox: store the %s tokens: %w", vendor, err)
	}
	return nil
}
