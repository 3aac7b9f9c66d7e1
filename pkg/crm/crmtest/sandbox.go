package crmtest

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/crm/liondesk"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// Sandbox runs a sandbox with o over real HTTP until the test ends, and
// returns it and its URL.
func Sandbox(t *testing.T, o sandbox.Options) (*sandbox.Sandbox, string) {
	t.Helper()
	sb := sandbox.New(o)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close) // registered last: webhook deliveries stop before the server closes
	return sb, srv.URL
}

// FollowUpBoss runs a sandbox and returns its Follow Up Boss account and
// the adapter configuration pointing at it.
func FollowUpBoss(t *testing.T) (*sandbox.FUB, followupboss.Config) {
	t.Helper()
	sb, base := Sandbox(t, sandbox.Options{})
	return sb.FUB(), FollowUpBossConfig(base)
}

// FollowUpBossConfig is the adapter configuration for the Follow Up Boss of
// the sandbox at base.
func FollowUpBossConfig(base string) followupboss.Config {
	return followupboss.Config{
		BaseURL:   base + "/fub",
		APIKey:    sandbox.DefaultFUBAPIKey,
		System:    sandbox.DefaultFUBSystem,
		SystemKey: sandbox.DefaultFUBSystemKey,
		Timeout:   10 * time.Second,
	}
}

// LionDesk runs a sandbox and returns its LionDesk account and the adapter
// configuration pointing at it.
func LionDesk(t *testing.T) (*sandbox.LionDesk, liondesk.Config) {
	t.Helper()
	sb, base := Sandbox(t, sandbox.Options{})
	return sb.LionDesk(), LionDeskConfig(base)
}

// LionDeskConfig is the adapter configuration for the LionDesk of the
// sandbox at base.
func LionDeskConfig(base string) liondesk.Config {
	return liondesk.Config{BaseURL: base + "/liondesk", AccessToken: sandbox.DefaultLionDeskToken, Timeout: 10 * time.Second}
}
