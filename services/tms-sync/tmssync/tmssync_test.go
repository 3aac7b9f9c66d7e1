package tmssync_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/agents"
	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/pkg/tms/tmstest"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
	tmsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
	"github.com/brokerflow/brokerflow/services/tms-sync/tmssync"
)

type env struct {
	ns    *natstest.Server
	js    jetstream.JetStream
	dl    *sandbox.Dotloop
	api   *dotloop.Dotloop
	pub   *bus.Publisher
	hooks *bus.TestHooks
	seq   int
}

// setup runs replicas of tms-sync against the sandbox's Dotloop, connected
// as `brokerflow connect dotloop` leaves it; change adjusts the config.
func setup(t *testing.T, replicas int, change func(*tmssync.Config)) *env {
	t.Helper()
	sb, srv, ns, js, bcfg := startParts(t)
	dir, err := agents.New(agents.Agent{ID: "ada", Name: "Ada Agent", Email: "ada.agent@brokerage.example", DotloopProfileID: strconv.Itoa(sandbox.DefaultDotloopProfileID), Default: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tmssync.Config{
		TMS: tmssync.TMSDotloop, Dotloop: tmstest.DotloopConfig(srv.URL), CRM: "none", Agents: dir,
		OpeningStages: map[string]string{"Active Client": tms.TypePurchase}, LostStages: []string{"Trash"},
		Templates:  map[string]string{tms.TypePurchase: "1424"},
		PriceField: "Financials:Purchase/Sale Price", CommissionField: "Financials:Sale Commission Total",
		CloseDateField: "Contract Dates:Closing Date", ReferralField: "Referral:Referral Fee", ReferralSourceField: "Referral:Referral Source",
		Currency: "USD", SoldWait: time.Hour, Concurrency: 2, ShutdownTimeout: 5 * time.Second, Bus: bcfg,
	}
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	store := oauth.NewStore(js, tmssync.OAuthConfig(cfg))
	tmstest.Connect(t, sb.Dotloop(), store)
	hooks := &bus.TestHooks{}
	for range replicas {
		nc, _ := natstest.Connect(t, ns)
		s, err := tmssync.New(cfg, service.Deps{NATS: nc, Hooks: hooks})
		if err != nil {
			t.Fatal(err)
		}
		natstest.Run(t, s.Run)
	}
	natstest.WaitConsumer(t, js, bus.StreamCRM, "tms-sync-crm")
	return &env{ns: ns, js: js, dl: sb.Dotloop(), api: dotloop.New(cfg.Dotloop, store), pub: bus.NewPublisher(js, "crm-sync", nil), hooks: hooks}
}

// startParts runs the sandbox over real HTTP and an embedded JetStream with
// the declarations applied, on a fast retry schedule.
func startParts(t *testing.T) (*sandbox.Sandbox, *httptest.Server, *natstest.Server, jetstream.JetStream, service.ConsumeConfig) {
	t.Helper()
	sb := sandbox.New(sandbox.Options{})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close)
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	bcfg := service.ConsumeConfig{RetrySchedule: []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond, 320 * time.Millisecond}}
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: time.Second, ConsumeConfig: bcfg}.Topology())
	return sb, srv, ns, js, bcfg
}

func (e *env) publish(t *testing.T, subject string, m proto.Message) {
	t.Helper()
	e.seq++
	if _, err := e.pub.Publish(natstest.Context(t, 10*time.Second), subject, fmt.Sprintf("%s:test:%d", subject, e.seq), m); err != nil {
		t.Fatal(err)
	}
}

// lead publishes a lead with a property and its crm.contact.synced for contact.
func (e *env) lead(t *testing.T, contact string) {
	t.Helper()
	e.leadSynced(t, contact)
}

// leadSynced is lead, and returns the crm.contact.synced it published.
func (e *env) leadSynced(t *testing.T, contact string) *crmv1.ContactSynced {
	t.Helper()
	l := &leadv1.Lead{
		LeadId: "ld_" + contact, LeadSource: "idx", ReceivedAt: timestamppb.Now(),
		Contact: &leadv1.Contact{FirstName: "Grace", LastName: "Hopper", Email: "grace@example.org", MobilePhone: "+12125550199"},
		Inquiry: &leadv1.Inquiry{Type: leadv1.InquiryType_INQUIRY_TYPE_BUY, Property: &leadv1.Property{
			UnparsedAddress: "2100 Waterview Dr", City: "San Francisco", StateOrProvince: "CA", PostalCode: "94114", ListingId: "43FSB8",
		}},
	}
	ack, err := bus.NewPublisher(e.js, "normalizer", nil).Publish(natstest.Context(t, 10*time.Second), "lead.normalized.idx", "lead.normalized:"+l.GetLeadId(), l)
	if err != nil {
		t.Fatal(err)
	}
	synced := &crmv1.ContactSynced{
		LeadId: l.GetLeadId(), ContactId: contact, Crm: "followupboss",
		Lead: &commonv1.MessageRef{Stream: ack.Stream, Sequence: ack.Sequence, Subject: "lead.normalized.idx"},
	}
	e.publish(t, "crm.contact.synced", synced)
	return synced
}

func (e *env) stage(t *testing.T, contact, stage string) {
	t.Helper()
	e.publish(t, "crm.contact.stage_changed", &crmv1.ContactStageChanged{
		ContactId: contact, Crm: "followupboss", NewStage: stage, FirstName: "Grace", LastName: "Hopper",
		Emails: []string{"grace@example.org"}, Phones: []string{"+1 (212) 555-0199"},
	})
}

func (e *env) settle(t *testing.T) {
	t.Helper()
	natstest.WaitSettled(t, e.js, bus.StreamCRM, "tms-sync-crm")
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, "tms-sync-webhooks")
}

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

func (e *env) opened(t *testing.T) []*tmsv1.TransactionOpened {
	return readAll(t, e.js, bus.StreamTMS, tmssync.SubjectOpened, func() *tmsv1.TransactionOpened { return &tmsv1.TransactionOpened{} })
}

func (e *env) closed(t *testing.T) []*tmsv1.TransactionClosed {
	return readAll(t, e.js, bus.StreamTMS, tmssync.SubjectClosed, func() *tmsv1.TransactionClosed { return &tmsv1.TransactionClosed{} })
}

func (e *env) failures(t *testing.T) []*opsv1.Failure {
	return readAll(t, e.js, bus.StreamOps, bus.FailureSubject(bus.ServiceTMSSync), func() *opsv1.Failure { return &opsv1.Failure{} })
}

// webhook stores a LOOP_UPDATED for loop as the gateway would.
func (e *env) webhook(t *testing.T, loop int64) {
	t.Helper()
	body, _ := json.Marshal(sandbox.DotloopEvent{EventID: fmt.Sprintf("evt_%d_%d", loop, e.seq), EventType: "LOOP_UPDATED", Timestamp: time.Now().UnixMilli(),
		Event: sandbox.DotloopEventLoop{ID: loop, ProfileID: sandbox.DefaultDotloopProfileID, LoopID: loop}})
	e.seq++
	wr := &webhookv1.WebhookReceived{Source: "dotloop", Kind: webhookv1.Kind_KIND_TMS, DeliveryId: fmt.Sprintf("d%d", e.seq), Body: body, ReceivedAt: timestamppb.Now()}
	if _, err := bus.NewPublisher(e.js, "ingest-gateway", nil).Publish(natstest.Context(t, 10*time.Second), "webhook.received.tms.dotloop", fmt.Sprintf("webhook:dotloop:d%d", e.seq), wr); err != nil {
		t.Fatal(err)
	}
}

func TestSyncer_activeClientOpensOnePrefilledLoop(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	e.lead(t, "101")
	e.settle(t)
	e.stage(t, "101", "Active Client")
	e.settle(t)
	e.stage(t, "101", "Active Client") // the same move announced again
	e.settle(t)

	loops := e.dl.Loops()
	if len(loops) != 1 {
		t.Fatalf("%d loops, want 1", len(loops))
	}
	l := loops[0]
	addr := l.Detail["Property Address"]
	if l.Name != "Grace Hopper" || l.TransactionType != "PURCHASE_OFFER" || l.TemplateID != 1424 || l.ProfileID != sandbox.DefaultDotloopProfileID ||
		addr["Street Number"] != "2100" || addr["Street Name"] != "Waterview Dr" || addr["Postal Code"] != "94114" || addr["MLS Number"] != "43FSB8" {
		t.Fatalf("loop = %+v", l)
	}
	if l.DetailUpdates != 0 {
		t.Fatalf("%d detail updates of a loop opened with its property, want none", l.DetailUpdates)
	}
	if len(l.Participants) != 2 || l.Participants[0].Role != "BUYER" || l.Participants[0].Email != "grace@example.org" ||
		l.Participants[0].Phone != "+1 (212) 555-0199" || l.Participants[1].Role != "BUYING_AGENT" {
		t.Fatalf("participants = %+v", l.Participants)
	}
	o := e.opened(t)
	if len(o) != 1 || o[0].GetTransactionId() != strconv.FormatInt(l.ID, 10) || o[0].GetCorrelation().GetLeadId() != "ld_101" ||
		o[0].GetContactId() != "101" || o[0].GetAgentId() != "ada" || o[0].GetProperty().GetCity() != "San Francisco" || o[0].GetEpisodeId() != "followupboss:101:1" {
		t.Fatalf("opened = %v", o)
	}
}

// TestSyncer_crashAfterTheTMSCallOpensOneLoop: killed between Loop-It and
// the episode record, the redelivery finds the loop in Dotloop and records it.
func TestSyncer_crashAfterTheTMSCallOpensOneLoop(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	e.hooks.CrashAt(tmssync.CrashAfterTMSCall, 1)
	e.stage(t, "202", "Active Client")
	natstest.Eventually(t, 30*time.Second, "the redelivery settles", func() bool { return len(e.opened(t)) == 1 })
	e.settle(t)
	if n := len(e.dl.Loops()); n != 1 {
		t.Fatalf("%d loops after a crash after the Dotloop call, want 1", n)
	}
	if o := e.opened(t); o[0].GetTransactionId() != strconv.FormatInt(e.dl.Loops()[0].ID, 10) {
		t.Fatalf("opened %v", o)
	}
}

// TestSyncer_twoReplicasOneLoop: two stage changes of one contact, on two
// replicas at once, while Loop-It is slow, make one loop.
func TestSyncer_twoReplicasOneLoop(t *testing.T) {
	t.Parallel()
	e := setup(t, 2, nil)
	e.dl.InjectFault(sandbox.Fault{Method: "POST", Path: "/public/v2/loop-it", Latency: 300 * time.Millisecond, Count: 2})
	e.stage(t, "303", "Active Client")
	e.stage(t, "303", "active client")
	e.settle(t)
	natstest.Eventually(t, 30*time.Second, "both handled", func() bool { return len(e.opened(t)) == 1 })
	e.settle(t)
	if n := len(e.dl.Loops()); n != 1 {
		t.Fatalf("%d loops from two replicas, want 1", n)
	}
}

// TestSyncer_episodes: leaving the stage and returning finds the loop; a
// lost stage ends the episode, and the next opening stage opens a new loop.
func TestSyncer_episodes(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	for _, st := range []string{"Active Client", "Prospect", "Active Client"} {
		e.stage(t, "404", st)
		e.settle(t)
	}
	if n := len(e.dl.Loops()); n != 1 {
		t.Fatalf("%d loops after leaving and returning, want 1", n)
	}
	e.stage(t, "404", "Trash")
	e.settle(t)
	e.stage(t, "404", "Active Client")
	e.settle(t)
	o := e.opened(t)
	if n := len(e.dl.Loops()); n != 2 || len(o) != 2 || o[1].GetEpisodeId() != "followupboss:404:2" {
		t.Fatalf("%d loops, opened %v; want a second episode's loop", n, o)
	}
}

func TestSyncer_contactChangeFollowsIntoTheLoop(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	e.stage(t, "505", "Active Client")
	e.settle(t)
	e.publish(t, "crm.contact.updated", &crmv1.ContactUpdated{
		ContactId: "505", Crm: "followupboss", FirstName: "Grace", LastName: "Hopper",
		Emails: []string{"grace@example.org"}, Phones: []string{"+1 (212) 555-0100"},
		ChangedFields: []crmv1.ContactField{crmv1.ContactField_CONTACT_FIELD_PHONES},
	})
	e.publish(t, "crm.contact.updated", &crmv1.ContactUpdated{ContactId: "999", Crm: "followupboss", Phones: []string{"+1"}}) // no loop: nothing
	e.settle(t)
	l := e.dl.Loops()[0]
	if l.Participants[0].Phone != "+1 (212) 555-0100" || l.Participants[0].Email != "grace@example.org" {
		t.Fatalf("participant = %+v", l.Participants[0])
	}
	u := readAll(t, e.js, bus.StreamTMS, tmssync.SubjectUpdated, func() *tmsv1.TransactionUpdated { return &tmsv1.TransactionUpdated{} })
	if len(u) != 1 || strings.Join(u[0].GetChangedFields(), ",") != "phone" || u[0].GetClient().GetPhone() != "+1 (212) 555-0100" {
		t.Fatalf("updated = %v", u)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
}

func TestSyncer_soldLoopBecomesAClosing(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	e.lead(t, "606")
	e.settle(t)
	e.stage(t, "606", "Active Client")
	e.settle(t)
	id := e.dl.Loops()[0].ID
	if err := e.dl.SetLoopStatus(id, sandbox.DotloopSold, sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01", Referral: 1000, ReferralSource: "Relocation Co"}); err != nil {
		t.Fatal(err)
	}
	e.webhook(t, id)
	e.webhook(t, id) // the same facts again: the same event
	e.settle(t)
	c := e.closed(t)
	if len(c) != 1 {
		t.Fatalf("%d closings, want 1", len(c))
	}
	got := c[0]
	if got.GetSalePrice().GetAmountMinor() != 52_500_000 || got.GetCommission().GetGross().GetAmountMinor() != 1_575_000 ||
		got.GetCommission().GetReferral().GetAmountMinor() != 100_000 || got.GetCommission().GetReferralSource() != "Relocation Co" ||
		got.GetCloseDate() != "2026-12-01" || got.GetCommission().GetSide() != "buy" || got.GetCommission().GetAgentId() != "ada" ||
		got.GetCorrelation().GetLeadId() != "ld_606" || got.GetCorrelation().GetContactId() != "606" || got.GetSalePrice().GetCurrencyCode() != "USD" {
		t.Fatalf("closed = %v", got)
	}
	// A corrected commission is a new closing event.
	if err := e.dl.SetLoopStatus(id, sandbox.DotloopSold, sandbox.DotloopFinancials{Commission: 16000}); err != nil {
		t.Fatal(err)
	}
	e.webhook(t, id)
	e.settle(t)
	if c = e.closed(t); len(c) != 2 || c[1].GetFactsHash() == c[0].GetFactsHash() || c[1].GetCommission().GetGross().GetAmountMinor() != 1_600_000 {
		t.Fatalf("closings after a correction = %v", c)
	}
}

func TestSyncer_loopNotOpenedByBrokerflowStillCloses(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	tx, err := e.api.Open(natstest.Context(t, 10*time.Second), tmstest.OpenRequest(strconv.Itoa(sandbox.DefaultDotloopProfileID)))
	if err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.ParseInt(tx.ID, 10, 64)
	if err := e.dl.SetLoopStatus(id, sandbox.DotloopSold, sandbox.DotloopFinancials{Price: 300000, Commission: 9000}); err != nil {
		t.Fatal(err)
	}
	e.webhook(t, id)
	e.settle(t)
	c := e.closed(t)
	if len(c) != 1 || c[0].GetCorrelation().GetLeadId() != "" || c[0].GetCorrelation().GetTransactionId() != tx.ID || c[0].GetCommission().GetAgentId() != "ada" {
		t.Fatalf("closed = %v", c)
	}
}

func TestSyncer_soldWithoutFinancialsIsRecordedAfterTheWait(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, func(c *tmssync.Config) { c.SoldWait = 100 * time.Millisecond })
	e.stage(t, "707", "Active Client")
	e.settle(t)
	id := e.dl.Loops()[0].ID
	if err := e.dl.SetLoopStatus(id, sandbox.DotloopSold, sandbox.DotloopFinancials{}); err != nil {
		t.Fatal(err)
	}
	e.webhook(t, id)
	natstest.Eventually(t, 30*time.Second, "a failure record", func() bool { return len(e.failures(t)) == 1 })
	f := e.failures(t)[0]
	if f.GetReasonCode() != "tms.closing_incomplete" || !strings.Contains(f.GetReason(), "sale price") || !strings.Contains(f.GetReason(), "gross commission") {
		t.Fatalf("failure = %v", f)
	}
	if c := e.closed(t); len(c) != 0 {
		t.Fatalf("closings %v", c)
	}
}

func TestSyncer_webhookForAnUnknownLoopIsRecorded(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	e.webhook(t, 999)
	e.settle(t)
	f := e.failures(t)
	if len(f) != 1 || f[0].GetReasonCode() != "tms.unknown_transaction" {
		t.Fatalf("failures = %v", f)
	}
}

// TestSyncer_dotloopFaults: a 429 pauses the consumer until its
// Retry-After; Dotloop down (503) is retried on the schedule; either way the
// loop is opened once and nothing is recorded as failed.
func TestSyncer_dotloopFaults(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name               string
		status, retryAfter int
	}{{"rate_limited", 429, 2}, {"unavailable", 503, 0}} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, 1, nil)
			e.dl.InjectFault(sandbox.Fault{Method: "POST", Path: "/public/v2/loop-it", Status: c.status, RetryAfter: c.retryAfter, Count: 2})
			e.stage(t, "808", "Active Client")
			if c.status == 429 {
				natstest.Eventually(t, 30*time.Second, "the consumer paused", func() bool {
					cons, err := e.js.Consumer(natstest.Context(t, 5*time.Second), bus.StreamCRM, "tms-sync-crm")
					if err != nil {
						return false
					}
					info, err := cons.Info(natstest.Context(t, 5*time.Second))
					return err == nil && info.Paused
				})
			}
			natstest.Eventually(t, 30*time.Second, "the loop opened after the fault", func() bool { return len(e.opened(t)) == 1 })
			e.settle(t)
			if n, f := len(e.dl.Loops()), e.failures(t); n != 1 || len(f) != 0 {
				t.Fatalf("%d loops, failures %v", n, f)
			}
		})
	}
}

// TestSyncer_closingEndsItsEpisode: a closing ends the episode of its loop,
// so the contact's next opening stage opens a new loop; the closing of an
// older episode's loop leaves the current one open.
func TestSyncer_closingEndsItsEpisode(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	e.stage(t, "909", "Active Client")
	e.settle(t)
	first := e.dl.Loops()[0].ID
	if err := e.dl.SetLoopStatus(first, sandbox.DotloopSold, sandbox.DotloopFinancials{Price: 100000, Commission: 3000}); err != nil {
		t.Fatal(err)
	}
	e.webhook(t, first)
	e.settle(t)
	e.stage(t, "909", "Active Client")
	e.settle(t)
	if n := len(e.dl.Loops()); n != 2 {
		t.Fatalf("%d loops after a closing and a new opening stage, want 2", n)
	}
	// The first loop's closing, corrected, does not end the second episode.
	if err := e.dl.SetLoopStatus(first, sandbox.DotloopSold, sandbox.DotloopFinancials{Commission: 3100}); err != nil {
		t.Fatal(err)
	}
	e.webhook(t, first)
	e.settle(t)
	e.stage(t, "909", "Active Client")
	e.settle(t)
	if n, c := len(e.dl.Loops()), len(e.closed(t)); n != 2 || c != 2 {
		t.Fatalf("%d loops and %d closings; want the second episode still open", n, c)
	}
}
