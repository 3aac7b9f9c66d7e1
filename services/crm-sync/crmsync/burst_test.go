package crmsync_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/crm/liondesk"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// burst is 500 leads: 400 people who write once, and 20 people who write
// five times each. Each repeat person's five leads sit together in the
// stream, so that they are handled at the same moment by both replicas'
// handlers: the case that makes two contacts when nothing prevents it.
func burst() (leads []struct{ id, email string }, people int) {
	for i := range 400 {
		leads = append(leads, struct{ id, email string }{fmt.Sprintf("ld_once_%03d", i), fmt.Sprintf("once%03d@example.com", i)})
	}
	for p := range 20 {
		at := p*20 + 3
		var group []struct{ id, email string }
		for round := range 5 {
			group = append(group, struct{ id, email string }{fmt.Sprintf("ld_rep_%02d_%d", p, round), fmt.Sprintf("repeat%02d@example.com", p)})
		}
		leads = append(leads[:at], append(group, leads[at:]...)...)
	}
	return leads, 420
}

type cluster struct {
	srv *natstest.Server
	js  jetstream.JetStream
	sb  *sandbox.Sandbox
	cfg crmsync.Config
}

// newCluster runs crm-sync replicas against crm in the sandbox. Follow Up
// Boss dedups by email itself; LionDesk does not, so there only
// Brokerflow's own identity records stand between a burst and duplicates.
func newCluster(t *testing.T, crm string) *cluster {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	// The documented quota would make this test a pacing test; here it is
	// about identity, so the account's limit is raised.
	sb := sandbox.New(sandbox.Options{
		FUB:      sandbox.FUBOptions{GlobalLimit: 1_000_000, UnregisteredLimit: 1_000_000},
		LionDesk: sandbox.LionDeskOptions{Limit: 1_000_000},
	})
	hs := httptest.NewServer(sb.Handler())
	t.Cleanup(hs.Close)
	topo := service.TopologyConfig{
		Replicas: 1, DuplicateWindow: time.Hour, AckWait: 2 * time.Second,
		ConsumeConfig: service.ConsumeConfig{
			RetrySchedule: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, time.Second, 2 * time.Second},
		},
	}
	cfg := crmsync.Config{
		CRM: crm,
		FUB: followupboss.Config{
			BaseURL: hs.URL + "/fub", APIKey: sandbox.DefaultFUBAPIKey,
			System: sandbox.DefaultFUBSystem, SystemKey: sandbox.DefaultFUBSystemKey, Timeout: 10 * time.Second,
			RateLimit: 1_000_000, RateWindow: 10 * time.Second,
		},
		LionDesk: liondesk.Config{
			BaseURL: hs.URL + "/liondesk", AccessToken: sandbox.DefaultLionDeskToken, Timeout: 10 * time.Second,
			RateLimit: 1_000_000, RateWindow: 10 * time.Second,
		},
		Concurrency:     8,
		ShutdownTimeout: 5 * time.Second,
		Bus:             topo.ConsumeConfig,
	}
	natstest.Apply(t, js, topo.Topology())
	return &cluster{srv: srv, js: js, sb: sb, cfg: cfg}
}

// replica starts one crm-sync instance on its own connection. kill closes
// the connection under it, as a crashed process would leave it.
func (c *cluster) replica(t *testing.T) (kill func()) {
	t.Helper()
	nc, err := nats.Connect(c.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	s, err := crmsync.New(c.cfg, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	var once sync.Once
	kill = func() {
		once.Do(func() {
			nc.Close()
			cancel()
			<-done
		})
	}
	t.Cleanup(kill)
	return kill
}

func (c *cluster) publish(t *testing.T, leads []struct{ id, email string }) {
	t.Helper()
	pub := bus.NewPublisher(c.js, "normalizer", nil)
	ctx := natstest.Context(t, time.Minute)
	for _, l := range leads {
		lead := crmtest.Lead(l.id, "Pat", "Lead"+strings.TrimSuffix(l.email, "@example.com"), l.email, "")
		if _, err := pub.Publish(ctx, "lead.normalized.idx", "lead.normalized:"+l.id, lead); err != nil {
			t.Fatal(err)
		}
	}
}

// crmState is the CRM's contacts' emails and its activities (Follow Up
// Boss events, LionDesk notes).
func (c *cluster) crmState() (emails []string, activities int) {
	if c.cfg.CRM == "liondesk" {
		for _, ct := range c.sb.LionDesk().Contacts() {
			emails = append(emails, ct.Email)
		}
		return emails, len(c.sb.LionDesk().Notes())
	}
	for _, p := range c.sb.FUB().People() {
		for _, e := range p.Emails {
			emails = append(emails, e.Value)
		}
	}
	return emails, len(c.sb.FUB().Events())
}

// assertOneContactPerPerson checks the CRM's end state.
func (c *cluster) assertOneContactPerPerson(t *testing.T, people, leads int, exactActivities bool) {
	t.Helper()
	emails, activities := c.crmState()
	byEmail := map[string]int{}
	for _, e := range emails {
		byEmail[e]++
	}
	if len(emails) != people {
		t.Errorf("%d contacts, want exactly %d (one per person)", len(emails), people)
	}
	for email, n := range byEmail {
		if n != 1 {
			t.Errorf("%s is on %d contacts", email, n)
		}
	}
	if activities < leads || (exactActivities && activities != leads) {
		t.Errorf("%d activities for %d leads", activities, leads)
	}
	if n := natstest.Count(t, c.js, bus.StreamCRM, crmsync.SubjectContactSynced); n != uint64(leads) {
		t.Errorf("%d crm.contact.synced, want %d: a lead was lost or announced twice", n, leads)
	}
}

func TestSyncer_burstAcrossTwoReplicasMakesOneContactPerPerson(t *testing.T) {
	t.Parallel()
	for _, crm := range []string{"followupboss", "liondesk"} {
		t.Run(crm, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, crm)
			c.replica(t)
			c.replica(t)
			natstest.WaitConsumer(t, c.js, bus.StreamLeads, "crm-sync")
			leads, people := burst()
			c.publish(t, leads)
			natstest.WaitSettled(t, c.js, bus.StreamLeads, "crm-sync")
			c.assertOneContactPerPerson(t, people, len(leads), true)
		})
	}
}

func TestSyncer_burstSurvivesAReplicaKilledMidway(t *testing.T) {
	t.Parallel()
	for _, crm := range []string{"followupboss", "liondesk"} {
		t.Run(crm, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, crm)
			kill := c.replica(t)
			c.replica(t)
			natstest.WaitConsumer(t, c.js, bus.StreamLeads, "crm-sync")
			leads, people := burst()
			c.publish(t, leads)
			natstest.Eventually(t, time.Minute, "a third of the burst synced", func() bool {
				_, n := c.crmState()
				return n >= len(leads)/3
			})
			kill()
			c.replica(t) // the killed replica restarts
			natstest.WaitSettled(t, c.js, bus.StreamLeads, "crm-sync")
			// A lead recorded in the CRM just before the kill, and not yet
			// acknowledged, is recorded again on the same contact after the
			// restart: an extra activity at most, never an extra contact.
			c.assertOneContactPerPerson(t, people, len(leads), false)
		})
	}
}
