package tmssync_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/services/tms-sync/tmssync"
)

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	agentsFile := filepath.Join(dir, "agents.yaml")
	if err := os.WriteFile(agentsFile, []byte("agents:\n  - {id: ada, name: Ada, dotloop_profile_id: '4711', default: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badAgents := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badAgents, []byte("agents:\n  - {id: Ada, name: Ada}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dotloop := []string{"TMSSYNC_TMS=dotloop", "TMSSYNC_DOTLOOP_CLIENT_ID=c", "TMSSYNC_DOTLOOP_CLIENT_SECRET=s"}
	skyslope := []string{"TMSSYNC_TMS=skyslope", "TMSSYNC_SKYSLOPE_CLIENT_ID=c", "TMSSYNC_SKYSLOPE_ACCESS_KEY=k", "TMSSYNC_SKYSLOPE_ACCESS_SECRET=s",
		"TMSSYNC_SKYSLOPE_FILES_CLIENT_ID=fc", "TMSSYNC_SKYSLOPE_FILES_CLIENT_SECRET=fs"}
	for _, c := range []struct {
		name string
		env  []string
		want string // "" for valid
	}{
		{"off_by_default", nil, ""},
		{"dotloop", append(dotloop, "TMSSYNC_AGENTS_FILE="+agentsFile), ""},
		{"skyslope", append(skyslope, "TMSSYNC_AGENTS_FILE="+agentsFile), ""},
		{"skyslope_no_files_keys", []string{"TMSSYNC_TMS=skyslope", "TMSSYNC_SKYSLOPE_CLIENT_ID=c", "TMSSYNC_AGENTS_FILE=" + agentsFile}, "TMSSYNC_SKYSLOPE_ACCESS_KEY"},
		{"skyslope_no_client", []string{"TMSSYNC_TMS=skyslope", "TMSSYNC_AGENTS_FILE=" + agentsFile}, "TMSSYNC_SKYSLOPE_CLIENT_ID"},
		{"unknown_tms", []string{"TMSSYNC_TMS=brokermint", "TMSSYNC_AGENTS_FILE=" + agentsFile}, "not one of"},
		{"no_agent_directory", dotloop, "TMSSYNC_AGENTS_FILE is required"},
		{"invalid_agent_directory", append(dotloop, "TMSSYNC_AGENTS_FILE="+badAgents), "id must match"},
		{"no_client", []string{"TMSSYNC_TMS=dotloop", "TMSSYNC_AGENTS_FILE=" + agentsFile}, "CLIENT_ID"},
		{"opening_type", append(dotloop, "TMSSYNC_AGENTS_FILE="+agentsFile, "TMSSYNC_OPENING_STAGES=Active Client:SOLD"), "TMSSYNC_OPENING_STAGES"},
		{"field_mapping", append(dotloop, "TMSSYNC_AGENTS_FILE="+agentsFile, "TMSSYNC_PRICE_FIELD=Price"), "TMSSYNC_PRICE_FIELD"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := tmssync.ConfigFromEnv(c.env)
			if c.want == "" {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if c.env == nil && cfg.Enabled() {
					t.Fatal("tms-sync on without TMSSYNC_TMS")
				}
				return
			}
			if !errors.Is(err, tmssync.ErrConfig) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one with %q", err, c.want)
			}
		})
	}
}

func TestParseMoney(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int64{"$525,000.00": 52_500_000, "525000": 52_500_000, "1,250.5": 125_050, "$0.07": 7, "15,750": 1_575_000} {
		if got, err := tmssync.ParseMoney(in); err != nil || got != want {
			t.Errorf("ParseMoney(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "abc", "1.234", "-5", "$1.2.3"} {
		if got, err := tmssync.ParseMoney(in); err == nil {
			t.Errorf("ParseMoney(%q) = %d, want an error", in, got)
		}
	}
}
