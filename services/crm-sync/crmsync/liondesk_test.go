package crmsync_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
)

func TestLionDesk_config(t *testing.T) {
	t.Parallel()
	if _, err := crmsync.ConfigFromEnv([]string{"CRMSYNC_CRM=liondesk"}); !errors.Is(err, crmsync.ErrConfig) || !strings.Contains(err.Error(), "CRMSYNC_LIONDESK_ACCESS_TOKEN") {
		t.Fatalf("a missing token: %v", err)
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := crmsync.ConfigFromEnv([]string{testPepperEnv, "CRMSYNC_CRM=liondesk", "CRMSYNC_LIONDESK_ACCESS_TOKEN_FILE=" + file})
	if err != nil || cfg.LionDesk.AccessToken != "from-file" || cfg.LionDesk.BaseURL != "https://api-v2.liondesk.com" || cfg.LionDesk.Timeout != 15*time.Second {
		t.Fatalf("config = %+v, %v", cfg.LionDesk, err)
	}
	crm, err := crmsync.NewCRM(cfg)
	if err != nil || crm.Name() != "liondesk" {
		t.Fatalf("NewCRM = %v, %v", crm, err)
	}
	if _, err := crmsync.ConfigFromEnv([]string{testPepperEnv, "CRMSYNC_CRM=liondesk", "CRMSYNC_LIONDESK_ACCESS_TOKEN=t", "CRMSYNC_LIONDESK_BASE_URL=/relative"}); err == nil {
		t.Fatal("a relative base URL must be an error")
	}
}

// TestLionDesk_syncerKeepsOneContactPerPerson runs crm-sync over a real
// JetStream against the sandbox's LionDesk, which would make a second
// contact for every create: Brokerflow's search is what prevents it.
func TestLionDesk_syncerKeepsOneContactPerPerson(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	ld, lcfg := crmtest.LionDesk(t)
	cfg := crmsync.Config{
		IdentityPeppers: testPeppers,
		CRM:             "liondesk", LionDesk: lcfg, Concurrency: 1, ShutdownTimeout: 5 * time.Second,
		Bus: service.ConsumeConfig{RetrySchedule: []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond}},
	}
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: time.Second, ConsumeConfig: cfg.Bus}.Topology())
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	syncer, err := crmsync.New(cfg, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, syncer.Run)
	natstest.WaitConsumer(t, js, bus.StreamLeads, "crm-sync")
	pub := bus.NewPublisher(js, "normalizer", nil)
	for _, id := range []string{"ld_one", "ld_two"} {
		l := crmtest.Lead(id, "Ada", "Lovelace", "ada@example.com", "+14155550134")
		if _, err := pub.Publish(natstest.Context(t, 10*time.Second), "lead.normalized.idx", "lead.normalized:"+id, l); err != nil {
			t.Fatal(err)
		}
		natstest.WaitCaughtUp(t, js, bus.StreamLeads, "crm-sync")
	}
	contacts, notes := ld.Contacts(), ld.Notes()
	if len(contacts) != 1 || len(notes) != 2 || notes[1].ContactID != contacts[0].ID || !strings.Contains(notes[1].Content, "ld_two") {
		t.Fatalf("%d contacts, notes %+v; want one contact with both leads as notes", len(contacts), notes)
	}
}
