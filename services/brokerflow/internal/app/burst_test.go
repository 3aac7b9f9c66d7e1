package app_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// burstLeads is 500 website leads: 400 people who write once, and 20 who
// write five times each, their five leads posted together.
func burstLeads() (bodies []string, people int) {
	lead := func(name, email string) string {
		return fmt.Sprintf(`{"type":"lead.created","data":{"name":%q,"email":%q,"inquiry_type":"buy"}}`, name, email)
	}
	for i := range 400 {
		bodies = append(bodies, lead(fmt.Sprintf("Once Lead%03d", i), fmt.Sprintf("once%03d@burst.example", i)))
	}
	for p := range 20 {
		at := p*20 + 3
		group := make([]string, 5)
		for r := range group {
			group[r] = lead(fmt.Sprintf("Repeat Lead%02d", p), fmt.Sprintf("repeat%02d@burst.example", p))
		}
		bodies = append(bodies[:at], append(group, bodies[at:]...)...)
	}
	return bodies, 420
}

// replica starts another crm-sync instance beside the all-in-one's, on
// its own connection, against the same Follow Up Boss account. kill closes
// its connection under it, as a crashed process would.
func replica(t *testing.T, s *system) (kill func()) {
	t.Helper()
	opts, err := s.ConnectOptions(bus.ServiceCRMSync)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.NATSURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	cfg := crmsync.Config{
		CRM: "followupboss",
		FUB: followupboss.Config{
			BaseURL: s.SandboxURL + "/fub", APIKey: sandbox.DefaultFUBAPIKey,
			System: sandbox.DefaultFUBSystem, SystemKey: sandbox.DefaultFUBSystemKey, Timeout: 10 * time.Second,
		},
		Concurrency:     4,
		ShutdownTimeout: 5 * time.Second,
		Bus: service.ConsumeConfig{
			RetrySchedule: []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond}},
	}
	syncer, err := crmsync.New(cfg, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = syncer.Run(ctx) }()
	var once sync.Once
	kill = func() { once.Do(func() { nc.Close(); cancel(); <-done }) }
	t.Cleanup(kill)
	return kill
}

// postAll posts every body as a signed website lead, 16 at a time.
func postAll(t *testing.T, s *system, bodies []string) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, body := range bodies {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if code, answer := postSigned(t, s.WebhookURL+"/webhooks/idx", app.DevIDXSecret, fmt.Sprintf("msg_burst_%03d", i), time.Now(), body); code != http.StatusAccepted {
				t.Errorf("lead %d: %d %s", i, code, answer)
			}
		}()
	}
	wg.Wait()
}

// assertOneContactPerPerson checks the sandbox's Follow Up Boss.
func assertOneContactPerPerson(t *testing.T, s *system, people, leads int, exactEvents bool) {
	t.Helper()
	fub := s.Sandbox.FUB()
	byEmail := map[string]int{}
	for _, p := range fub.People() {
		for _, e := range p.Emails {
			byEmail[e.Value]++
		}
	}
	if n := len(fub.People()); n != people {
		t.Errorf("%d contacts, want %d", n, people)
	}
	for email, n := range byEmail {
		if n != 1 {
			t.Errorf("%s is on %d contacts", email, n)
		}
	}
	if ev := len(fub.Events()); ev < leads || (exactEvents && ev != leads) {
		t.Errorf("%d events for %d leads", ev, leads)
	}
	if n := natstest.Count(t, s.js, bus.StreamCRM, crmsync.SubjectContactSynced); n != uint64(leads) {
		t.Errorf("%d crm.contact.synced for %d leads", n, leads)
	}
}

// burstSettings lift the gateway's per-source rate limit (tested on its
// own): the burst is meant to reach the stream at once. The ack wait is
// longer than the other tests' 1 s: handlers wait on the CRM's quota, and
// on a loaded 2-core machine a progress signal every third of a second can
// come late; a redelivery to the other replica while the first still works
// would record the lead's activity twice (the pending-outcome record that
// makes that harmless is not built yet: docs/architecture.md).
var burstSettings = []string{"GATEWAY_RATE_PER_SOURCE=0", "BROKERFLOW_BUS_ACK_WAIT=5s"}

// The whole path at the Follow Up Boss account's documented quota: 500
// signed webhooks, 100 of them for 20 people, through the gateway and the
// normalizer to two crm-sync instances sharing one account.
func TestSystem_burstThroughTwoCRMSyncReplicas(t *testing.T) {
	t.Parallel()
	s := start(t, burstSettings...)
	replica(t, s)
	bodies, people := burstLeads()
	postAll(t, s, bodies)
	natstest.Eventually(t, 3*time.Minute, "every lead in the CRM", func() bool { return len(s.Sandbox.FUB().Events()) >= len(bodies) })
	s.settle(t)
	assertOneContactPerPerson(t, s, people, len(bodies), true)
	if u := s.Sandbox.FUB().Usage(); u.Refused > 0 {
		t.Logf("the account refused %d calls with 429; they were retried", u.Refused)
	}
}

// The same, with the second instance killed mid-burst and restarted.
func TestSystem_burstSurvivesAKilledCRMSyncReplica(t *testing.T) {
	t.Parallel()
	s := start(t, burstSettings...)
	kill := replica(t, s)
	bodies, people := burstLeads()
	postAll(t, s, bodies)
	natstest.Eventually(t, 3*time.Minute, "a third of the burst in the CRM", func() bool { return len(s.Sandbox.FUB().Events()) >= len(bodies)/3 })
	kill()
	replica(t, s) // it restarts
	natstest.Eventually(t, 3*time.Minute, "every lead in the CRM", func() bool { return len(s.Sandbox.FUB().Events()) >= len(bodies) })
	s.settle(t)
	// A lead recorded just before the kill and not yet acknowledged is
	// recorded again on the same contact: an extra event at most.
	assertOneContactPerPerson(t, s, people, len(bodies), false)
}
