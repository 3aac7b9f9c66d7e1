package crmsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

const changesDurable = "crm-sync-changes"

// changesEnv is crm-sync on an embedded JetStream, the sandbox's Follow Up
// Boss over HTTP, and a webhook endpoint standing in for the ingest-gateway:
// it checks FUB-Signature and persists each webhook as WebhookReceived on
// webhook.received.crm.followupboss with the gateway's Nats-Msg-Id.
type changesEnv struct {
	js    jetstream.JetStream
	fub   *sandbox.FUB
	base  string
	clock *sandbox.Clock
	hooks *bus.TestHooks
	gw    *bus.Publisher
	// reads counts the calls that read one person (GET /v1/people/{id}).
	reads atomic.Int64
	// held, while open, keeps the stand-in gateway from answering
	// webhooks: they wait until it is closed.
	held chan struct{}
	// holdEvent, per Follow Up Boss event name, keeps that event's
	// webhooks waiting until its channel is closed. Set before the first
	// webhook.
	holdEvent map[string]chan struct{}
	// refuseEvent, per Follow Up Boss event name, makes the stand-in
	// gateway answer that event's webhooks 503, every retry: the sandbox
	// gives up on them, as Follow Up Boss does after its last retry. Set
	// before the first webhook.
	refuseEvent map[string]bool
	// lists counts the reconcile polls' listings (GET /v1/people with
	// updatedAfter) answered.
	lists atomic.Int64
	// beforeAnswer, when set, runs with the body of a reconcile listing
	// (list) or of a person read, after it is computed and before it is
	// answered: a test holds an answer there, or lines up two.
	beforeAnswer atomic.Pointer[func(list bool, body []byte)]
	cfg          crmsync.Config
	nc           *nats.Conn
}

// setupChanges is crm-sync with webhooks only (the reconcile poll off).
func setupChanges(t *testing.T, schedule ...time.Duration) *changesEnv {
	t.Helper()
	return setupChangesWith(t, nil, schedule...)
}

// setupChangesWith is setupChanges with the env changed by with (nil for
// none) before the syncer starts: its cfg, refuseEvent, holdEvent.
func setupChangesWith(t *testing.T, with func(*changesEnv), schedule ...time.Duration) *changesEnv {
	t.Helper()
	if len(schedule) == 0 {
		schedule = []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond}
	}
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	clock := sandbox.NewClock(time.Now().UTC())
	sb := sandbox.New(sandbox.Options{Now: clock.Now, FUB: sandbox.FUBOptions{Webhooks: sandbox.FUBWebhookOptions{Backoff: 10 * time.Millisecond}}})
	e := &changesEnv{js: js, fub: sb.FUB(), clock: clock, hooks: &bus.TestHooks{}, gw: bus.NewPublisher(js, bus.ServiceGateway, nil)}
	personRead := regexp.MustCompile(`^/fub/v1/people/[^/]+$`)
	h := sb.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		read := r.Method == http.MethodGet && personRead.MatchString(r.URL.Path)
		list := r.Method == http.MethodGet && r.URL.Path == "/fub/v1/people" && r.URL.Query().Has("updatedAfter")
		if read {
			e.reads.Add(1)
		}
		fn := e.beforeAnswer.Load()
		if (!read && !list) || fn == nil {
			h.ServeHTTP(w, r)
			if list {
				e.lists.Add(1)
			}
			return
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		(*fn)(list, rec.Body.Bytes())
		maps.Copy(w.Header(), rec.Header())
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
		if list {
			e.lists.Add(1)
		}
	}))
	t.Cleanup(srv.Close)
	e.base = srv.URL + "/fub"

	gateway := httptest.NewServer(http.HandlerFunc(e.receive))
	t.Cleanup(gateway.Close)
	for _, ev := range []string{sandbox.FUBPeopleCreated, sandbox.FUBPeopleUpdated, sandbox.FUBPeopleStageUpdated} {
		if _, err := e.fub.RegisterWebhook(ev, gateway.URL+"/webhooks/followupboss"); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(sb.Close) // registered last: deliveries stop before the servers close

	cfg := crmsync.Config{
		IdentityPeppers: testPeppers,
		CRM:             "followupboss",
		FUB: followupboss.Config{
			BaseURL: e.base, APIKey: sandbox.DefaultFUBAPIKey, System: sandbox.DefaultFUBSystem,
			SystemKey: sandbox.DefaultFUBSystemKey, Timeout: 10 * time.Second,
		},
		ActiveStages:    []string{"Active Client", "Under Contract"},
		Concurrency:     4,
		ShutdownTimeout: 5 * time.Second,
		Bus:             service.ConsumeConfig{RetrySchedule: schedule},
	}
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: time.Second, ConsumeConfig: cfg.Bus}.Topology())
	e.cfg, e.nc = cfg, nc
	if with != nil {
		with(e)
	}
	e.replica(t)
	natstest.WaitConsumer(t, js, bus.StreamWebhooks, changesDurable)
	return e
}

// replica starts one more crm-sync on the env's JetStream and CRM.
func (e *changesEnv) replica(t *testing.T) {
	t.Helper()
	if err := e.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	syncer, err := crmsync.New(e.cfg, service.Deps{NATS: e.nc, Hooks: e.hooks})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, syncer.Run)
}

// receive is the stand-in gateway: verify, persist, then 2xx.
func (e *changesEnv) receive(w http.ResponseWriter, r *http.Request) {
	if e.held != nil {
		select {
		case <-e.held:
		case <-r.Context().Done():
			return
		}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil || r.Header.Get("FUB-Signature") != sandbox.SignFUBWebhook(sandbox.DefaultFUBSystemKey, body) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p struct {
		EventID string `json:"eventId"`
		Event   string `json:"event"`
	}
	_ = json.Unmarshal(body, &p)
	if e.refuseEvent[p.Event] {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if ch := e.holdEvent[p.Event]; ch != nil {
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
	}
	if _, err := e.webhook(r.Context(), "webhook:followupboss:"+p.EventID, p.EventID, body); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (e *changesEnv) webhook(ctx context.Context, msgID, deliveryID string, body []byte) (*jetstream.PubAck, error) {
	return e.gw.Publish(ctx, "webhook.received.crm.followupboss", msgID, &webhookv1.WebhookReceived{
		Body: body, Source: "followupboss", Kind: webhookv1.Kind_KIND_CRM, DeliveryId: deliveryID,
		ReceivedAt: timestamppb.Now(), Method: http.MethodPost, Path: "/webhooks/followupboss", ContentType: "application/json",
	})
}

// createPerson sends a lead to the sandbox as POST /v1/events, as the lead
// path does; Follow Up Boss then fires peopleCreated.
func (e *changesEnv) createPerson(t *testing.T, first, last, email string) int64 {
	t.Helper()
	body := fmt.Sprintf(`{"source":"idx","type":"Registration","person":{"firstName":%q,"lastName":%q,"emails":[{"value":%q}],"phones":[{"value":"(415) 555-0134"}]}}`, first, last, email)
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.base+"/v1/events", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(sandbox.DefaultFUBAPIKey, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		ID int64 `json:"id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create person: %d %v", resp.StatusCode, err)
	}
	return p.ID
}

// syncAda publishes Ada Lovelace's lead id as the normalizer would, and
// waits until crm-sync announces it, the first lead synced.
func (e *changesEnv) syncAda(t *testing.T, id string) {
	t.Helper()
	pub := bus.NewPublisher(e.js, "normalizer", nil)
	if _, err := pub.Publish(t.Context(), "lead.normalized.idx", "lead.normalized:"+id,
		crmtest.Lead(id, "Ada", "Lovelace", "ada@example.com", "+14155550134")); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the lead synced", func() bool {
		return natstest.Count(t, e.js, bus.StreamCRM, crmsync.SubjectContactSynced) == 1
	})
}

// settle waits until the sandbox has delivered n webhooks and crm-sync has
// handled everything in WEBHOOKS.
func (e *changesEnv) settle(t *testing.T, n int) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, fmt.Sprintf("%d webhooks delivered", n), func() bool {
		d := e.fub.WebhookDeliveries()
		return len(d) == n && !slices.ContainsFunc(d, func(d sandbox.FUBWebhookDelivery) bool { return d.State != sandbox.FUBDeliveryDelivered })
	})
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, changesDurable)
}

func (e *changesEnv) stageChanges(t *testing.T) []*crmv1.ContactStageChanged {
	t.Helper()
	return readAll(t, e.js, bus.StreamCRM, crmsync.SubjectContactStageChanged, func() *crmv1.ContactStageChanged { return &crmv1.ContactStageChanged{} })
}

func (e *changesEnv) updates(t *testing.T) []*crmv1.ContactUpdated {
	t.Helper()
	return readAll(t, e.js, bus.StreamCRM, crmsync.SubjectContactUpdated, func() *crmv1.ContactUpdated { return &crmv1.ContactUpdated{} })
}

func (e *changesEnv) failures(t *testing.T) []*opsv1.Failure {
	t.Helper()
	return readAll(t, e.js, bus.StreamOps, bus.FailureSubject(bus.ServiceCRMSync), func() *opsv1.Failure { return &opsv1.Failure{} })
}

func TestChanges_stageChangeIsOneEventWithOldAndNewStage(t *testing.T) {
	t.Parallel()
	e := setupChanges(t)
	id := e.createPerson(t, "Ada", "Lovelace", "ada@example.com")
	e.settle(t, 1) // peopleCreated: crm-sync now knows the person at stage Lead
	if n := len(e.stageChanges(t)) + len(e.updates(t)); n != 0 {
		t.Fatalf("a new person made %d change events", n)
	}

	if _, err := e.fub.SetStage(id, "Active Client"); err != nil {
		t.Fatal(err)
	}
	e.settle(t, 3) // peopleStageUpdated and peopleUpdated
	got := e.stageChanges(t)
	contact := fmt.Sprint(id)
	if len(got) != 1 {
		t.Fatalf("%d stage changes, want 1: %v", len(got), got)
	}
	sc := got[0]
	if sc.GetContactId() != contact || sc.GetCrm() != "followupboss" || sc.GetOldStage() != "Lead" || sc.GetNewStage() != "Active Client" ||
		!sc.GetActiveClient() || sc.GetFirstName() != "Ada" || sc.GetLastName() != "Lovelace" ||
		!slices.Equal(sc.GetEmails(), []string{"ada@example.com"}) || !slices.Equal(sc.GetPhones(), []string{"(415) 555-0134"}) ||
		sc.GetCorrelation().GetContactId() != contact || sc.GetCorrelation().GetSource() != "idx" || sc.GetCorrelation().GetLeadId() != "" ||
		sc.GetWebhook().GetStream() != bus.StreamWebhooks || sc.GetWebhook().GetSubject() != "webhook.received.crm.followupboss" ||
		sc.GetChangedAt() == nil || sc.GetCrmEventId() == "" {
		t.Fatalf("stage change = %v", sc)
	}
	if u := e.updates(t); len(u) != 0 {
		t.Fatalf("a stage change alone made %d updated events: %v", len(u), u)
	}
	msg := natstest.Last(t, e.js, bus.StreamCRM, crmsync.SubjectContactStageChanged)
	if id := msg.Header.Get("Nats-Msg-Id"); !strings.HasPrefix(id, "crm.contact.stage_changed:followupboss:"+contact+":") ||
		msg.Header.Get("ce-type") != "brokerflow.crm.v1.ContactStageChanged" || msg.Header.Get("ce-source") != bus.ServiceCRMSync {
		t.Fatalf("headers = %v", msg.Header)
	}

	// A stage outside the configured active ones.
	if _, err := e.fub.SetStage(id, "Closed"); err != nil {
		t.Fatal(err)
	}
	e.settle(t, 5)
	got = e.stageChanges(t)
	if len(got) != 2 || got[1].GetOldStage() != "Active Client" || got[1].GetNewStage() != "Closed" || got[1].GetActiveClient() {
		t.Fatalf("stage changes = %v", got)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures: %v", f)
	}
}

func TestChanges_nameChangeIsAnUpdateWithTheChangedFields(t *testing.T) {
	t.Parallel()
	e := setupChanges(t)
	id := e.createPerson(t, "Ada", "Lovelace", "ada@example.com")
	e.settle(t, 1)

	first, emails := "Augusta Ada", []sandbox.FUBValue{{Value: "ada@example.com"}, {Value: "countess@example.com"}}
	if _, err := e.fub.UpdatePerson(id, sandbox.FUBPersonUpdate{FirstName: &first, Emails: &emails}); err != nil {
		t.Fatal(err)
	}
	e.settle(t, 2) // peopleUpdated only
	u := e.updates(t)
	if len(u) != 1 {
		t.Fatalf("%d updates, want 1: %v", len(u), u)
	}
	want := []crmv1.ContactField{crmv1.ContactField_CONTACT_FIELD_NAME, crmv1.ContactField_CONTACT_FIELD_EMAILS}
	if !slices.Equal(u[0].GetChangedFields(), want) || u[0].GetFirstName() != "Augusta Ada" || u[0].GetStage() != "Lead" ||
		len(u[0].GetEmails()) != 2 || u[0].GetContactId() != fmt.Sprint(id) || u[0].GetUpdatedAt() == nil {
		t.Fatalf("update = %v", u[0])
	}
	if sc := e.stageChanges(t); len(sc) != 0 {
		t.Fatalf("a name change made stage changes: %v", sc)
	}
}

func TestChanges_redeliveredWebhookMakesNoSecondEvent(t *testing.T) {
	t.Parallel()
	e := setupChanges(t)
	id := e.createPerson(t, "Ada", "Lovelace", "ada@example.com")
	e.settle(t, 1)

	// crm-sync "crashes" after announcing the stage change, before the ack.
	e.hooks.SkipNextAcks(1)
	if _, err := e.fub.SetStage(id, "Under Contract"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the redelivery", func() bool {
		c, err := e.js.Consumer(context.Background(), bus.StreamWebhooks, changesDurable)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumRedelivered == 0 && info.Delivered.Consumer >= 4 && info.NumAckPending == 0
	})
	e.settle(t, 3)

	// Follow Up Boss retries a delivery after the gateway's duplicate window:
	// a new WEBHOOKS message with the same body.
	last := e.fub.WebhookDeliveries()[2]
	if _, err := e.webhook(t.Context(), "webhook:followupboss:late-retry", last.Payload.EventID, []byte(last.Body)); err != nil {
		t.Fatal(err)
	}
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, changesDurable)

	if sc := e.stageChanges(t); len(sc) != 1 || sc[0].GetNewStage() != "Under Contract" || !sc[0].GetActiveClient() {
		t.Fatalf("stage changes = %v", sc)
	}
	if u := e.updates(t); len(u) != 0 {
		t.Fatalf("updates = %v", u)
	}
}

func TestChanges_unknownEventsAreAcknowledged(t *testing.T) {
	t.Parallel()
	e := setupChanges(t)
	for i, body := range []string{
		`{"eventId":"n1","eventCreated":"2026-03-02T15:04:05+00:00","event":"notesCreated","resourceIds":[7],"uri":"https://api.followupboss.com/v1/notes?id=7"}`,
		`{"eventId":"d1","event":"peopleDeleted","resourceIds":[7]}`,
	} {
		if _, err := e.webhook(t.Context(), fmt.Sprintf("webhook:followupboss:u%d", i), "", []byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, changesDurable)
	if f, n := e.failures(t), len(e.stageChanges(t))+len(e.updates(t)); len(f) != 0 || n != 0 {
		t.Fatalf("%d failures and %d events for ignored webhooks", len(f), n)
	}
}

func TestChanges_malformedWebhookIsOnePermanentFailure(t *testing.T) {
	t.Parallel()
	e := setupChanges(t)
	ack, err := e.webhook(t.Context(), "webhook:followupboss:bad", "", []byte(`{"eventId":"b1","event":"peopleUpdated","resourceIds":["x"]}`))
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "a failure record", func() bool { return len(e.failures(t)) == 1 })
	f := e.failures(t)[0]
	if f.GetClass() != opsv1.ErrorClass_ERROR_CLASS_PERMANENT || f.GetConsumer() != changesDurable || f.GetMessage().GetSequence() != ack.Sequence || f.GetAttempts() != 1 {
		t.Fatalf("failure = %v", f)
	}
}

func TestChanges_personNotFoundIsRetriedThenRecorded(t *testing.T) {
	t.Parallel()
	e := setupChanges(t)
	ack, err := e.webhook(t.Context(), "webhook:followupboss:gone", "g1", []byte(`{"eventId":"g1","event":"peopleStageUpdated","resourceIds":[404]}`))
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "a failure record", func() bool { return len(e.failures(t)) == 1 })
	f := e.failures(t)[0]
	if f.GetClass() != opsv1.ErrorClass_ERROR_CLASS_TRANSIENT || f.GetAttempts() != 5 || f.GetMessage().GetSequence() != ack.Sequence ||
		!strings.Contains(f.GetReason(), "not found") {
		t.Fatalf("failure = %v", f)
	}
}

func TestChanges_assignmentDelayIsWaitedOut(t *testing.T) {
	t.Parallel()
	// Slow enough after the second delivery for the test to end the delay.
	e := setupChanges(t, 10*time.Millisecond, 2*time.Second, 2*time.Second, 2*time.Second)
	e.fub.SetAssignmentDelay(time.Hour)
	id := e.createPerson(t, "Ada", "Lovelace", "ada@example.com")
	natstest.Eventually(t, 30*time.Second, "a retried 404", func() bool {
		c, err := e.js.Consumer(context.Background(), bus.StreamWebhooks, changesDurable)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.Delivered.Consumer >= 2
	})
	e.clock.Advance(time.Hour) // agent assignment completes
	e.settle(t, 1)
	if _, err := e.fub.SetStage(id, "Active Client"); err != nil {
		t.Fatal(err)
	}
	e.settle(t, 3)
	if sc := e.stageChanges(t); len(sc) != 1 || sc[0].GetOldStage() != "Lead" {
		t.Fatalf("stage changes = %v", sc)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures = %v", f)
	}
}

func TestChanges_firstSightOfAnActiveClient(t *testing.T) {
	t.Parallel()
	e := setupChanges(t)
	id := e.createPerson(t, "Ada", "Lovelace", "ada@example.com")
	e.settle(t, 1)
	// crm-sync loses what it knew (as if the webhooks were registered after
	// the person was made); the person then becomes an active client.
	kv, err := e.js.KeyValue(t.Context(), "crm_contacts")
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(t.Context(), fmt.Sprintf("followupboss.%d", id)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fub.SetStage(id, "Active Client"); err != nil {
		t.Fatal(err)
	}
	e.settle(t, 3)
	// The old stage is unknown, and the change is still announced once.
	if sc := e.stageChanges(t); len(sc) != 1 || sc[0].GetOldStage() != "" || sc[0].GetNewStage() != "Active Client" || !sc[0].GetActiveClient() {
		t.Fatalf("stage changes = %v", sc)
	}
}

func TestConfigFromEnv_activeStages(t *testing.T) {
	t.Parallel()
	cfg, err := crmsync.ConfigFromEnv([]string{testPepperEnv, "CRMSYNC_FUB_API_KEY=k"})
	if err != nil || !slices.Equal(cfg.ActiveStages, []string{"Active Client", "Under Contract"}) {
		t.Fatalf("default = %q, %v", cfg.ActiveStages, err)
	}
	cfg, err = crmsync.ConfigFromEnv([]string{testPepperEnv, "CRMSYNC_FUB_API_KEY=k", "CRMSYNC_ACTIVE_STAGES=Hot Prospect,Pending"})
	if err != nil || !slices.Equal(cfg.ActiveStages, []string{"Hot Prospect", "Pending"}) {
		t.Fatalf("set = %q, %v", cfg.ActiveStages, err)
	}
	if !cfg.IsActiveStage("pending") || !cfg.IsActiveStage(" Hot Prospect ") || cfg.IsActiveStage("Active Client") {
		t.Fatal("IsActiveStage does not follow the configuration")
	}
}

// A person whom crm-sync itself created is not read back when their
// peopleCreated webhook comes: crm-sync keeps the person as Follow Up Boss
// answered the call that created them. What it keeps is still right: a
// later stage change is announced from the old stage, with the person's
// details.
func TestChanges_aPersonCrmSyncCreatedIsNotReadBack(t *testing.T) {
	t.Parallel()
	e := setupChanges(t)
	// The webhook comes once the lead is recorded, as Follow Up Boss's
	// usually does (it sends them after agent assignment).
	e.held = make(chan struct{})
	e.syncAda(t, "ld_own")
	close(e.held)
	e.settle(t, 1)
	if n := e.reads.Load(); n != 0 {
		t.Fatalf("crm-sync read the person it created %d times on peopleCreated", n)
	}
	if n := len(e.stageChanges(t)) + len(e.updates(t)); n != 0 {
		t.Fatalf("a new person made %d change events", n)
	}
	people := e.fub.People()
	if len(people) != 1 {
		t.Fatalf("%d people, want 1", len(people))
	}
	id := people[0].ID

	if _, err := e.fub.SetStage(id, "Active Client"); err != nil {
		t.Fatal(err)
	}
	e.settle(t, 3) // peopleStageUpdated and peopleUpdated: these are read
	sc := e.stageChanges(t)
	if len(sc) != 1 || sc[0].GetOldStage() != "Lead" || sc[0].GetNewStage() != "Active Client" || !sc[0].GetActiveClient() ||
		sc[0].GetFirstName() != "Ada" || sc[0].GetLastName() != "Lovelace" ||
		!slices.Equal(sc[0].GetEmails(), []string{"ada@example.com"}) || len(sc[0].GetPhones()) != 1 {
		t.Fatalf("stage changes = %v", sc)
	}
	if u := e.updates(t); len(u) != 0 {
		t.Fatalf("the kept person differs from the CRM's: %d updated events: %v", len(u), u)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures: %v", f)
	}
}

// Follow Up Boss sends peopleStageUpdated and peopleUpdated for one move,
// and crm-sync may handle either first, before or after the person's
// peopleCreated. A person crm-sync created is known from its own call: a
// move to a stage that is not an active client's, seen first through
// peopleUpdated, is still one stage change, and no field is announced as
// changed.
func TestChanges_aMoveSeenFirstAsAnUpdateOfAPersonCrmSyncCreatedIsOneStageChange(t *testing.T) {
	t.Parallel()
	e := setupChanges(t)
	created, stage := make(chan struct{}), make(chan struct{})
	e.holdEvent = map[string]chan struct{}{sandbox.FUBPeopleCreated: created, sandbox.FUBPeopleStageUpdated: stage}
	e.syncAda(t, "ld_move")
	people := e.fub.People()
	if len(people) != 1 {
		t.Fatalf("%d people, want 1", len(people))
	}
	if _, err := e.fub.SetStage(people[0].ID, "Nurture"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "peopleUpdated handled", func() bool {
		return natstest.Count(t, e.js, bus.StreamWebhooks, "webhook.received.crm.followupboss") == 1
	})
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, changesDurable)
	close(stage)
	close(created)
	e.settle(t, 3)
	sc := e.stageChanges(t)
	if len(sc) != 1 || sc[0].GetOldStage() != "Lead" || sc[0].GetNewStage() != "Nurture" || sc[0].GetActiveClient() {
		t.Fatalf("stage changes = %v, want one from Lead to Nurture", sc)
	}
	if u := e.updates(t); len(u) != 0 {
		t.Fatalf("%d updated events for a move of stage: %v", len(u), u)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures: %v", f)
	}
}

// A returning person whom the identity records know under their email and
// phone costs no counted call: no search, and POST /v1/events, which
// Follow Up Boss does not count.
func TestSyncer_aReturningPersonCostsNoCountedCall(t *testing.T) {
	t.Parallel()
	e := setupChanges(t)
	e.held = make(chan struct{}) // no webhook reads in the count
	defer close(e.held)
	pub := bus.NewPublisher(e.js, "normalizer", nil)
	send := func(id string, n uint64) {
		t.Helper()
		if _, err := pub.Publish(t.Context(), "lead.normalized.idx", "lead.normalized:"+id,
			crmtest.Lead(id, "Ada", "Lovelace", "ada@example.com", "+14155550134")); err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, 30*time.Second, "the lead synced", func() bool {
			return natstest.Count(t, e.js, bus.StreamCRM, crmsync.SubjectContactSynced) == n
		})
	}
	send("ld_first", 1)
	first := e.fub.Usage().Counted
	if first == 0 {
		t.Fatal("the new person cost no counted call: the count does not see the searches")
	}
	send("ld_again", 2)
	if again := e.fub.Usage().Counted - first; again != 0 {
		t.Fatalf("the returning person cost %d counted calls, want 0", again)
	}
	if ev := e.fub.Events(); len(ev) != 2 || ev[0].PersonID != ev[1].PersonID {
		t.Fatalf("events %+v: want both leads on one person", ev)
	}
}
