package alerter_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/alerter/alerter"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

const webhookSecret = "whsec_YWxlcnRlci10ZXN0LXNlY3JldC1mb3ItdGhlLXdlYmhvb2s="

// The person of every test lead: none of this may appear in an alert
// unless PII is on.
const (
	email = "ada.lovelace@example.com"
	phone = "+14155550134"
	first = "Augusta"
	last  = "Lovelace"
)

// receiver is a brokerage's endpoint for the signed generic webhook.
type receiver struct {
	mu     sync.Mutex
	ids    []string
	bodies []string
	bad    int
	// delay is how long each delivery takes to be answered.
	delay time.Duration
}

func (r *receiver) serve(t *testing.T) string {
	v, err := webhooksig.NewStandardWebhooks([]string{webhookSecret}, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		id, err := v.Verify(req.Header, body)
		r.mu.Lock()
		delay := r.delay
		r.mu.Unlock()
		time.Sleep(delay)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err != nil {
			t.Logf("webhook refused: %v (headers %v)", err, req.Header)
			r.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.ids, r.bodies = append(r.ids, id), append(r.bodies, string(body))
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

type env struct {
	js jetstream.JetStream
	nc *nats.Conn
	// stopAlerter stops the alerter setup started.
	stopAlerter func()
	fub         *sandbox.FUB
	sb          *sandbox.Sandbox
	base        string
	recv        *receiver
	pub         *bus.Publisher
	hooks       *bus.TestHooks
	cfg         alerter.Config
}

type options struct {
	window, quiet time.Duration
	pii           bool
	silent        []string
	// stuck and full turn the checks on; maxBytes limits every stream.
	stuck    time.Duration
	full     float64
	maxBytes int64
	// pollFailing turns the poll_failing check on.
	pollFailing time.Duration
	// ackWait is the consumers' (default 1 s).
	ackWait time.Duration
}

func setup(t *testing.T, o options) *env {
	t.Helper()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	fub, fcfg := crmtest.FollowUpBoss(t)
	sb, base := crmtest.Sandbox(t, sandbox.Options{Slack: sandbox.SlackOptions{PerSecond: 1000}})
	consume := service.ConsumeConfig{RetrySchedule: []time.Duration{20 * time.Millisecond, 40 * time.Millisecond}}
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: cmp.Or(o.ackWait, time.Second), MaxBytes: o.maxBytes, ConsumeConfig: consume}.Topology())
	hooks := &bus.TestHooks{}

	ccfg := crmsync.Config{CRM: "followupboss", FUB: fcfg, Concurrency: 4, ShutdownTimeout: 5 * time.Second, Bus: consume,
		IdentityPeppers: []string{"test-pepper-0123456789abcdef"}}
	syncer, err := crmsync.New(ccfg, service.Deps{NATS: nc, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, syncer.Run)

	recv := &receiver{}
	if o.window == 0 {
		o.window = time.Hour
	}
	if o.quiet == 0 {
		o.quiet = time.Hour
	}
	cfg := alerter.Config{
		SlackWebhookURL:     base + "/slack" + sandbox.DefaultSlackHookPath,
		PagerDutyRoutingKey: sandbox.DefaultPagerDutyRoutingKey,
		PagerDutyURL:        base + "/pagerduty/v2/enqueue",
		WebhookURL:          recv.serve(t),
		WebhookSecret:       webhookSecret,
		HTTPTimeout:         5 * time.Second,
		PII:                 o.pii,
		GroupWindow:         o.window,
		QuietPeriod:         o.quiet,
		AdvisoryGrace:       200 * time.Millisecond,
		Tick:                50 * time.Millisecond,
		SilentSources:       o.silent,
		StuckAfter:          o.stuck,
		StreamFullRatio:     o.full,
		PollFailingAfter:    o.pollFailing,
		ShutdownTimeout:     5 * time.Second,
		Bus:                 consume,
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := &env{js: js, nc: nc, fub: fub, sb: sb, base: base, recv: recv, pub: bus.NewPublisher(js, "normalizer", nil), hooks: hooks, cfg: cfg}
	e.stopAlerter = e.startAlerter(t)
	natstest.WaitConsumer(t, js, bus.StreamLeads, bus.CRMSyncLeads.Durable)
	return e
}

// startAlerter runs an alerter; stop ends it, as a restart's first half.
func (e *env) startAlerter(t *testing.T) (stop func()) {
	t.Helper()
	a, err := alerter.New(e.cfg, service.Deps{NATS: e.nc, Hooks: e.hooks})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("alerter: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// slackCounts reads Slack's messages: the first alerts, and the failures
// the summaries counted ("N more: …").
func (e *env) slackCounts() (firsts, summarized int, firstTexts []string) {
	for _, m := range e.sb.Slack().Messages() {
		var n int
		if _, err := fmt.Sscanf(m.Text, "%d more:", &n); err == nil {
			summarized += n
		} else {
			firsts++
			firstTexts = append(firstTexts, m.Text)
		}
	}
	return firsts, summarized, firstTexts
}

func (e *env) lead(t *testing.T, id string) uint64 {
	t.Helper()
	ack, err := e.pub.Publish(natstest.Context(t, 10*time.Second), "lead.normalized.idx", "lead.normalized:"+id, crmtest.Lead(id, first, last, email, phone))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func (e *env) sent(t *testing.T) []*opsv1.AlertSent {
	t.Helper()
	var out []*opsv1.AlertSent
	for _, m := range natstest.All(t, e.js, bus.StreamOps, bus.AlertSentSubject) {
		var a opsv1.AlertSent
		if err := proto.Unmarshal(m.Data(), &a); err != nil {
			t.Fatal(err)
		}
		out = append(out, &a)
	}
	return out
}

// handled waits until the consumer acked at least n messages and holds none.
func (e *env) handled(t *testing.T, spec bus.ConsumerSpec, n uint64) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, spec.Durable+" to handle its messages", func() bool {
		ctx := natstest.Context(t, 5*time.Second)
		c, err := e.js.Consumer(ctx, spec.Stream, spec.Durable)
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Consumer >= n && info.NumPending == 0 && info.NumAckPending == 0
	})
}

// failAgain records, as crm-sync would, that the lead at seq of LEADS,
// redriven, failed again with crm.http_400.
func (e *env) failAgain(t *testing.T, seq uint64, id string) {
	t.Helper()
	again := &opsv1.Failure{Service: "crm-sync", Consumer: "crm-sync", Message: &commonv1.MessageRef{Stream: "LEADS", Sequence: seq, Subject: "lead.normalized.idx"},
		Class: opsv1.ErrorClass_ERROR_CLASS_PERMANENT, ReasonCode: "crm.http_400", Reason: "again", Attempts: 1, Redrive: true}
	if _, err := bus.NewPublisher(e.js, "crm-sync", nil).Publish(natstest.Context(t, 10*time.Second), bus.FailureSubject("crm-sync"), id, again); err != nil {
		t.Fatal(err)
	}
}

func (e *env) triggers() []sandbox.PagerDutyEvent {
	var out []sandbox.PagerDutyEvent
	for _, ev := range e.sb.PagerDuty().Events() {
		if ev.EventAction == "trigger" {
			out = append(out, ev)
		}
	}
	return out
}

// everything is every text that reached a person: Slack, PagerDuty, the webhook.
func (e *env) everything(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, m := range e.sb.Slack().Messages() {
		b.WriteString(m.Text + string(m.Blocks))
	}
	for _, ev := range e.sb.PagerDuty().Events() {
		j, _ := json.Marshal(ev)
		b.Write(j)
	}
	e.recv.mu.Lock()
	b.WriteString(strings.Join(e.recv.bodies, ""))
	e.recv.mu.Unlock()
	return b.String()
}

func assertNoPII(t *testing.T, text string) {
	t.Helper()
	for _, pii := range []string{email, phone, first, last, "5550134"} {
		if strings.Contains(text, pii) {
			t.Errorf("an alert holds %q:\n%s", pii, text)
		}
	}
}

// The CRM answers 400 to a lead: one Slack message and one PagerDuty
// trigger, with the redacted data and the redrive command; the fault is
// gone, the failure is redriven, the lead reaches the CRM and PagerDuty
// gets the resolve.
func TestAlerter_failureAlertsOnceThenRedriveResolves(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 400, Count: 1, Body: `{"errorMessage":"Invalid person"}`})
	seq := e.lead(t, "ld_bad")
	natstest.Eventually(t, 30*time.Second, "the alert in Slack and PagerDuty", func() bool {
		return len(e.sb.Slack().Messages()) >= 1 && len(e.triggers()) >= 1
	})
	// The failure record and the termination advisory both name the message.
	e.handled(t, bus.AlerterAdvisories, 1)
	natstest.WaitSettled(t, e.js, bus.StreamOps, bus.AlerterFailures.Durable)
	if n, tr := len(e.sb.Slack().Messages()), len(e.triggers()); n != 1 || tr != 1 {
		t.Fatalf("%d Slack messages and %d PagerDuty triggers, want 1 and 1", n, tr)
	}
	redrive := alerter.RedriveCommand("crm-sync", "LEADS", seq)
	msg := e.sb.Slack().Messages()[0]
	t.Logf("alert: %s %s", msg.Text, msg.Blocks)
	for _, want := range []string{redrive, "crm.http_400", "crm-sync / crm-sync", "ld_bad", "[redacted]", "Attempts", "Invalid person"} {
		if !strings.Contains(string(msg.Blocks), want) {
			t.Errorf("the Slack message lacks %q:\n%s", want, msg.Blocks)
		}
	}
	tr := e.triggers()[0]
	if tr.DedupKey != "brokerflow/failure/crm-sync/crm.http_400" || !strings.Contains(string(tr.Details), redrive) || !strings.Contains(string(tr.Details), `"[redacted]"`) {
		t.Errorf("trigger %s: %s", tr.DedupKey, tr.Details)
	}
	e.recv.mu.Lock()
	if len(e.recv.ids) != 1 || e.recv.bad != 0 || !strings.Contains(e.recv.bodies[0], redrive) || e.recv.ids[0] != alerter.WebhookID("failure/crm-sync/crm.http_400/msg.LEADS.1") {
		t.Errorf("webhook: ids %v, %d refused, bodies %v", e.recv.ids, e.recv.bad, e.recv.bodies)
	}
	e.recv.mu.Unlock()
	if s := e.sent(t); len(s) != 1 || s[0].GetKind() != opsv1.AlertKind_ALERT_KIND_FAILURE || s[0].GetCorrelation().GetLeadId() != "ld_bad" || len(s[0].GetChannels()) != 3 {
		t.Errorf("ops.alert.sent = %v", s)
	}
	assertNoPII(t, e.everything(t))

	// The fault is spent: the operator runs the command.
	if _, err := bus.RequestRedrive(natstest.Context(t, 10*time.Second), e.pub, bus.ServiceCRMSync, bus.StreamLeads, seq, "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the lead in the CRM and the resolve", func() bool {
		a := e.sb.PagerDuty().Alerts()
		return len(e.fub.People()) == 1 && len(a) == 1 && a[0].Status == "resolved"
	})
	if tr := e.triggers(); len(tr) != 1 {
		t.Fatalf("%d triggers after the resolve, want 1", len(tr))
	}
	assertNoPII(t, e.everything(t))
	// "Later" is once the redrive's handling is done (a failure in between
	// is TestAlerter_aFailureDuringItsGroupsResolveIsANewIncident).
	e.handled(t, bus.AlerterRedrives, 1)

	// Redriven again later, it fails again (as crm-sync would record it): a
	// new failure, a new alert, a new incident.
	e.failAgain(t, seq, "failure:again")
	natstest.Eventually(t, 30*time.Second, "the second alert", func() bool {
		a := e.sb.PagerDuty().Alerts()
		return len(e.sb.Slack().Messages()) == 3 && len(a) == 1 && a[0].Status == "triggered"
	})
}

// A failure of a group that comes while the group's resolve is on its way
// (PagerDuty has it, the alerter has not recorded it: here it crashed in
// between) waits for the resolve, then opens a new incident.
func TestAlerter_aFailureDuringItsGroupsResolveIsANewIncident(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 400, Count: 1})
	seq := e.lead(t, "ld_during")
	natstest.Eventually(t, 30*time.Second, "the alert in Slack and PagerDuty", func() bool {
		return len(e.sb.Slack().Messages()) >= 1 && len(e.triggers()) >= 1
	})
	e.handled(t, bus.AlerterFailures, 1)
	e.hooks.CrashAtOf(bus.AlerterRedrives.Durable, alerter.CrashAfterSend(alerter.ChannelPagerDuty), 1)
	if _, err := bus.RequestRedrive(natstest.Context(t, 10*time.Second), e.pub, bus.ServiceCRMSync, bus.StreamLeads, seq, "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the resolve in PagerDuty", func() bool {
		a := e.sb.PagerDuty().Alerts()
		return len(a) == 1 && a[0].Status == "resolved"
	})
	e.failAgain(t, seq, "failure:during")
	natstest.Eventually(t, 30*time.Second, "a new incident for the failure", func() bool {
		a := e.sb.PagerDuty().Alerts()
		return len(e.triggers()) == 2 && len(a) == 1 && a[0].Status == "triggered"
	})
	if n := e.hooks.Armed(bus.AlerterRedrives.Durable, alerter.CrashAfterSend(alerter.ChannelPagerDuty)); n != 0 {
		t.Fatalf("the crash after the resolve's send did not happen (%d armed)", n)
	}
}

// Two failures of one group: one resolved by hand, the alerter restarted,
// the other redriven. The group resolves only once both are settled, and
// the restarted alerter knows the first one was.
func TestAlerter_resolvedByHandAndRedrivenResolveTheGroupAcrossARestart(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 400, Count: 2})
	one, two := e.lead(t, "ld_one"), e.lead(t, "ld_two")
	e.handled(t, bus.AlerterFailures, 2)
	status := func() string {
		a := e.sb.PagerDuty().Alerts()
		if len(a) != 1 {
			return fmt.Sprintf("%d incidents", len(a))
		}
		return a[0].Status
	}
	if s := status(); s != "triggered" {
		t.Fatalf("PagerDuty: %s, want one triggered incident", s)
	}
	ctx := natstest.Context(t, 10*time.Second)
	if _, err := bus.ResolveFailure(ctx, bus.NewPublisher(e.js, "brokerflow-cli", nil), bus.ServiceCRMSync,
		&commonv1.MessageRef{Stream: bus.StreamLeads, Sequence: one}, "entered by hand", "ops"); err != nil {
		t.Fatal(err)
	}
	e.handled(t, bus.AlerterResolved, 1)
	if s := status(); s != "triggered" {
		t.Fatalf("PagerDuty after one of two resolved: %s, want triggered", s)
	}

	// A restart: the group's state is in the alerts bucket, not in memory.
	e.stopAlerter()
	e.startAlerter(t)
	if _, err := bus.RequestRedrive(ctx, e.pub, bus.ServiceCRMSync, bus.StreamLeads, two, "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the group resolved", func() bool { return status() == "resolved" })
	if n := len(e.fub.People()); n != 1 {
		t.Fatalf("%d people in the CRM, want the redriven one", n)
	}
	if n := len(e.triggers()); n != 1 {
		t.Fatalf("%d triggers, want 1", n)
	}
}

func TestAlerter_piiOnShowsThePerson(t *testing.T) {
	t.Parallel()
	e := setup(t, options{pii: true})
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 400, Count: 1})
	e.lead(t, "ld_pii")
	natstest.Eventually(t, 30*time.Second, "the alert in Slack", func() bool { return len(e.sb.Slack().Messages()) == 1 })
	if blocks := string(e.sb.Slack().Messages()[0].Blocks); !strings.Contains(blocks, email) || !strings.Contains(blocks, first) {
		t.Fatalf("with PII on, the alert lacks the person:\n%s", blocks)
	}
}

// A CRM outage fails many leads: one alert at once, then summaries with
// the count, at most one per window.
func TestAlerter_outageIsOneAlertAndOneSummaryPerWindow(t *testing.T) {
	t.Parallel()
	const leads = 200
	window := 500 * time.Millisecond
	// All 200 leads are one person, so their deliveries queue for the
	// person's claim. With a 1 s ack wait, a loaded machine (CI) once let a
	// delivery be redelivered, fence itself out on its last attempt, and
	// fail as crm.fenced: a second group, and a second first alert.
	e := setup(t, options{window: window, ackWait: 10 * time.Second})
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 400, Count: leads})
	for i := range leads {
		e.lead(t, "ld_out_"+strings.Repeat("x", 0)+string(rune('a'+i/26))+string(rune('a'+i%26)))
	}
	natstest.Eventually(t, 120*time.Second, "every failure alerted or summarized", func() bool {
		f, n, _ := e.slackCounts()
		return f+n >= leads
	})
	firsts, summarized, firstTexts := e.slackCounts()
	// Each Slack message is announced as alert.sent after it is posted:
	// the last may still be on its way.
	var sent []*opsv1.AlertSent
	natstest.Eventually(t, 30*time.Second, "an alert.sent for each Slack message", func() bool {
		sent = e.sent(t)
		return len(sent) >= len(e.sb.Slack().Messages())
	})
	if firsts != 1 || summarized != leads-1 {
		t.Fatalf("%d first alerts and %d summarized, want 1 and %d; the first alerts:\n%s", firsts, summarized, leads-1, strings.Join(firstTexts, "\n"))
	}
	for i := 1; i < len(sent); i++ {
		if gap := sent[i].GetSentAt().AsTime().Sub(sent[i-1].GetSentAt().AsTime()); gap < window {
			t.Errorf("alerts %d and %d of the group %s apart, closer than the window %s", i-1, i, gap, window)
		}
	}
	msgs := e.sb.Slack().Messages()
	if len(msgs) != len(sent) || len(msgs) < 2 {
		t.Fatalf("%d Slack messages for %d alerts", len(msgs), len(sent))
	}
	if !strings.Contains(string(msgs[1].Blocks), "brokerflow failures redrive crm-sync LEADS ") {
		t.Errorf("the summary names no redrive command:\n%s", msgs[1].Blocks)
	}
	if tr := len(e.triggers()); tr != 1 {
		t.Errorf("%d PagerDuty triggers, want 1 (one incident for the group)", tr)
	}
}

// Two replicas share the work: both consume, and the tick's work (the
// summaries and the checks) is done by the one that holds the lease. The
// signed webhook answers slowly here, so that two replicas ticking at once
// would both be sending a due summary before either recorded it.
func TestAlerter_twoReplicasSendEachAlertOnce(t *testing.T) {
	t.Parallel()
	const leads = 40
	window := 300 * time.Millisecond
	e := setup(t, options{window: window, ackWait: 10 * time.Second})
	e.recv.mu.Lock()
	e.recv.delay = 100 * time.Millisecond
	e.recv.mu.Unlock()
	e.startAlerter(t)
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 400, Count: leads})
	for i := range leads {
		e.lead(t, fmt.Sprintf("ld_two_%02d", i))
	}
	natstest.Eventually(t, 120*time.Second, "every failure alerted or summarized", func() bool {
		f, n, _ := e.slackCounts()
		return f+n >= leads
	})
	// A second copy of the last summary would come within a tick or two.
	time.Sleep(3 * window)
	firsts, summarized, firstTexts := e.slackCounts()
	if firsts != 1 || summarized != leads-1 {
		t.Fatalf("%d first alerts and %d failures summarized, want 1 and %d; the first alerts:\n%s", firsts, summarized, leads-1, strings.Join(firstTexts, "\n"))
	}
	e.recv.mu.Lock()
	ids := slices.Clone(e.recv.ids)
	e.recv.mu.Unlock()
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("the webhook had alert %s twice", id)
		}
		seen[id] = true
	}
	if tr := len(e.triggers()); tr != 1 {
		t.Errorf("%d PagerDuty triggers, want 1", tr)
	}

	// With the first replica gone (its lease given back, or expired), the
	// other one sends the summaries of the failures that follow.
	e.stopAlerter()
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 400, Count: 5})
	for i := range 5 {
		e.lead(t, fmt.Sprintf("ld_two_after_%d", i))
	}
	natstest.Eventually(t, 60*time.Second, "the failures after the stop summarized", func() bool {
		f, n, _ := e.slackCounts()
		return f+n >= leads+5
	})
}

// A handler that never settles its message (crashed each time) writes no
// failure record: JetStream's advisory alone raises one alert, which
// describes the original message.
func TestAlerter_crashedHandlerAlertsFromTheAdvisory(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.hooks.SkipNextAcksOf(bus.CRMSyncLeads.Durable, 100)
	seq := e.lead(t, "ld_crashed")
	natstest.Eventually(t, 30*time.Second, "the alert", func() bool { return len(e.sb.Slack().Messages()) >= 1 })
	e.handled(t, bus.AlerterAdvisories, 1)
	if n, tr := len(e.sb.Slack().Messages()), len(e.triggers()); n != 1 || tr != 1 {
		t.Fatalf("%d Slack messages and %d triggers, want 1 and 1", n, tr)
	}
	blocks := string(e.sb.Slack().Messages()[0].Blocks)
	for _, want := range []string{alerter.CodeMaxDeliveries, "ld_crashed", alerter.RedriveCommand("crm-sync", "LEADS", seq)} {
		if !strings.Contains(blocks, want) {
			t.Errorf("the alert lacks %q:\n%s", want, blocks)
		}
	}
	if f := natstest.All(t, e.js, bus.StreamOps, "ops.failure.>"); len(f) != 0 {
		var rec opsv1.Failure
		_ = proto.Unmarshal(f[0].Data(), &rec)
		t.Errorf("%d failure records (%v); the crash wrote none", len(f), &rec)
	}
	assertNoPII(t, e.everything(t))
}

// A crash after a channel took the alert, before the alerts bucket says so:
// the redelivery sends it to that channel again, with the same id, and not
// again to the channels recorded as reached. Here Slack's send and the
// webhook's are each followed by a crash once.
func TestAlerter_crashAfterSendRepeatsTheAlertWithItsID(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.hooks.CrashAtOf(bus.AlerterFailures.Durable, alerter.CrashAfterSend(alerter.ChannelSlack), 1)
	e.hooks.CrashAtOf(bus.AlerterFailures.Durable, alerter.CrashAfterSend(alerter.ChannelWebhook), 1)
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 400, Count: 1})
	e.lead(t, "ld_repeat")
	natstest.Eventually(t, 30*time.Second, "the alert announced", func() bool {
		return natstest.Count(t, e.js, bus.StreamOps, bus.AlertSentSubject) == 1
	})
	e.handled(t, bus.AlerterFailures, 1)
	id := e.sent(t)[0].GetAlertId()
	msgs := e.sb.Slack().Messages()
	if len(msgs) != 2 || !strings.Contains(string(msgs[0].Blocks), id) || !strings.Contains(string(msgs[1].Blocks), id) {
		t.Errorf("Slack had %d messages, want the alert %s twice", len(msgs), id)
	}
	if tr := len(e.triggers()); tr != 1 {
		t.Errorf("%d PagerDuty triggers, want 1", tr)
	}
	e.recv.mu.Lock()
	defer e.recv.mu.Unlock()
	if want := alerter.WebhookID(id); len(e.recv.ids) != 2 || e.recv.ids[0] != want || e.recv.ids[1] != want {
		t.Errorf("webhook ids %v, want %s twice", e.recv.ids, want)
	}
}

// A source that went quiet raises one alert, and its next lead resolves it.
func TestAlerter_silentSourceAlertsOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, options{silent: []string{"zillow=300ms"}})
	natstest.Eventually(t, 30*time.Second, "the silence alert", func() bool { return len(e.triggers()) == 1 })
	firing := time.Now()
	// Many more checks run while it stays silent.
	natstest.Eventually(t, 30*time.Second, "ten more ticks", func() bool { return time.Since(firing) > 10*e.cfg.Tick })
	if n, tr := len(e.sb.Slack().Messages()), len(e.triggers()); n != 1 || tr != 1 {
		t.Fatalf("%d Slack messages and %d triggers while silent, want 1 and 1", n, tr)
	}
	if !strings.Contains(e.sb.Slack().Messages()[0].Text, "No lead from source zillow") {
		t.Errorf("alert = %q", e.sb.Slack().Messages()[0].Text)
	}
	gw := bus.NewPublisher(e.js, bus.ServiceGateway, nil)
	if _, err := gw.Publish(natstest.Context(t, 10*time.Second), "webhook.received.lead.zillow", "webhook:zillow:1", &webhookv1.WebhookReceived{Source: "zillow"}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the resolve", func() bool {
		a := e.sb.PagerDuty().Alerts()
		return len(a) == 1 && a[0].Status == "resolved"
	})
}

// A LionDesk whose token is refused makes every poll of crm-sync fail: one
// alert, naming the service, what it polls and the vendor's answer, however
// long it keeps failing; the vendor's recovery resolves it.
func TestAlerter_failingPollAlertsOnceThenResolves(t *testing.T) {
	t.Parallel()
	e := setup(t, options{pollFailing: 300 * time.Millisecond})
	ld := e.sb.LionDesk()
	ld.InjectFault(sandbox.Fault{Method: http.MethodGet, Status: http.StatusUnauthorized, Count: 1 << 30, Body: `{"error":"invalid_token"}`})
	ccfg := crmsync.Config{CRM: "liondesk", LionDesk: crmtest.LionDeskConfig(e.base), PollInterval: 50 * time.Millisecond,
		Concurrency: 1, ShutdownTimeout: 5 * time.Second, Bus: e.cfg.Bus, IdentityPeppers: []string{"test-pepper-0123456789abcdef"}}
	poller, err := crmsync.New(ccfg, service.Deps{NATS: e.nc})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, poller.Run)

	natstest.Eventually(t, 30*time.Second, "the failing poll's alert", func() bool { return len(e.triggers()) == 1 })
	firing := time.Now()
	natstest.Eventually(t, 30*time.Second, "ten more ticks", func() bool { return time.Since(firing) > 10*e.cfg.Tick })
	if n, tr := len(e.sb.Slack().Messages()), len(e.triggers()); n != 1 || tr != 1 {
		t.Fatalf("%d Slack messages and %d triggers while the poll fails, want 1 and 1", n, tr)
	}
	msg := e.sb.Slack().Messages()[0]
	t.Logf("alert: %s %s", msg.Text, msg.Blocks)
	if !strings.Contains(msg.Text, "crm-sync: the poll of CRM liondesk has failed") {
		t.Errorf("alert = %q", msg.Text)
	}
	if text := msg.Text + string(msg.Blocks); !strings.Contains(text, "HTTP 401") || !strings.Contains(text, "invalid_token") {
		t.Errorf("the alert does not carry the last error: %s", text)
	}

	ld.ClearFaults()
	natstest.Eventually(t, 30*time.Second, "the resolve", func() bool {
		a := e.sb.PagerDuty().Alerts()
		return len(a) == 1 && a[0].Status == "resolved"
	})
	natstest.Eventually(t, 30*time.Second, "the resolve in Slack", func() bool {
		m := e.sb.Slack().Messages()
		return len(m) == 2 && strings.HasPrefix(m[1].Text, "Resolved: crm-sync: the poll of CRM liondesk")
	})
}

// Slack answers 429 with Retry-After: the alert waits and is delivered,
// and the channels that had it are not sent it again.
func TestAlerter_slackThrottleIsWaitedOutAndNothingIsLost(t *testing.T) {
	t.Parallel()
	e := setup(t, options{})
	e.sb.Slack().InjectFault(sandbox.Fault{Method: "POST", Status: 429, RetryAfter: 1, Body: "rate_limited"})
	e.fub.InjectFault(sandbox.Fault{Method: "POST", Path: "/v1/events", Status: 400, Count: 1})
	e.lead(t, "ld_throttled")
	natstest.Eventually(t, 30*time.Second, "the alert in Slack", func() bool { return len(e.sb.Slack().Messages()) == 1 })
	e.handled(t, bus.AlerterFailures, 1)
	if tr := len(e.triggers()); tr != 1 {
		t.Errorf("%d PagerDuty triggers, want 1", tr)
	}
	e.recv.mu.Lock()
	defer e.recv.mu.Unlock()
	if len(e.recv.ids) != 1 {
		t.Errorf("the webhook had the alert %d times, want 1", len(e.recv.ids))
	}
}

// Rejected leads are one alert per source, then a summary with the count.
func TestAlerter_rejectedLeadsAreSummarizedPerSource(t *testing.T) {
	t.Parallel()
	e := setup(t, options{window: 300 * time.Millisecond})
	norm := bus.NewPublisher(e.js, bus.ServiceNormalizer, nil)
	ctx := natstest.Context(t, 10*time.Second)
	for i, source := range []string{"zillow", "zillow", "zillow", "realtor"} {
		r := &leadv1.LeadRejected{LeadId: fmt.Sprintf("ld_rej_%d", i), LeadSource: source, Reason: "no email or phone for " + email,
			Partial: crmtest.Lead(fmt.Sprintf("ld_rej_%d", i), first, last, "", "")}
		if _, err := norm.Publish(ctx, "lead.rejected."+source, fmt.Sprintf("lead.rejected:%d", i), r); err != nil {
			t.Fatal(err)
		}
	}
	// Per source: its first rejection at once, the others summarized (in
	// one or more summaries, one per window, however the machine paces it).
	tally := func() (firsts map[string]int, summarized int) {
		firsts = map[string]int{}
		for _, m := range e.sb.Slack().Messages() {
			var n int
			var source string
			if _, err := fmt.Sscanf(m.Text, "%d more leads rejected from source %s", &n, &source); err == nil && source == "zillow" {
				summarized += n
			} else if _, err := fmt.Sscanf(m.Text, "Lead rejected from source %s", &source); err == nil {
				firsts[source]++
			} else {
				t.Errorf("unexpected message %q", m.Text)
			}
		}
		return firsts, summarized
	}
	natstest.Eventually(t, 30*time.Second, "the alerts and the summaries", func() bool {
		f, n := tally()
		return f["zillow"]+f["realtor"]+n >= 4
	})
	if f, n := tally(); f["zillow"] != 1 || f["realtor"] != 1 || n != 2 {
		t.Fatalf("first alerts %v and %d zillow rejections summarized, want one per source and 2", f, n)
	}
	assertNoPII(t, e.everything(t))
}

// A consumer whose oldest message waits too long is one alert: here
// reporting's, which no reporting service takes.
func TestAlerter_stuckConsumerAlertsOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, options{stuck: time.Second})
	e.lead(t, "ld_unread")
	natstest.Eventually(t, 30*time.Second, "the stuck alerts", func() bool {
		var all strings.Builder
		for _, m := range e.sb.Slack().Messages() {
			all.WriteString(m.Text + "\n")
		}
		return strings.Contains(all.String(), "Consumer reporting-leads is stuck") && strings.Contains(all.String(), "Consumer reporting-crm is stuck")
	})
	firing := time.Now()
	natstest.Eventually(t, 30*time.Second, "ten more ticks", func() bool { return time.Since(firing) > 10*e.cfg.Tick })
	// crm-sync took the lead; reporting's consumers of LEADS and CRM hold it and its outcome.
	var texts []string
	per := map[string]int{}
	for _, m := range e.sb.Slack().Messages() {
		texts = append(texts, m.Text)
		var consumer string
		if _, err := fmt.Sscanf(m.Text, "Consumer %s is stuck", &consumer); err == nil {
			per[consumer]++
		}
	}
	// (A loaded machine may make another consumer late for a moment: once each at most.)
	for consumer, n := range per {
		if n != 1 {
			t.Errorf("%d alerts for %s, want 1", n, consumer)
		}
	}
	if per["reporting-leads"] != 1 || per["reporting-crm"] != 1 {
		t.Fatalf("Slack had %q, want one alert each for reporting-leads and reporting-crm", texts)
	}
}

// A stream at 80% of its limit is one alert.
func TestAlerter_streamNearlyFullAlertsOnce(t *testing.T) {
	t.Parallel()
	e := setup(t, options{full: 0.8, maxBytes: 16 << 10})
	ctx := natstest.Context(t, 30*time.Second)
	s, err := e.js.Stream(ctx, bus.StreamLeads)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if bus.FullRatio(info) >= 0.85 {
			break
		}
		e.lead(t, fmt.Sprintf("ld_fill_%d", i))
	}
	natstest.Eventually(t, 30*time.Second, "the stream-full alert", func() bool {
		for _, m := range e.sb.Slack().Messages() {
			if strings.HasPrefix(m.Text, "Stream LEADS is ") {
				return true
			}
		}
		return false
	})
	firing := time.Now()
	natstest.Eventually(t, 30*time.Second, "ten more ticks", func() bool { return time.Since(firing) > 10*e.cfg.Tick })
	n := 0
	for _, m := range e.sb.Slack().Messages() {
		if strings.HasPrefix(m.Text, "Stream LEADS is ") {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d alerts for LEADS, want 1", n)
	}
}
