package crmsync_test

import (
	"context"
	"fmt"
	"net/http/httptest"
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

// testLead is one lead of a test person.
type testLead struct{ id, first, last, email, phone string }

func crmLeads(leads []testLead) []crmtest.TestLead {
	out := make([]crmtest.TestLead, len(leads))
	for i, l := range leads {
		out[i] = crmtest.TestLead{ID: l.id, First: l.first, Last: l.last, Email: l.email, Phone: l.phone}
	}
	return out
}

// burst is 500 leads: 400 people who write once, and 20 people who write
// five times each. Each repeat person's five leads sit together in the
// stream, so that they are handled at the same moment by both replicas'
// handlers: the case that makes two contacts when nothing prevents it.
func burst() (leads []testLead, people int) {
	for i := range 400 {
		e := fmt.Sprintf("once%03d", i)
		leads = append(leads, testLead{fmt.Sprintf("ld_once_%03d", i), "Pat", "Lead" + e, e + "@example.com", ""})
	}
	for p := range 20 {
		at := p*20 + 3
		var group []testLead
		for round := range 5 {
			e := fmt.Sprintf("repeat%02d", p)
			group = append(group, testLead{fmt.Sprintf("ld_rep_%02d_%d", p, round), "Pat", "Lead" + e, e + "@example.com", ""})
		}
		leads = append(leads[:at], append(group, leads[at:]...)...)
	}
	return leads, 420
}

type cluster struct {
	srv   *natstest.Server
	js    jetstream.JetStream
	sb    *sandbox.Sandbox
	cfg   crmsync.Config
	hooks *bus.TestHooks
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
			RetrySchedule: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second},
		},
	}
	cfg := crmsync.Config{
		IdentityPeppers: testPeppers,
		CRM:             crm,
		FUB: followupboss.Config{
			BaseURL: hs.URL + "/fub", APIKey: sandbox.DefaultFUBAPIKey,
			System: sandbox.DefaultFUBSystem, SystemKey: sandbox.DefaultFUBSystemKey, Timeout: 3 * time.Second,
			RateLimit: 1_000_000, RateWindow: 10 * time.Second,
		},
		LionDesk: liondesk.Config{
			BaseURL: hs.URL + "/liondesk", AccessToken: sandbox.DefaultLionDeskToken, Timeout: 3 * time.Second,
			RateLimit: 1_000_000, RateWindow: 10 * time.Second,
		},
		// A call's window is then 11 s: a lead whose delivery was killed
		// mid-call is asked about after that, within the retry schedule.
		IdentityVisibleAfter: 3 * time.Second,
		Concurrency:          8,
		ShutdownTimeout:      5 * time.Second,
		Bus:                  topo.ConsumeConfig,
	}
	natstest.Apply(t, js, topo.Topology())
	return &cluster{srv: srv, js: js, sb: sb, cfg: cfg, hooks: &bus.TestHooks{}}
}

// start runs n replicas and waits for their consumer.
func (c *cluster) start(t *testing.T, n int) {
	t.Helper()
	for range n {
		c.replica(t)
	}
	natstest.WaitConsumer(t, c.js, bus.StreamLeads, "crm-sync")
}

// replica starts one crm-sync instance on its own connection. kill closes
// the connection under it, as a crashed process would leave it.
func (c *cluster) replica(t *testing.T) (kill func()) {
	t.Helper()
	nc, err := nats.Connect(c.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	s, err := crmsync.New(c.cfg, service.Deps{NATS: nc, Hooks: c.hooks})
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

func (c *cluster) publish(t *testing.T, leads []testLead) {
	t.Helper()
	pub := bus.NewPublisher(c.js, "normalizer", nil)
	ctx := natstest.Context(t, time.Minute)
	for _, l := range leads {
		lead := crmtest.Lead(l.id, l.first, l.last, l.email, l.phone)
		if _, err := pub.Publish(ctx, "lead.normalized.idx", "lead.normalized:"+l.id, lead); err != nil {
			t.Fatal(err)
		}
	}
}

// waitSynced waits until every lead is announced, however loaded the
// machine, then for the consumer to settle.
func (c *cluster) waitSynced(t *testing.T, leads []testLead) {
	t.Helper()
	natstest.Eventually(t, 3*time.Minute, "every lead synced", func() bool {
		return natstest.Count(t, c.js, bus.StreamCRM, crmsync.SubjectContactSynced) >= uint64(len(leads))
	})
	natstest.WaitCaughtUp(t, c.js, bus.StreamLeads, "crm-sync")
}

// contacts returns the CRM's contacts, with their activities.
func (c *cluster) contacts() []crmtest.Contact { return crmtest.Contacts(c.sb, c.cfg.CRM) }

// activities counts the lead activities in the CRM.
func (c *cluster) activities() int {
	n := 0
	for _, ct := range c.contacts() {
		n += ct.Activities
	}
	return n
}

// assertOnePerPerson checks the CRM's end state (crmtest.AssertOnePerPerson),
// that every lead was announced once, and that no call was refused.
func (c *cluster) assertOnePerPerson(t *testing.T, leads []testLead, linked bool) {
	t.Helper()
	crmtest.AssertOnePerPerson(t, c.contacts(), crmLeads(leads), linked)
	if n := natstest.Count(t, c.js, bus.StreamCRM, crmsync.SubjectContactSynced); n != uint64(len(leads)) {
		t.Errorf("%d crm.contact.synced, want %d: a lead was lost or announced twice", n, len(leads))
	}
	if n := crmtest.Refused(c.sb, c.cfg.CRM); n != 0 {
		t.Errorf("the CRM refused %d calls with 429", n)
	}
}

func TestSyncer_burstAcrossTwoReplicasMakesOneContactPerPerson(t *testing.T) {
	t.Parallel()
	for _, crm := range []string{"followupboss", "liondesk"} {
		t.Run(crm, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, crm)
			c.start(t, 2)
			leads, people := burst()
			c.publish(t, leads)
			c.waitSynced(t, leads)
			if n := len(c.contacts()); n != people {
				t.Errorf("%d contacts for %d people", n, people)
			}
			c.assertOnePerPerson(t, leads, false)
		})
	}
}

// A replica killed mid-burst and restarted: no lead is lost, and none is
// recorded twice, though some were killed between their CRM call and their
// outcome record.
func TestSyncer_burstSurvivesAReplicaKilledMidway(t *testing.T) {
	t.Parallel()
	for _, crm := range []string{"followupboss", "liondesk"} {
		t.Run(crm, func(t *testing.T) {
			t.Parallel()
			c := newCluster(t, crm)
			kill := c.replica(t)
			c.start(t, 1)
			leads, _ := burst()
			c.publish(t, leads)
			natstest.Eventually(t, time.Minute, "a third of the burst synced", func() bool {
				return c.activities() >= len(leads)/3
			})
			kill()
			c.replica(t) // the killed replica restarts
			c.waitSynced(t, leads)
			c.assertOnePerPerson(t, leads, false)
		})
	}
}
