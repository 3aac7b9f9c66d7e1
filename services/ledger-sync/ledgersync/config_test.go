package ledgersync_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/services/ledger-sync/ledgersync"
)

// TestConfigFromEnv: off by default; on, every setting is checked at start
// and an error names the variable at fault, the agent directory included
// against the plans.
func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	agentsFile := write("agents.yaml", "agents:\n  - id: ada\n    name: Ada Agent\n    dotloop_profile_id: \"4711\"\n    commission_plan: gold\n")
	plansFile := write("plans.yaml", "plans:\n  - id: gold\n    agent_split: 80\n")
	otherPlans := write("other.yaml", "plans:\n  - id: silver\n    agent_split: 60\n")
	base := []string{
		"LEDGERSYNC_LEDGER=quickbooks", "LEDGERSYNC_AGENTS_FILE=" + agentsFile, "LEDGERSYNC_PLANS_FILE=" + plansFile,
		"LEDGERSYNC_QUICKBOOKS_CLIENT_ID=id", "LEDGERSYNC_QUICKBOOKS_CLIENT_SECRET=secret",
		"LEDGERSYNC_DOTLOOP_CLIENT_ID=id", "LEDGERSYNC_DOTLOOP_CLIENT_SECRET=secret",
	}
	cfg, err := ledgersync.ConfigFromEnv(nil)
	if err != nil || cfg.Enabled() {
		t.Fatalf("default: %v, enabled %v; want off", err, cfg.Enabled())
	}
	cfg, err = ledgersync.ConfigFromEnv(base)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Enabled() || cfg.Document != "invoice" || cfg.AgentAs != "class" || cfg.Payer != "client" || cfg.Bill || cfg.Plans == nil || cfg.Agents == nil || cfg.CDCInterval != 0 {
		t.Fatalf("config %+v", cfg)
	}
	// SkySlope's closings are read from nowhere: no Dotloop client.
	var noDotloop []string
	for _, kv := range base {
		if !strings.HasPrefix(kv, "LEDGERSYNC_DOTLOOP_") {
			noDotloop = append(noDotloop, kv)
		}
	}
	if cfg, err := ledgersync.ConfigFromEnv(append(noDotloop, "LEDGERSYNC_TMS=skyslope")); err != nil || cfg.TMS != "skyslope" {
		t.Fatalf("LEDGERSYNC_TMS=skyslope without a Dotloop client: %v (TMS %q)", err, cfg.TMS)
	}
	for name, tc := range map[string]struct {
		set  []string
		want string
	}{
		"unknown_ledger":    {[]string{"LEDGERSYNC_LEDGER=xero"}, "LEDGERSYNC_LEDGER"},
		"no_client":         {[]string{"LEDGERSYNC_QUICKBOOKS_CLIENT_ID="}, "LEDGERSYNC_QUICKBOOKS_CLIENT_ID"},
		"no_dotloop_client": {[]string{"LEDGERSYNC_DOTLOOP_CLIENT_ID="}, "LEDGERSYNC_DOTLOOP_"},
		"unknown_tms":       {[]string{"LEDGERSYNC_TMS=brokermint"}, "LEDGERSYNC_TMS"},
		"document":          {[]string{"LEDGERSYNC_DOCUMENT=receipt"}, "LEDGERSYNC_DOCUMENT"},
		"agent_as":          {[]string{"LEDGERSYNC_AGENT_AS=employee"}, "LEDGERSYNC_AGENT_AS"},
		"payer":             {[]string{"LEDGERSYNC_PAYER= "}, "LEDGERSYNC_PAYER"},
		"bill":              {[]string{"LEDGERSYNC_BILL=maybe"}, `"Bill" of type "bool"`},
		"field":             {[]string{"LEDGERSYNC_COMMISSION_FIELD=Commission"}, "LEDGERSYNC_COMMISSION_FIELD"},
		"no_plans_file":     {[]string{"LEDGERSYNC_PLANS_FILE="}, "LEDGERSYNC_PLANS_FILE"},
		"bad_plans_file":    {[]string{"LEDGERSYNC_PLANS_FILE=" + filepath.Join(dir, "missing.yaml")}, "LEDGERSYNC_PLANS_FILE"},
		"agent_plan_absent": {[]string{"LEDGERSYNC_PLANS_FILE=" + otherPlans}, `names plan "gold"`},
		"no_agents_file":    {[]string{"LEDGERSYNC_AGENTS_FILE="}, "LEDGERSYNC_AGENTS_FILE"},
		"cdc_interval":      {[]string{"LEDGERSYNC_QUICKBOOKS_CDC_INTERVAL=-1m"}, "LEDGERSYNC_QUICKBOOKS_CDC_INTERVAL"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := ledgersync.ConfigFromEnv(append(append([]string{}, base...), tc.set...))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %s", err, tc.want)
			}
		})
	}
}
