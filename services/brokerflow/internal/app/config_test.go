package app_test

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

func TestConfig_sandboxPointsLionDeskAtTheSandbox(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		environ  []string
		wantPoll time.Duration
	}{
		"default_poll":  {nil, app.SandboxPollInterval},
		"explicit_poll": {[]string{"CRMSYNC_POLL_INTERVAL=1m"}, time.Minute},
		"polling_off":   {[]string{"CRMSYNC_POLL_INTERVAL=0s"}, 0},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			environ := append([]string{
				"BROKERFLOW_DATA_DIR=" + t.TempDir(), "CRMSYNC_CRM=liondesk", "BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999",
				"CRMSYNC_LIONDESK_BASE_URL=https://api-v2.liondesk.com", "CRMSYNC_LIONDESK_ACCESS_TOKEN=a-real-token",
			}, tc.environ...)
			cfg, err := app.ConfigFromEnv(environ, app.Mode{Sandbox: true})
			if err != nil {
				t.Fatal(err)
			}
			ld := cfg.CRMSync.LionDesk
			if ld.BaseURL != "http://127.0.0.1:9999/liondesk" || ld.AccessToken != sandbox.DefaultLionDeskToken || cfg.CRMSync.PollInterval != tc.wantPoll {
				t.Fatalf("LionDesk %+v, poll %s; want the sandbox's, with its token, polled every %s", ld, cfg.CRMSync.PollInterval, tc.wantPoll)
			}
		})
	}
}

// --sandbox reconciles the sandbox's Follow Up Boss every few seconds,
// unless told otherwise; without it, the service's default holds.
func TestConfig_sandboxReconcilesFollowUpBossSooner(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		environ []string
		mode    app.Mode
		want    time.Duration
	}{
		"sandbox_default":  {nil, app.Mode{Sandbox: true}, app.SandboxReconcileInterval},
		"sandbox_explicit": {[]string{"CRMSYNC_FUB_RECONCILE_INTERVAL=1m"}, app.Mode{Sandbox: true}, time.Minute},
		"sandbox_off":      {[]string{"CRMSYNC_FUB_RECONCILE_INTERVAL=0s"}, app.Mode{Sandbox: true}, 0},
		"dev_default":      {[]string{"CRMSYNC_FUB_API_KEY=k"}, app.Mode{Dev: true}, 5 * time.Minute},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := app.ConfigFromEnv(append([]string{"BROKERFLOW_DATA_DIR=" + t.TempDir()}, tc.environ...), tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.CRMSync.FUBReconcileInterval != tc.want {
				t.Fatalf("reconcile every %s, want %s", cfg.CRMSync.FUBReconcileInterval, tc.want)
			}
		})
	}
}

// The development modes accept webhooks signed with a public secret, so they
// serve the gateway on loopback unless the operator says where.
func TestConfig_devModesServeTheGatewayOnLoopback(t *testing.T) {
	t.Parallel()
	secret := "GATEWAY_IDX_SECRETS=" + app.DevIDXSecret
	for name, tc := range map[string]struct {
		mode    app.Mode
		environ []string
		want    string
	}{
		"dev":                      {app.Mode{Dev: true}, nil, app.DevGatewayAddr},
		"sandbox":                  {app.Mode{Sandbox: true}, nil, app.DevGatewayAddr},
		"dev_empty_addr":           {app.Mode{Dev: true}, []string{"GATEWAY_ADDR="}, app.DevGatewayAddr},
		"dev_explicit_addr":        {app.Mode{Dev: true}, []string{"GATEWAY_ADDR=0.0.0.0:9000"}, "0.0.0.0:9000"},
		"sandbox_explicit_addr":    {app.Mode{Sandbox: true}, []string{"GATEWAY_ADDR=:8080"}, ":8080"},
		"production_default":       {app.Mode{}, []string{secret}, ":8080"},
		"production_explicit_addr": {app.Mode{}, []string{secret, "GATEWAY_ADDR=10.0.0.5:80"}, "10.0.0.5:80"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := app.ConfigFromEnv(append([]string{"BROKERFLOW_DATA_DIR=" + t.TempDir(), "CRMSYNC_FUB_API_KEY=key"}, tc.environ...), tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Gateway.Addr != tc.want {
				t.Fatalf("the gateway listens on %q, want %q", cfg.Gateway.Addr, tc.want)
			}
		})
	}
	if host, _, err := net.SplitHostPort(app.DevGatewayAddr); err != nil || !net.ParseIP(host).IsLoopback() {
		t.Fatalf("DevGatewayAddr %q is not a loopback address", app.DevGatewayAddr)
	}
}

// Group commit follows the embedded server's sync policy: on when every
// write is synced, off with a periodic fsync, where a plain publish is
// cheaper than an atomic batch; an explicit setting wins.
func TestConfig_groupCommitFollowsTheSyncPolicy(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		environ []string
		want    bool
	}{
		"sync_always_by_default":  {nil, true},
		"sync_interval":           {[]string{"BROKERFLOW_NATS_SYNC=2m"}, false},
		"sync_interval_but_set":   {[]string{"BROKERFLOW_NATS_SYNC=10s", "GATEWAY_GROUP_COMMIT=true"}, true},
		"sync_always_but_set_off": {[]string{"GATEWAY_GROUP_COMMIT=false"}, false},
		"external_nats":           {[]string{"BROKERFLOW_NATS_URL=nats://10.0.0.9:4222", "BROKERFLOW_NATS_SYNC=2m"}, true},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			environ := append([]string{"BROKERFLOW_DATA_DIR=" + t.TempDir(), "CRMSYNC_FUB_API_KEY=key", "GATEWAY_IDX_SECRETS=" + app.DevIDXSecret}, tc.environ...)
			cfg, err := app.ConfigFromEnv(environ, app.Mode{})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Gateway.GroupCommit != tc.want {
				t.Fatalf("group commit %v, want %v", cfg.Gateway.GroupCommit, tc.want)
			}
		})
	}
}

// tms-sync is opt-in: off without --sandbox unless TMSSYNC_TMS says so, on
// with Dotloop against the sandbox with --sandbox, and off there too when
// TMSSYNC_TMS=none.
func TestConfig_tmsSyncIsOptIn(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		environ []string
		mode    app.Mode
		want    string
	}{
		"dev_default":     {[]string{"BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999", "CRMSYNC_FUB_API_KEY=k"}, app.Mode{Dev: true}, "none"},
		"sandbox_default": {[]string{"BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999"}, app.Mode{Sandbox: true}, "dotloop"},
		"sandbox_off":     {[]string{"BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999", "TMSSYNC_TMS=none"}, app.Mode{Sandbox: true}, "none"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := app.ConfigFromEnv(append([]string{"BROKERFLOW_DATA_DIR=" + t.TempDir()}, tc.environ...), tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.TMSSync.TMS != tc.want || (tc.want == "dotloop") != cfg.TMSSync.Enabled() {
				t.Fatalf("TMSSYNC_TMS = %q (enabled %v), want %q", cfg.TMSSync.TMS, cfg.TMSSync.Enabled(), tc.want)
			}
			if tc.want == "dotloop" && (cfg.TMSSync.Dotloop.BaseURL != "http://127.0.0.1:9999/dotloop/public/v2" || cfg.TMSSync.Agents == nil ||
				len(cfg.Gateway.DotloopSigningKeys) != 1 || cfg.TMSSync.Dotloop.ClientID != sandbox.DefaultDotloopClientID) {
				t.Fatalf("sandbox tms-sync config %+v, gateway keys %v", cfg.TMSSync.Dotloop, cfg.Gateway.DotloopSigningKeys)
			}
		})
	}
}

// ledger-sync is opt-in the same way: off without --sandbox unless
// LEDGERSYNC_LEDGER says so, on with the sandbox's QuickBooks Online (and
// the Dotloop tms-sync reads) with --sandbox, off there with
// LEDGERSYNC_LEDGER=none; and on without the sandbox it refuses to start
// without its agent directory, naming the setting.
func TestConfig_ledgerSyncIsOptIn(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		environ []string
		mode    app.Mode
		want    string
		err     string
	}{
		"dev_default":     {[]string{"BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999", "CRMSYNC_FUB_API_KEY=k"}, app.Mode{Dev: true}, "none", ""},
		"sandbox_default": {[]string{"BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999"}, app.Mode{Sandbox: true}, "quickbooks", ""},
		"sandbox_off":     {[]string{"BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999", "LEDGERSYNC_LEDGER=none"}, app.Mode{Sandbox: true}, "none", ""},
		"sandbox_tms_off": {[]string{"BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999", "TMSSYNC_TMS=none"}, app.Mode{Sandbox: true}, "none", ""},
		"dev_on_without_credentials": {
			[]string{"CRMSYNC_FUB_API_KEY=k", "LEDGERSYNC_LEDGER=quickbooks"}, app.Mode{Dev: true}, "", "LEDGERSYNC_AGENTS_FILE",
		},
		"unknown_document": {
			[]string{"BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999", "LEDGERSYNC_DOCUMENT=receipt"}, app.Mode{Sandbox: true}, "", "LEDGERSYNC_DOCUMENT",
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := app.ConfigFromEnv(append([]string{"BROKERFLOW_DATA_DIR=" + t.TempDir()}, tc.environ...), tc.mode)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one naming %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.LedgerSync.Ledger != tc.want || (tc.want == "quickbooks") != cfg.LedgerSync.Enabled() {
				t.Fatalf("LEDGERSYNC_LEDGER = %q (enabled %v), want %q", cfg.LedgerSync.Ledger, cfg.LedgerSync.Enabled(), tc.want)
			}
			l := cfg.LedgerSync
			if tc.want == "quickbooks" && (l.QuickBooks.BaseURL != "http://127.0.0.1:9999/quickbooks" || l.QuickBooks.ClientID != sandbox.DefaultQuickBooksClientID ||
				l.Dotloop.BaseURL != "http://127.0.0.1:9999/dotloop/public/v2" || l.Agents == nil || l.Plans == nil || l.Document != "invoice" || l.AgentAs != "class" || l.Payer != "client" || l.Bill) {
				t.Fatalf("sandbox ledger-sync config %+v", l)
			}
		})
	}
}

// With SkySlope as tms-sync's TMS, the all-in-one's ledger-sync takes its
// closings from SkySlope too, and needs no Dotloop client to start.
func TestConfig_ledgerSyncFollowsTheTMS(t *testing.T) {
	t.Parallel()
	cfg, err := app.ConfigFromEnv([]string{"BROKERFLOW_DATA_DIR=" + t.TempDir(), "BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999",
		"TMSSYNC_TMS=skyslope", "LEDGERSYNC_LEDGER=quickbooks"}, app.Mode{Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.LedgerSync.TMS != "skyslope" || !cfg.LedgerSync.Enabled() {
		t.Fatalf("LEDGERSYNC_TMS = %q (enabled %v), want skyslope", cfg.LedgerSync.TMS, cfg.LedgerSync.Enabled())
	}
}

// Change Data Capture is polled every 5 minutes by the all-in-one's
// ledger-sync when no QuickBooks webhook can reach the gateway (no verifier
// token), and not when one can (a token, as --sandbox sets for its
// QuickBooks); LEDGERSYNC_QUICKBOOKS_CDC_INTERVAL wins over both.
func TestConfig_changeDataCaptureWhenNoWebhookCanArrive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dev := []string{
		"CRMSYNC_FUB_API_KEY=k", "LEDGERSYNC_LEDGER=quickbooks",
		"LEDGERSYNC_AGENTS_FILE=" + write("agents.yaml", "agents:\n  - id: ada\n    name: Ada Agent\n    dotloop_profile_id: \"4711\"\n    commission_plan: gold\n"),
		"LEDGERSYNC_PLANS_FILE=" + write("plans.yaml", "plans:\n  - id: gold\n    agent_split: 80\n"),
		"LEDGERSYNC_QUICKBOOKS_CLIENT_ID=id", "LEDGERSYNC_QUICKBOOKS_CLIENT_SECRET=secret",
		"LEDGERSYNC_DOTLOOP_CLIENT_ID=id", "LEDGERSYNC_DOTLOOP_CLIENT_SECRET=secret",
	}
	for name, tc := range map[string]struct {
		environ []string
		mode    app.Mode
		want    time.Duration
	}{
		"no_verifier_token":  {dev, app.Mode{Dev: true}, app.DefaultCDCInterval},
		"a_verifier_token":   {append([]string{"GATEWAY_QUICKBOOKS_VERIFIER_TOKENS=vt"}, dev...), app.Mode{Dev: true}, 0},
		"set":                {append([]string{"LEDGERSYNC_QUICKBOOKS_CDC_INTERVAL=1m"}, dev...), app.Mode{Dev: true}, time.Minute},
		"sandbox":            {[]string{"BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999"}, app.Mode{Sandbox: true}, 0},
		"sandbox_and_polled": {[]string{"BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999", "LEDGERSYNC_QUICKBOOKS_CDC_INTERVAL=10s"}, app.Mode{Sandbox: true}, 10 * time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := app.ConfigFromEnv(append([]string{"BROKERFLOW_DATA_DIR=" + t.TempDir()}, tc.environ...), tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.LedgerSync.CDCInterval != tc.want {
				t.Fatalf("CDC interval %s, want %s", cfg.LedgerSync.CDCInterval, tc.want)
			}
			if tc.mode.Sandbox && !slices.Contains(cfg.Gateway.QuickBooksVerifierTokens, sandbox.DefaultQuickBooksVerifierToken) {
				t.Fatalf("--sandbox: the gateway does not take the sandbox's verifier token: %v", cfg.Gateway.QuickBooksVerifierTokens)
			}
		})
	}
}
