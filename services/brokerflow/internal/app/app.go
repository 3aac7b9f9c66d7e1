// Package app is the all-in-one Brokerflow: an embedded JetStream server and
// every service in one process, a small brokerage's production.
package app

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/natsauth"
	"github.com/brokerflow/brokerflow/pkg/opshttp"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/telemetry"
	"github.com/brokerflow/brokerflow/services/alerter/alerter"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
	"github.com/brokerflow/brokerflow/services/ledger-sync/ledgersync"
	"github.com/brokerflow/brokerflow/services/normalizer/normalizer"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
	"github.com/brokerflow/brokerflow/services/tms-sync/tmssync"
)

// Prefix is the environment prefix of the all-in-one settings.
const Prefix = "BROKERFLOW_"

// DevIDXSecret signs the IDX website's webhooks in --dev mode only. It is
// public: never use it for a real source.
var DevIDXSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("brokerflow-dev-secret-not-for-production"))

// DevGatewayAddr is where --dev and --sandbox serve the gateway when
// GATEWAY_ADDR is not set: loopback only, since they accept webhooks signed
// with the public DevIDXSecret. An address set explicitly is used as set.
const DevGatewayAddr = "127.0.0.1:8080"

// SandboxPollInterval is how often --sandbox polls the sandbox's LionDesk for
// changed contacts when CRMSYNC_POLL_INTERVAL is not set: an agent's edit in
// the sandbox shows within seconds, at 5 of its 60 calls per 10 s.
const SandboxPollInterval = 2 * time.Second

// SandboxReconcileInterval is how often --sandbox asks the sandbox's Follow
// Up Boss for the people changed since the last time, to announce the
// changes whose webhooks were lost, when CRMSYNC_FUB_RECONCILE_INTERVAL is
// not set (5m otherwise): one counted call of 250 per 10 s.
const SandboxReconcileInterval = 10 * time.Second

// ReportingAddr is where the all-in-one serves the reporting API when
// REPORTING_ADDR is not set: loopback only, since the API has no login.
const ReportingAddr = "127.0.0.1:8090"

// Config is the all-in-one configuration, from BROKERFLOW_* variables. Each
// service reads its own prefix too (GATEWAY_*, NORMALIZER_*).
type Config struct {
	// NATSURL, when set, connects to an existing NATS instead of embedding one.
	NATSURL  string `env:"NATS_URL"`
	NATSHost string `env:"NATS_HOST" envDefault:"127.0.0.1"`
	NATSPort int    `env:"NATS_PORT" envDefault:"4222"`
	// NATSUsers gives every service, the operator and the analyst its own
	// NATS user, with only its own subjects (docs/security.md). On by default.
	NATSUsers bool `env:"NATS_USERS" envDefault:"true"`
	// NATSCredsDir holds the users' nkey seeds; default creds/ in DataDir.
	NATSCredsDir string `env:"NATS_CREDS_DIR"`
	// NATSUser and NATSPassword are one shared user, when NATSUsers is off.
	NATSUser     string `env:"NATS_USER"`
	NATSPassword string `env:"NATS_PASSWORD"`
	DataDir      string `env:"DATA_DIR" envDefault:".brokerflow/data"`
	// NATSSync is "always" (fsync before every ack) or an interval such as 10s.
	NATSSync string `env:"NATS_SYNC" envDefault:"always"`
	// OpsAddr serves /healthz, /readyz and /metrics for every service.
	OpsAddr string `env:"OPS_ADDR" envDefault:"127.0.0.1:9090"`
	// LogLevel is debug, info, warn or error.
	LogLevel slog.Level `env:"LOG_LEVEL" envDefault:"info"`
	// LogPII turns off the redaction of emails, phones and names in logs.
	LogPII bool `env:"LOG_PII" envDefault:"false"`

	Bus service.TopologyConfig `envPrefix:"BUS_"`

	// SourcesFile is the sources file of the gateway and the normalizer
	// (docs/sources/README.md); it overrides GATEWAY_SOURCES_FILE and
	// NORMALIZER_SOURCES_FILE.
	SourcesFile string `env:"SOURCES_FILE"`
	// SandboxAddr is where --sandbox serves the vendor emulations.
	SandboxAddr string `env:"SANDBOX_ADDR" envDefault:"127.0.0.1:8099"`

	// Dev fills in development secrets, printed at start.
	Dev bool `env:"-"`
	// Sandbox starts the sandbox and points every adapter at it.
	Sandbox bool `env:"-"`

	// Tracing is where spans go: the standard OTEL_EXPORTER_OTLP_*
	// variables; unset, spans are made and propagated but not exported.
	Tracing telemetry.ExportConfig `env:"-"`

	Gateway    gateway.Config    `env:"-"`
	Normalizer normalizer.Config `env:"-"`
	CRMSync    crmsync.Config    `env:"-"`
	Reporting  reporting.Config  `env:"-"`
	Alerter    alerter.Config    `env:"-"`
	TMSSync    tmssync.Config    `env:"-"`
	LedgerSync ledgersync.Config `env:"-"`
	sync       SyncPolicy
}

// Mode is how brokerflow run was asked to start.
type Mode struct {
	// Dev signs the IDX source with DevIDXSecret when no secret is set.
	Dev bool
	// Sandbox starts the sandbox, points the adapters at it, and implies Dev.
	Sandbox bool
}

// ConfigFromEnv reads BROKERFLOW_*, GATEWAY_*, NORMALIZER_* and CRMSYNC_*
// from environ.
func ConfigFromEnv(environ []string, mode Mode) (Config, error) {
	var c Config
	if err := service.ParseEnv(&c, Prefix, environ); err != nil {
		return c, err
	}
	c.Sandbox = mode.Sandbox
	c.Dev = mode.Dev || mode.Sandbox
	for _, s := range []struct {
		cfg    any
		prefix string
	}{{&c.Gateway, gateway.Prefix}, {&c.Normalizer, normalizer.Prefix}, {&c.CRMSync, crmsync.Prefix}, {&c.Reporting, reporting.Prefix}, {&c.Alerter, alerter.Prefix}, {&c.TMSSync, tmssync.Prefix}, {&c.LedgerSync, ledgersync.Prefix}} {
		if err := service.ParseEnv(s.cfg, s.prefix, environ); err != nil {
			return c, err
		}
	}
	// Group commit pays only where every write is synced: an atomic batch
	// costs JetStream a staging store of its own, which a plain publish
	// without an fsync does not (docs/operations.md#group-commit). So the
	// embedded server's sync policy decides, unless the gateway's setting is
	// given.
	if p, err := ParseSyncPolicy(c.NATSSync); err == nil && c.NATSURL == "" && !isSet(environ, gateway.Prefix+"GROUP_COMMIT") {
		c.Gateway.GroupCommit = p.Always
	}
	if c.Dev && !isSet(environ, gateway.Prefix+"ADDR") {
		c.Gateway.Addr = DevGatewayAddr
	}
	if c.Dev && len(c.Gateway.IDXSecrets) == 0 && c.Gateway.IDXSecretsFile == "" {
		c.Gateway.IDXSecrets = []string{DevIDXSecret}
	}
	if c.Sandbox && len(c.Gateway.FUBSystemKeys) == 0 && c.Gateway.FUBSystemKeysFile == "" {
		// The sandbox signs its Follow Up Boss webhooks with its system key.
		c.Gateway.FUBSystemKeys = []string{sandbox.DefaultFUBSystemKey}
	}
	if c.Sandbox && c.Normalizer.Graph.AccessToken == "" && c.Normalizer.Graph.AccessTokenFile == "" {
		// A facebook source reads its leads from the sandbox's Graph.
		c.Normalizer.Graph.AccessToken = sandbox.DefaultGraphAccessToken
	}
	if c.Sandbox {
		// Start points the base URLs at the sandbox's bound address.
		SandboxCRM(&c.CRMSync, c.SandboxAddr)
		if !isSet(environ, crmsync.Prefix+"POLL_INTERVAL") {
			c.CRMSync.PollInterval = SandboxPollInterval
		}
		if !isSet(environ, crmsync.Prefix+"FUB_RECONCILE_INTERVAL") {
			c.CRMSync.FUBReconcileInterval = SandboxReconcileInterval
		}
		sandboxTMS(&c, environ)
		sandboxLedger(&c, environ)
		// The alerter tells the sandbox's Slack and PagerDuty, unless a
		// channel is set; Start points them at the sandbox's bound address.
		if c.Alerter.SlackWebhookURL == "" && c.Alerter.SlackWebhookURLFile == "" {
			c.Alerter.SlackWebhookURL = "http://" + c.SandboxAddr + "/slack" + sandbox.DefaultSlackHookPath
		}
		if c.Alerter.PagerDutyRoutingKey == "" && c.Alerter.PagerDutyRoutingKeyFile == "" {
			c.Alerter.PagerDutyRoutingKey = sandbox.DefaultPagerDutyRoutingKey
			c.Alerter.PagerDutyURL = "http://" + c.SandboxAddr + "/pagerduty/v2/enqueue"
		}
	}
	if len(c.CRMSync.IdentityPeppers) == 0 && c.CRMSync.IdentityPepperFile == "" {
		c.CRMSync.IdentityPepperFile = c.pepperFile()
		if err := ensurePepper(c.CRMSync.IdentityPepperFile); err != nil {
			return c, err
		}
	}
	tracing, err := telemetry.ExportConfigFrom(service.EnvMap(environ))
	if err != nil {
		return c, err
	}
	c.Tracing = tracing
	shareWithTMSSync(&c, environ)
	ledgerPolling(&c, environ)
	// The sources file's secrets come from the same environment.
	c.Gateway.Environ = service.EnvMap(environ)
	// One sources file for the gateway and the normalizer.
	if c.SourcesFile != "" {
		c.Gateway.SourcesFile, c.Normalizer.SourcesFile = c.SourcesFile, c.SourcesFile
	}
	// The read model lives beside JetStream's data, and its API on loopback.
	if !isSet(environ, reporting.Prefix+"DATA_DIR") {
		c.Reporting.DataDir = filepath.Join(c.DataDir, "reporting")
	}
	if !isSet(environ, reporting.Prefix+"ADDR") {
		c.Reporting.Addr = ReportingAddr
	}
	// One process, one retry schedule and one ops listener for every service.
	c.Normalizer.Bus, c.CRMSync.Bus, c.Reporting.Bus, c.Alerter.Bus, c.TMSSync.Bus = c.Bus.ConsumeConfig, c.Bus.ConsumeConfig, c.Bus.ConsumeConfig, c.Bus.ConsumeConfig, c.Bus.ConsumeConfig
	c.Gateway.OpsAddr, c.Normalizer.OpsAddr, c.CRMSync.OpsAddr, c.Reporting.OpsAddr, c.Alerter.OpsAddr, c.TMSSync.OpsAddr = "", "", "", "", "", ""
	c.LedgerSync.Bus, c.LedgerSync.OpsAddr = c.Bus.ConsumeConfig, ""
	err = c.Validate()
	return c, err
}

// SandboxCRM points every CRM adapter of c at the sandbox at addr
// (host:port), with the sandbox's default credentials.
func SandboxCRM(c *crmsync.Config, addr string) {
	c.FUB = followupboss.Config{
		BaseURL:   "http://" + addr + "/fub",
		APIKey:    sandbox.DefaultFUBAPIKey,
		System:    sandbox.DefaultFUBSystem,
		SystemKey: sandbox.DefaultFUBSystemKey,
		Timeout:   c.FUB.Timeout,
	}
	c.LionDesk.BaseURL = "http://" + addr + "/liondesk"
	c.LionDesk.AccessToken, c.LionDesk.AccessTokenFile = sandbox.DefaultLionDeskToken, ""
}

// Validate reports the first invalid setting, naming the variable.
func (c *Config) Validate() error {
	p, err := ParseSyncPolicy(c.NATSSync)
	if err != nil {
		return fmt.Errorf("BROKERFLOW_NATS_SYNC: %w", err)
	}
	c.sync = p
	if err := c.Gateway.Validate(); err != nil {
		if !c.Dev {
			return fmt.Errorf("%w (or run with --sandbox or --dev for a development secret)", err)
		}
		return err
	}
	if err := c.Normalizer.Validate(); err != nil {
		return err
	}
	if err := c.Reporting.Validate(); err != nil {
		return err
	}
	if err := c.Alerter.Resolve(); err != nil {
		return err
	}
	if err := c.TMSSync.Resolve(); err != nil {
		return err
	}
	if err := c.LedgerSync.Resolve(); err != nil {
		return err
	}
	return c.CRMSync.Resolve()
}

// Sync is the embedded server's sync policy.
func (c Config) Sync() SyncPolicy { return c.sync }

// App is a started all-in-one Brokerflow.
type App struct {
	// NATSURL is where the nats CLI and analysts connect.
	NATSURL string
	// WebhookURL is the base URL of the webhook routes.
	WebhookURL string
	// OpsURL serves /healthz, /readyz and /metrics.
	OpsURL string
	// SandboxURL is the sandbox's page, when it runs.
	SandboxURL string
	// GRPCAddr serves the first-party SubmitLead API, when GATEWAY_GRPC_ADDR is set.
	GRPCAddr string
	// ReportingURL serves the reporting API and CSV exports.
	ReportingURL string
	// Reporting is the running reporting service.
	Reporting *reporting.Reporter
	// CredsDir holds each user's nkey seed (<user>.nk), when the users are on.
	CredsDir string
	// Sandbox is the running sandbox, when it runs.
	Sandbox *sandbox.Sandbox
	Sources []gateway.Source

	cfg       Config
	listeners []net.Listener
	ns        *server.Server
	conns     []*nats.Conn
	logger    *slog.Logger
	// flushTraces export the spans still buffered, at close.
	flushTraces []func(context.Context) error
	eg          *errgroup.Group
	cancel      context.CancelFunc
}

// Start starts the embedded server (unless BROKERFLOW_NATS_URL is set),
// declares the streams, opens the listeners and runs every service. It
// returns once the system accepts webhooks.
func Start(ctx context.Context, cfg Config, stderr io.Writer, hooks *bus.TestHooks) (_ *App, err error) {
	logger := logging.New(stderr, logging.Options{Level: cfg.LogLevel, LogPII: cfg.LogPII})
	a := &App{cfg: cfg, logger: logger}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	if err := a.startNATS(); err != nil {
		return nil, err
	}
	// The apply step runs as the operator: the services' users may not
	// create or change a stream.
	onc, err := a.connect(bus.UserOperator)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(onc)
	if err != nil {
		return nil, err
	}
	if err := bus.Apply(ctx, js, cfg.Bus.Topology()); err != nil {
		return nil, err
	}

	var lc net.ListenConfig
	var sandboxLn net.Listener
	if cfg.Sandbox {
		sandboxLn, err = lc.Listen(ctx, "tcp", cfg.SandboxAddr)
		if err != nil {
			return nil, fmt.Errorf("listen BROKERFLOW_SANDBOX_ADDR %s: %w", cfg.SandboxAddr, err)
		}
		a.listeners = append(a.listeners, sandboxLn)
		a.Sandbox = sandbox.New(sandbox.Options{})
		a.SandboxURL = "http://" + hostPort(sandboxLn.Addr())
		cfg.CRMSync.FUB.BaseURL = a.SandboxURL + "/fub"
		cfg.CRMSync.LionDesk.BaseURL = a.SandboxURL + "/liondesk"
		cfg.Normalizer.Graph.BaseURL = a.SandboxURL + "/graph/v19.0"
		if cfg.Alerter.SlackWebhookURL == "http://"+cfg.SandboxAddr+"/slack"+sandbox.DefaultSlackHookPath {
			cfg.Alerter.SlackWebhookURL = a.SandboxURL + "/slack" + sandbox.DefaultSlackHookPath
		}
		if cfg.Alerter.PagerDutyURL == "http://"+cfg.SandboxAddr+"/pagerduty/v2/enqueue" {
			cfg.Alerter.PagerDutyURL = a.SandboxURL + "/pagerduty/v2/enqueue"
		}
		cfg.TMSSync.Dotloop.BaseURL, cfg.TMSSync.Dotloop.AuthURL = a.SandboxURL+"/dotloop/public/v2", a.SandboxURL+"/dotloop/oauth"
		if cfg.TMSSync.TMS == tmssync.TMSSkySlope {
			sandboxSkySlopeURLs(&cfg.TMSSync.SkySlope, a.SandboxURL)
		}
		cfg.TMSSync.FUB.BaseURL = cfg.CRMSync.FUB.BaseURL
		sandboxLedgerURLs(&cfg.LedgerSync, a.SandboxURL)
		a.cfg = cfg
	}

	reg := service.NewRegistry()
	// Each service connects as its own user, and traces as itself.
	deps := func(user string) (service.Deps, error) {
		nc, err := a.connect(user)
		if err != nil {
			return service.Deps{}, err
		}
		tp, shutdown, err := telemetry.NewProvider(ctx, user, cfg.Tracing)
		a.flushTraces = append(a.flushTraces, shutdown)
		return service.Deps{NATS: nc, Logger: logger, Registerer: reg, Gatherer: reg, Hooks: hooks, TracerProvider: tp}, err
	}
	d, err := deps(bus.ServiceGateway)
	if err != nil {
		return nil, err
	}
	gw, err := gateway.New(cfg.Gateway, d)
	if err != nil {
		return nil, err
	}
	if d, err = deps(bus.ServiceNormalizer); err != nil {
		return nil, err
	}
	norm, err := normalizer.New(cfg.Normalizer, d)
	if err != nil {
		return nil, err
	}
	a.Sources = gw.Sources()

	if d, err = deps(bus.ServiceCRMSync); err != nil {
		return nil, err
	}
	crm, err := crmsync.New(cfg.CRMSync, d)
	if err != nil {
		return nil, err
	}
	if d, err = deps(bus.ServiceReporting); err != nil {
		return nil, err
	}
	rcfg := cfg.Reporting
	rcfg.Addr = "" // served below, on a listener opened here
	rep, err := reporting.New(rcfg, d)
	if err != nil {
		return nil, err
	}
	a.Reporting = rep
	if d, err = deps(bus.ServiceAlerter); err != nil {
		return nil, err
	}
	alert, err := alerter.New(cfg.Alerter, d)
	if err != nil {
		return nil, err
	}
	var tmsSync *tmssync.Syncer
	if cfg.TMSSync.Enabled() {
		if d, err = deps(bus.ServiceTMSSync); err != nil {
			return nil, err
		}
		if a.Sandbox != nil {
			if err := connectSandboxTMS(ctx, d.NATS, cfg.TMSSync, a.Sandbox); err != nil {
				return nil, err
			}
		}
		if tmsSync, err = tmssync.New(cfg.TMSSync, d); err != nil {
			return nil, err
		}
	}
	var ledgerSync *ledgersync.Syncer
	if cfg.LedgerSync.Enabled() {
		if d, err = deps(bus.ServiceLedgerSync); err != nil {
			return nil, err
		}
		if a.Sandbox != nil {
			if err := connectSandboxQuickBooks(ctx, d.NATS, cfg.LedgerSync, a.Sandbox.QuickBooks()); err != nil {
				return nil, err
			}
		}
		if ledgerSync, err = ledgersync.New(cfg.LedgerSync, d); err != nil {
			return nil, err
		}
	}
	webLn, err := lc.Listen(ctx, "tcp", cfg.Gateway.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen GATEWAY_ADDR %s: %w", cfg.Gateway.Addr, err)
	}
	a.listeners = append(a.listeners, webLn)
	var grpcLn net.Listener
	if cfg.Gateway.GRPCAddr != "" {
		if grpcLn, err = lc.Listen(ctx, "tcp", cfg.Gateway.GRPCAddr); err != nil {
			return nil, fmt.Errorf("listen GATEWAY_GRPC_ADDR %s: %w", cfg.Gateway.GRPCAddr, err)
		}
		a.listeners = append(a.listeners, grpcLn)
		a.GRPCAddr = hostPort(grpcLn.Addr())
	}
	opsLn, err := lc.Listen(ctx, "tcp", cfg.OpsAddr)
	if err != nil {
		return nil, fmt.Errorf("listen BROKERFLOW_OPS_ADDR %s: %w", cfg.OpsAddr, err)
	}
	a.listeners = append(a.listeners, opsLn)
	var repLn net.Listener
	if cfg.Reporting.Addr != "" {
		if repLn, err = lc.Listen(ctx, "tcp", cfg.Reporting.Addr); err != nil {
			return nil, fmt.Errorf("listen REPORTING_ADDR %s: %w", cfg.Reporting.Addr, err)
		}
		a.listeners = append(a.listeners, repLn)
		a.ReportingURL = "http://" + hostPort(repLn.Addr())
	}
	a.WebhookURL = "http://" + hostPort(webLn.Addr())
	if a.Sandbox != nil {
		a.Sandbox.FUB().SetWebhookBaseURL(a.SandboxURL + "/fub")
		if tmsSync != nil {
			// Dotloop tells the gateway about every loop update, as
			// `brokerflow tms webhooks register` subscribes it.
			if _, err := a.Sandbox.Dotloop().Subscribe(sandbox.DotloopSubscription{
				URL: a.WebhookURL + "/webhooks/dotloop", EventTypes: []string{sandbox.DotloopLoopUpdated},
				SigningKey: sandbox.DefaultDotloopSigningKey, ExternalID: "brokerflow", Enabled: true,
			}); err != nil {
				return nil, fmt.Errorf("sandbox: subscribe to Dotloop: %w", err)
			}
		}
		if ledgerSync != nil {
			// QuickBooks tells the gateway about every payment, as the
			// app's webhook endpoint in Intuit's developer portal does.
			if err := sandboxQuickBooksWebhooks(cfg, a.Sandbox.QuickBooks(), a.WebhookURL); err != nil {
				return nil, fmt.Errorf("sandbox: QuickBooks webhooks: %w", err)
			}
		}
	}
	a.OpsURL = "http://" + hostPort(opsLn.Addr())

	runCtx, cancel := context.WithCancel(ctx)
	a.cancel = cancel
	eg, runCtx := errgroup.WithContext(runCtx)
	a.eg = eg
	eg.Go(func() error { return gw.Serve(runCtx, webLn) })
	if grpcLn != nil {
		eg.Go(func() error { return gw.ServeGRPC(runCtx, grpcLn) })
	}
	eg.Go(func() error { return norm.Run(runCtx) })
	eg.Go(func() error { return crm.Run(runCtx) })
	eg.Go(func() error { return rep.Run(runCtx) })
	eg.Go(func() error { return alert.Run(runCtx) })
	checks := map[string]opshttp.Check{"ingest-gateway": gw.Ready, "normalizer": norm.Ready, "crm-sync": crm.Ready, "reporting": rep.Ready, "alerter": alert.Ready}
	if tmsSync != nil {
		eg.Go(func() error { return tmsSync.Run(runCtx) })
		checks["tms-sync"] = tmsSync.Ready
	}
	if ledgerSync != nil {
		eg.Go(func() error { return ledgerSync.Run(runCtx) })
		checks["ledger-sync"] = ledgerSync.Ready
	}
	if repLn != nil {
		eg.Go(func() error { return opshttp.Serve(runCtx, repLn, rep.Handler(), cfg.Reporting.ShutdownTimeout) })
	}
	if sandboxLn != nil {
		eg.Go(func() error {
			return opshttp.Serve(runCtx, sandboxLn, a.Sandbox.Handler(), cfg.Gateway.ShutdownTimeout)
		})
	}
	if a.Sandbox != nil {
		// Follow Up Boss tells the gateway about every change once its owner
		// registers the gateway's URL: the same calls as `brokerflow crm
		// webhooks register` (POST /v1/webhooks), made here for the sandbox.
		if _, _, err := followupboss.New(cfg.CRMSync.FUB).EnsureWebhooks(ctx, a.WebhookURL+gateway.FUBRoute, followupboss.WebhookEvents()); err != nil {
			return nil, fmt.Errorf("sandbox: register the Follow Up Boss webhooks: %w", err)
		}
	}
	eg.Go(func() error {
		return opshttp.Serve(runCtx, opsLn, opshttp.Handler(reg, checks), cfg.Gateway.ShutdownTimeout)
	})
	return a, nil
}

// hostPort prints a listener address a person can paste: an unspecified
// host becomes 127.0.0.1.
func hostPort(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Wait blocks until the context given to Start is done or a service fails,
// then shuts everything down in order: intake and consumers first, then the
// NATS connection, then the embedded server.
func (a *App) Wait() error {
	err := a.eg.Wait()
	a.close()
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// Stop asks the app to shut down; Wait returns when it has.
func (a *App) Stop() { a.cancel() }

// Config is the configuration the system runs with, generated settings
// (the identity pepper's file) included.
func (a *App) Config() Config { return a.cfg }

func (a *App) close() {
	if a.cancel != nil {
		a.cancel()
	}
	for _, ln := range a.listeners {
		_ = ln.Close() // already closed by a graceful shutdown; not when Start failed
	}
	if a.Sandbox != nil {
		a.Sandbox.Close() // stops its webhook deliveries
	}
	for _, nc := range a.conns {
		_ = service.Drain(nc, a.cfg.Gateway.ShutdownTimeout)
	}
	for _, flush := range a.flushTraces {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = flush(ctx)
		cancel()
	}
	if a.ns != nil {
		a.ns.Shutdown()
		a.ns.WaitForShutdown()
	}
}

// PrintBanner tells a person where everything is.
func (a *App) PrintBanner(w io.Writer) {
	fmt.Fprintf(w, "brokerflow is running\n")
	if a.ns != nil {
		fmt.Fprintf(w, "  NATS JetStream  %s  (embedded, data in %s, sync %s)\n", a.NATSURL, a.cfg.DataDir, a.cfg.Sync())
	} else {
		fmt.Fprintf(w, "  NATS JetStream  %s\n", a.NATSURL)
	}
	for _, s := range a.Sources {
		fmt.Fprintf(w, "  webhooks        POST %s%s  (source %q, %s)\n", a.WebhookURL, s.Route, s.Name, s.Scheme)
	}
	if a.cfg.Dev {
		fmt.Fprintf(w, "  dev secret      %s  (public: for development only)\n", DevIDXSecret)
	}
	if a.SandboxURL != "" {
		fmt.Fprintf(w, "  sandbox         %s/  (emulations, not the vendors: Follow Up Boss at /fub, LionDesk at /liondesk, Facebook Graph at /graph, Dotloop at /dotloop, SkySlope at /skyslope, QuickBooks Online at /quickbooks)\n", a.SandboxURL)
		fmt.Fprintf(w, "  demo            brokerflow demo  (or: go run ./services/brokerflow demo)\n")
	}
	crm := a.cfg.CRMSync
	if crm.CRM == "liondesk" {
		fmt.Fprintf(w, "  CRM             liondesk at %s  (no webhooks: polled every %s)\n", crm.LionDesk.BaseURL, crm.PollInterval)
	} else {
		reconcile := "off"
		if crm.FUBReconcileInterval > 0 {
			reconcile = "every " + crm.FUBReconcileInterval.String()
		}
		fmt.Fprintf(w, "  CRM             %s at %s  (webhooks; lost ones reconciled %s)\n", crm.CRM, crm.FUB.BaseURL, reconcile)
	}
	fmt.Fprintf(w, "  alerts          %s\n", a.alertChannels())
	if t := a.cfg.TMSSync; t.Enabled() && t.TMS == tmssync.TMSSkySlope {
		fmt.Fprintf(w, "  TMS             skyslope: Forms API at %s, sales at %s  (no webhooks: polled every %s; opening stages %v; docs/tms.md#skyslope)\n", t.SkySlope.FormsURL, t.SkySlope.FilesURL, t.PollInterval, t.OpeningStages)
	} else if t.Enabled() {
		fmt.Fprintf(w, "  TMS             %s at %s  (tms-sync: opening stages %v; docs/tms.md)\n", t.TMS, t.Dotloop.BaseURL, t.OpeningStages)
	} else {
		fmt.Fprintf(w, "  TMS             none  (TMSSYNC_TMS=dotloop or skyslope turns tms-sync on; docs/tms.md)\n")
	}
	if l := a.cfg.LedgerSync; l.Enabled() {
		fmt.Fprintf(w, "  ledger          %s at %s  (ledger-sync: %s, agent as %s, payer %s, bill %v; docs/ledger.md)\n", l.Ledger, l.QuickBooks.BaseURL, l.Document, l.AgentAs, l.Payer, l.Bill)
	} else {
		fmt.Fprintf(w, "  ledger          none  (LEDGERSYNC_LEDGER=quickbooks turns ledger-sync on; docs/ledger.md)\n")
	}
	if a.GRPCAddr != "" {
		fmt.Fprintf(w, "  gRPC intake     %s  (brokerflow.intake.v1.IntakeService/SubmitLead, bearer token, plaintext: docs/intake-grpc.md)\n", a.GRPCAddr)
	}
	if a.ReportingURL != "" {
		fmt.Fprintf(w, "  reporting       %s/  (the dashboard; the API under /api/, CSV exports: docs/reporting.md; data: %s)\n", a.ReportingURL, a.Reporting.Place())
	}
	fmt.Fprintf(w, "  ops             %s/healthz  %s/readyz  %s/metrics\n", a.OpsURL, a.OpsURL, a.OpsURL)
	if a.CredsDir != "" {
		fmt.Fprintf(w, "  NATS users      one per service, plus operator and analyst; seeds in %s (owner-only)\n", a.CredsDir)
		fmt.Fprintf(w, "                  operator: %s  analyst: %s\n", natsauth.SeedFile(a.CredsDir, bus.UserOperator), natsauth.SeedFile(a.CredsDir, bus.UserAnalyst))
		fmt.Fprintf(w, "  inspect         nats --server %s --nkey %s stream get LEADS --last-for lead.normalized.idx\n", a.NATSURL, natsauth.SeedFile(a.CredsDir, bus.UserAnalyst))
	} else {
		fmt.Fprintf(w, "  inspect         nats --server %s stream get LEADS --last-for lead.normalized.idx\n", a.NATSURL)
	}
	fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
}

// alertChannels names where the alerter sends its alerts.
func (a *App) alertChannels() string {
	var out []string
	c := a.cfg.Alerter
	if c.SlackWebhookURL != "" {
		out = append(out, "Slack")
	}
	if c.PagerDutyRoutingKey != "" {
		out = append(out, "PagerDuty at "+c.PagerDutyURL)
	}
	if c.WebhookURL != "" {
		out = append(out, "a signed webhook")
	}
	if len(out) == 0 {
		return "none configured: failures are only logged and kept (ALERTER_*: docs/alerts.md)"
	}
	return strings.Join(out, ", ") + "  (docs/alerts.md)"
}

// isSet reports whether environ sets key to a value that is not empty.
func isSet(environ []string, key string) bool {
	return service.EnvMap(environ)[key] != ""
}
