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
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync/crmtest"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// burst is 500 leads: 400 people who write once, and 20 people who write
// five times each, shuffled together so the repeat leads arrive at the
// same moment on different replicas.
func burst() (leads []struct{ id, email string }, people int) {
	for i := range 400 {
		leads = append(leads, struct{ id, email string }{fmt.Sprintf("ld_once_%03d", i), fmt.Sprintf("once%03d@example.com", i)})
	}
	for round := range 5 {
		for p := range 20 {
			at := (p*20 + round*80 + 7) % (len(leads) + 1)
			l := struct{ id, email string }{fmt.Sprintf("ld_rep_%02d_%d", p, round), fmt.Sprintf("repeat%02d@example.com", p)}
			leads = append(leads[:at], append([]struct{ id, email string }{l}, leads[at:]...)...)
		}
	}
	return leads, 420
}

type cluster struct {
	srv *natstest.Server
	js  jetstream.JetStream
	fub *sandbox.FUB
	cfg crmsync.Config
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	// The documented quota would make this test a pacing test; here it is
	// about identity, so the account's limit is raised.
	sb := sandbox.New(sandbox.Options{FUB: sandbox.FUBOptions{GlobalLimit: 1_000_000, UnregisteredLimit: 1_000_000}})
	hs := httptest.NewServer(sb.Handler())
	t.Cleanup(hs.Close)
	cfg := crmsync.Config{
		CRM: "followupboss",
		FUB: crmsync.FUBConfig{
			BaseURL: hs.URL + "/fub", APIKey: sandbox.DefaultFUBAPIKey,
			System: sandbox.DefaultFUBSystem, SystemKey: sandbox.DefaultFUBSystemKey, Timeout: 10 * time.Second,
		},
		Concurrency:     8,
		ShutdownTimeout: 5 * time.Second,
		Bus: service.TopologyConfig{
			Replicas: 1, DuplicateWindow: time.Hour, AckWait: 2 * time.Second,
			RetrySchedule: []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, time.Second, 2 * time.Second},
		},
	}
	return &cluster{srv: srv, js: js, fub: sb.FUB(), cfg: cfg}
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

// assertOneContactPerPerson checks the CRM's end state.
func (c *cluster) assertOneContactPerPerson(t *testing.T, people, leads int, exactEvents bool) {
	t.Helper()
	byEmail := map[string]int{}
	for _, p := range c.fub.People() {
		for _, e := range p.Emails {
			byEmail[e.Value]++
		}
	}
	if len(c.fub.People()) != people {
		t.Errorf("%d contacts, want exactly %d (one per person)", len(c.fub.People()), people)
	}
	for email, n := range byEmail {
		if n != 1 {
			t.Errorf("%s is on %d contacts", email, n)
		}
	}
	events := len(c.fub.Events())
	if events < leads || (exactEvents && events != leads) {
		t.Errorf("%d events for %d leads", events, leads)
	}
	if n := natstest.Count(t, c.js, bus.StreamCRM, crmsync.SubjectContactSynced); n != uint64(leads) {
		t.Errorf("%d crm.contact.synced, want %d: a lead was lost or announced twice", n, leads)
	}
}

func TestSyncer_burstAcrossTwoReplicasMakesOneContactPerPerson(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	c.replica(t)
	c.replica(t)
	natstest.WaitConsumer(t, c.js, bus.StreamLeads, "crm-sync")
	leads, people := burst()
	c.publish(t, leads)
	natstest.WaitSettled(t, c.js, bus.StreamLeads, "crm-sync")
	c.assertOneContactPerPerson(t, people, len(leads), true)
}

func TestSyncer_burstSurvivesAReplicaKilledMidway(t *testing.T) {
	t.Parallel()
	c := newCluster(t)
	kill := c.replica(t)
	c.replica(t)
	natstest.WaitConsumer(t, c.js, bus.StreamLeads, "crm-sync")
	leads, people := burst()
	c.publish(t, leads)
	natstest.Eventually(t, time.Minute, "a third of the burst synced", func() bool { return len(c.fub.Events()) >= len(leads)/3 })
	kill()
	c.replica(t) // the killed replica restarts
	natstest.WaitSettled(t, c.js, bus.StreamLeads, "crm-sync")
	// A lead recorded in the CRM just before the kill, and not yet
	// acknowledged, is recorded again on the same contact after the
	// restart: an extra event at most, never an extra contact.
	c.assertOneContactPerPerson(t, people, len(leads), false)
}
