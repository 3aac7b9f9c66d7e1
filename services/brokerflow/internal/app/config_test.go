package app_test

import (
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
				"CRMSYNC_CRM=liondesk", "BROKERFLOW_SANDBOX_ADDR=127.0.0.1:9999",
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
