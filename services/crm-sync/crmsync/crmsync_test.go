package crmsync_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// testPeppers key the identity records in tests.
var testPeppers = []string{"test-pepper-0123456789abcdef"}

const testPepperEnv = "CRMSYNC_IDENTITY_PEPPER=test-pepper-0123456789abcdef"

type env struct {
	js    jetstream.JetStream
	fub   *sandbox.FUB
	pub   *bus.Publisher
	hooks *bus.TestHooks
}

func setup(t *testing.T) *env {
	t.Helper()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	fub, fcfg := crmtest.FollowUpBoss(t)
	cfg := crmsync.Config{
		IdentityPeppers: testPeppers,
		CRM:             "followupboss",
		FUB:             fcfg,
		Concurrency:     2,
		ShutdownTimeout: 5 * time.Second,
		Bus: service.ConsumeConfig{
			RetrySchedule: []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond},
		},
	}
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: time.Second, ConsumeConfig: cfg.Bus}.Topology())
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	hooks := &bus.TestHooks{}
	syncer, err := crmsync.New(cfg, service.Deps{NATS: nc, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, syncer.Run)
	natstest.WaitConsumer(t, js, bus.StreamLeads, "crm-sync")
	return &env{js: js, fub: fub, pub: bus.NewPublisher(js, "normalizer", nil), hooks: hooks}
}

func (e *env) lead(t *testing.T, id, email string) uint64 {
	t.Helper()
	l := crmtest.Lead(id, "Ada", "Lovelace", email, "")
	ack, err := e.pub.Publish(natstest.Context(t, 10*time.Second), "lead.normalized.idx", "lead.normalized:"+id, l)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// settle waits until crm-sync has acknowledged every lead published so far
// (only leads are published to LEADS here).
func (e *env) settle(t *testing.T) { natstest.WaitCaughtUp(t, e.js, bus.StreamLeads, "crm-sync") }

func (e *env) synced(t *testing.T) []*crmv1.ContactSynced {
	t.Helper()
	return readAll[*crmv1.ContactSynced](t, e.js, bus.StreamCRM, crmsync.SubjectContactSynced, func() *crmv1.ContactSynced { return &crmv1.ContactSynced{} })
}

func (e *env) failures(t *testing.T) []*opsv1.Failure {
	t.Helper()
	return readAll[*opsv1.Failure](t, e.js, bus.StreamOps, bus.FailureSubject(bus.ServiceCRMSync), func() *opsv1.Failure { return &opsv1.Failure{} })
}

// readAll decodes every message on subject in stream, oldest first.
func readAll[M proto.Message](t *testing.T, js jetstream.JetStream, stream, subject string, fresh func() M) []M {
	t.Helper()
	var out []M
	for _, m := range natstest.All(t, js, stream, subject) {
		v := fresh()
		if err := proto.Unmarshal(m.Data(), v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func TestSyncer_newLeadBecomesOneContact(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.lead(t, "ld_new", "ada@example.com")
	e.settle(t)
	if p, ev := len(e.fub.People()), len(e.fub.Events()); p != 1 || ev != 1 {
		t.Fatalf("%d people and %d events, want 1 and 1", p, ev)
	}
	s := e.synced(t)
	if len(s) != 1 || s[0].GetOutcome() != crmv1.SyncOutcome_SYNC_OUTCOME_CREATED || s[0].GetContactId() == "" ||
		s[0].GetLeadId() != "ld_new" || s[0].GetCrm() != "followupboss" || s[0].GetCorrelation().GetContactId() != s[0].GetContactId() {
		t.Fatalf("synced = %v", s)
	}
}

func TestSyncer_repeatVisitorBecomesAnEventOnTheSameContact(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.lead(t, "ld_first", "ada@example.com")
	e.settle(t)
	e.lead(t, "ld_again", "ada@example.com")
	e.settle(t)
	people, events := e.fub.People(), e.fub.Events()
	if len(people) != 1 || len(events) != 2 || events[1].PersonID != people[0].ID {
		t.Fatalf("%d people, events %+v; want one person with both events", len(people), events)
	}
	s := e.synced(t)
	if len(s) != 2 || s[1].GetOutcome() != crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING || s[1].GetMatchedBy() != "email" || s[1].GetContactId() != s[0].GetContactId() {
		t.Fatalf("synced = %v", s)
	}
}

func TestSyncer_redeliveryAfterACrashHasNoSecondEffect(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.hooks.SkipNextAcks(1)
	e.lead(t, "ld_crash", "ada@example.com")
	natstest.Eventually(t, 30*time.Second, "the redelivery", func() bool {
		c, err := e.js.Consumer(context.Background(), bus.StreamLeads, "crm-sync")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.Delivered.Consumer >= 2 && info.NumAckPending == 0
	})
	e.settle(t)
	if p, ev := len(e.fub.People()), len(e.fub.Events()); p != 1 || ev != 1 {
		t.Fatalf("%d people and %d events after a redelivery, want 1 and 1", p, ev)
	}
	if s := e.synced(t); len(s) != 1 {
		t.Fatalf("%d synced events, want 1", len(s))
	}
}

func TestSyncer_serverErrorsAreRetriedUntilTheLeadArrives(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 500, Count: 3})
	e.lead(t, "ld_flaky", "ada@example.com")
	natstest.Eventually(t, 30*time.Second, "the lead in the CRM", func() bool { return len(e.fub.People()) == 1 })
	e.settle(t)
	if ev := len(e.fub.Events()); ev != 1 {
		t.Fatalf("%d events, want 1", ev)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("retried errors wrote %d failure records", len(f))
	}
}

func TestSyncer_badRequestIsOneFailureAndRedriveSucceedsOnceFixed(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 400, Count: 1, Body: `{"errorMessage":"Invalid person"}`})
	seq := e.lead(t, "ld_bad", "ada@example.com")
	natstest.Eventually(t, 30*time.Second, "a failure record", func() bool { return len(e.failures(t)) == 1 })
	e.settle(t)
	f := e.failures(t)
	if len(f) != 1 || f[0].GetClass() != opsv1.ErrorClass_ERROR_CLASS_PERMANENT || f[0].GetMessage().GetSequence() != seq || len(e.fub.People()) != 0 {
		t.Fatalf("failures %v, people %d", f, len(e.fub.People()))
	}
	// The cause is gone (the fault was spent); an operator redrives.
	if _, err := bus.RequestRedrive(natstest.Context(t, 10*time.Second), e.pub, bus.ServiceCRMSync, bus.StreamLeads, seq, "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the redriven lead in the CRM", func() bool { return len(e.fub.People()) == 1 })
	natstest.WaitSettled(t, e.js, bus.StreamOps, bus.RedriveConsumer(bus.ServiceCRMSync).Durable)
	if len(e.failures(t)) != 1 || len(e.synced(t)) != 1 {
		t.Fatalf("after redrive: %d failures, %d synced", len(e.failures(t)), len(e.synced(t)))
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	if _, err := crmsync.ConfigFromEnv(nil); err == nil {
		t.Fatal("a missing API key must be an error")
	}
	cfg, err := crmsync.ConfigFromEnv([]string{testPepperEnv, "CRMSYNC_FUB_API_KEY=k"})
	if err != nil || cfg.FUB.BaseURL != "https://api.followupboss.com" || cfg.FUB.System != "brokerflow" {
		t.Fatalf("defaults = %+v, %v", cfg, err)
	}
	if _, err := crmsync.ConfigFromEnv([]string{testPepperEnv, "CRMSYNC_FUB_API_KEY=k", "CRMSYNC_CRM=salesforce"}); err == nil {
		t.Fatal("an unknown CRM must be an error")
	}
	if _, err := crmsync.ConfigFromEnv([]string{"CRMSYNC_FUB_API_KEY=k"}); err == nil || !strings.Contains(err.Error(), "CRMSYNC_IDENTITY_PEPPER") {
		t.Fatalf("a missing pepper must be an error naming its setting, got %v", err)
	}
	if _, err := crmsync.ConfigFromEnv([]string{"CRMSYNC_FUB_API_KEY=k", "CRMSYNC_IDENTITY_PEPPER=short"}); err == nil {
		t.Fatal("a short pepper must be an error")
	}
	file := filepath.Join(t.TempDir(), "pepper")
	if err := os.WriteFile(file, []byte("new-pepper-0123456789abcdef\nold-pepper-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = crmsync.ConfigFromEnv([]string{"CRMSYNC_FUB_API_KEY=k", "CRMSYNC_IDENTITY_PEPPER_FILE=" + file})
	if err != nil || !slices.Equal(cfg.IdentityPeppers, []string{"new-pepper-0123456789abcdef", "old-pepper-0123456789abcdef"}) {
		t.Fatalf("peppers from a file (current, then previous) = %q, %v", cfg.IdentityPeppers, err)
	}
}

// Follow Up Boss hides a new person from search and GET until agent
// assignment completes. A second lead for the person in that time must
// still land on the same contact, and the change feed's read of the person
// is retried, not lost.
func TestSyncer_personNotYetReachableStillGetsTheSecondLead(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.fub.SetAssignmentDelay(time.Hour)
	e.lead(t, "ld_race_1", "ada@example.com")
	e.lead(t, "ld_race_2", "ada@example.com")
	e.settle(t)
	people, events := e.fub.People(), e.fub.Events()
	if len(people) != 1 || len(events) != 2 || events[0].PersonID != events[1].PersonID {
		t.Fatalf("%d people, events %+v; want both leads on one person", len(people), events)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("%d failure records", len(f))
	}
}

func TestSyncer_handlerWorksBeforeRun(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	fub, fcfg := crmtest.FollowUpBoss(t)
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: time.Second}.Topology())
	syncer, err := crmsync.New(crmsync.Config{CRM: "followupboss", FUB: fcfg, Concurrency: 1, IdentityPeppers: testPeppers}, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	l := crmtest.Lead("ld_direct", "Ada", "Lovelace", "ada@example.com", "")
	data, err := proto.Marshal(l)
	if err != nil {
		t.Fatal(err)
	}
	m := &bus.Message{Subject: "lead.normalized.idx", Data: data, Stream: bus.StreamLeads, Sequence: 1, Attempt: 1}
	if err := syncer.HandleLead(natstest.Context(t, 30*time.Second), m); err != nil {
		t.Fatalf("HandleLead before Run: %v", err)
	}
	if p := len(fub.People()); p != 1 {
		t.Fatalf("%d people, want 1", p)
	}
}
