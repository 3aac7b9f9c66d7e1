package app_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
	"github.com/brokerflow/brokerflow/services/normalizer/normalizer"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

const lead = `{"type":"lead.created","timestamp":"2026-11-26T20:00:00Z","data":{"name":"Grace Hopper","email":"Grace.Hopper@Example.org","phone":"+1 (212) 555-0199","inquiry_type":"sell","message":"What is my house worth?"}}`

type system struct {
	*app.App
	js    jetstream.JetStream
	hooks *bus.TestHooks
}

// start runs the all-in-one system with the sandbox on random ports and a
// temp directory; extra settings ("KEY=value") are added to the defaults.
func start(t *testing.T, extra ...string) *system {
	t.Helper()
	environ := append([]string{
		"BROKERFLOW_NATS_PORT=-1",
		"BROKERFLOW_DATA_DIR=" + t.TempDir(),
		"BROKERFLOW_OPS_ADDR=127.0.0.1:0",
		"BROKERFLOW_BUS_ACK_WAIT=1s",
		"BROKERFLOW_BUS_RETRY_SCHEDULE=20ms,40ms,80ms,160ms",
		// The sandbox shows a new person at once (no assignment delay): a
		// creation in doubt after a 5xx need not wait for it.
		"CRMSYNC_IDENTITY_VISIBLE_AFTER=100ms",
		"GATEWAY_ADDR=127.0.0.1:0", "BROKERFLOW_SANDBOX_ADDR=127.0.0.1:0", "REPORTING_ADDR=127.0.0.1:0",
	}, extra...)
	cfg, err := app.ConfigFromEnv(environ, app.Mode{Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	hooks := &bus.TestHooks{}
	a, err := app.Start(context.Background(), cfg, io.Discard, hooks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Stop()
		if err := a.Wait(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return &system{App: a, js: connect(t, a), hooks: hooks}
}

// connect opens a client connection to the system's NATS, as the operator.
func connect(t *testing.T, a *app.App) jetstream.JetStream {
	t.Helper()
	opts, err := a.ConnectOptions(bus.UserOperator)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(a.NATSURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func postSigned(t *testing.T, url, secret, id string, ts time.Time, body string) (int, string) {
	t.Helper()
	h, err := webhooksig.SignedHeaders(secret, id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	h.Set("Content-Type", "application/json")
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	return do(t, req)
}

// do sends req and returns the status and body.
func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func traceID(t *testing.T, h nats.Header) string {
	t.Helper()
	parts := strings.Split(h.Get("traceparent"), "-")
	if len(parts) != 4 {
		t.Fatalf("traceparent %q", h.Get("traceparent"))
	}
	return parts[1]
}

func TestSystem_signedWebhookBecomesACanonicalLead(t *testing.T) {
	t.Parallel()
	s := start(t)
	if code, body := postSigned(t, s.WebhookURL+"/webhooks/idx", app.DevIDXSecret, "msg_grace", time.Now(), lead); code != http.StatusAccepted {
		t.Fatalf("status %d: %s", code, body)
	}
	natstest.WaitSettled(t, s.js, bus.StreamWebhooks, "normalizer")

	m := natstest.Last(t, s.js, bus.StreamLeads, "lead.normalized.idx")
	var l leadv1.Lead
	if err := proto.Unmarshal(m.Data, &l); err != nil {
		t.Fatal(err)
	}
	c := l.GetContact()
	if c.GetEmail() != "grace.hopper@example.org" || c.GetMobilePhone() != "+12125550199" || c.GetLastName() != "Hopper" ||
		l.GetInquiry().GetType() != leadv1.InquiryType_INQUIRY_TYPE_SELL || l.GetLeadId() != normalizer.LeadID("idx", "msg_grace", 0) {
		t.Fatalf("lead = %v", &l)
	}
	// One trace follows the lead from the webhook to the normalized lead.
	wh := natstest.Last(t, s.js, bus.StreamWebhooks, "webhook.received.lead.idx")
	if traceID(t, wh.Header) != traceID(t, m.Header) {
		t.Fatalf("trace broken: webhook %s, lead %s", wh.Header.Get("traceparent"), m.Header.Get("traceparent"))
	}
}

func TestSystem_unsignedWebhookProducesNothing(t *testing.T) {
	t.Parallel()
	s := start(t)
	code, body := postSigned(t, s.WebhookURL+"/webhooks/idx", "whsec_c29tZW9uZS1lbHNlcy1zZWNyZXQtZm9yLWZvcmdlcnk=", "msg_forged", time.Now(), lead)
	if code != http.StatusUnauthorized || !strings.Contains(body, `"reason":"no signature matches"`) {
		t.Fatalf("status %d body %s", code, body)
	}
	if n := natstest.Count(t, s.js, bus.StreamWebhooks, "webhook.received.lead.idx"); n != 0 {
		t.Fatalf("%d webhooks stored from a forged request", n)
	}
}

func TestSystem_providerRetryAndCrashStillMakeOneLead(t *testing.T) {
	t.Parallel()
	s := start(t)
	// The normalizer "crashes" after publishing the lead, before its ack.
	s.hooks.SkipNextAcksOf("normalizer", 1)
	first, _ := postSigned(t, s.WebhookURL+"/webhooks/idx", app.DevIDXSecret, "msg_twice", time.Now().Add(-time.Minute), lead)
	again, _ := postSigned(t, s.WebhookURL+"/webhooks/idx", app.DevIDXSecret, "msg_twice", time.Now(), lead)
	if first != http.StatusAccepted || again != http.StatusOK {
		t.Fatalf("statuses %d then %d, want 202 then 200", first, again)
	}
	natstest.Eventually(t, 30*time.Second, "the redelivery after the skipped ack", func() bool {
		c, err := s.js.Consumer(context.Background(), bus.StreamWebhooks, "normalizer")
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.Delivered.Consumer >= 2 && info.NumAckPending == 0
	})
	s.settle(t)
	if n := natstest.Count(t, s.js, bus.StreamWebhooks, "webhook.received.lead.idx"); n != 1 {
		t.Fatalf("%d webhooks stored, want 1", n)
	}
	if n := natstest.Count(t, s.js, bus.StreamLeads, "lead.normalized.idx"); n != 1 {
		t.Fatalf("%d leads, want 1", n)
	}
}

func TestSystem_opsEndpoints(t *testing.T) {
	t.Parallel()
	s := start(t)
	postSigned(t, s.WebhookURL+"/webhooks/idx", app.DevIDXSecret, "msg_ops", time.Now(), lead)
	for path, want := range map[string]string{
		"/healthz": `"ok"`,
		"/readyz":  `"ready"`,
		"/metrics": `brokerflow_gateway_requests_total{code="202",source="idx"} 1`,
	} {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s.OpsURL+path, http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		if code, body := do(t, req); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("%s: %d, body lacks %s", path, code, want)
		}
	}
}

// The Standard Webhooks published test vector, end to end: it verifies at
// the gateway (with the clock at the vector's time), is persisted, and the
// normalizer rejects it with a reason because it is not a lead.
func TestGatewayToNormalizer_publishedTestVector(t *testing.T) {
	t.Parallel()
	const (
		secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
		id     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
		ts     = 1614265330
		body   = `{"test": 2432232314}`
		sig    = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	)
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv)
	topo := service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: 5 * time.Second}
	natstest.Apply(t, js, topo.Topology())
	sw, err := webhooksig.NewStandardWebhooks([]string{secret}, 0)
	if err != nil {
		t.Fatal(err)
	}
	sw = sw.WithClock(func() time.Time { return time.Unix(ts, 0) })
	gcfg := gateway.Config{MaxBodyBytes: 1 << 20, PublishTimeout: 5 * time.Second}
	gw, err := gateway.NewWithSources(gcfg, service.Deps{NATS: nc}, gateway.Source{
		Name: "idx", Kind: 1, Route: "/webhooks/idx", Verifiers: []gateway.Verifier{sw}, ContentTypes: []string{"application/json"}, Format: "json",
	})
	if err != nil {
		t.Fatal(err)
	}
	norm, err := normalizer.New(normalizer.Config{DefaultRegion: "US", Concurrency: 1, ShutdownTimeout: 5 * time.Second, Bus: topo.ConsumeConfig}, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, norm.Run)
	natstest.WaitConsumer(t, js, bus.StreamWebhooks, "normalizer")
	hs := newServer(t, gw.Handler())

	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, hs+"/webhooks/idx", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.Itoa(ts))
	req.Header.Set("webhook-signature", sig)
	if code, body := do(t, req); code != http.StatusAccepted {
		t.Fatalf("the published vector must verify: status %d %s", code, body)
	}
	natstest.WaitSettled(t, js, bus.StreamWebhooks, "normalizer")
	var r leadv1.LeadRejected
	if err := proto.Unmarshal(natstest.Last(t, js, bus.StreamLeads, "lead.rejected.idx").Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.GetDeliveryId() != id || r.GetReason() == "" {
		t.Fatalf("rejection = %v", &r)
	}
}

func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// settle waits for every consumer of the lead path to finish.
func (s *system) settle(t *testing.T) {
	t.Helper()
	natstest.WaitSettled(t, s.js, bus.StreamWebhooks, "normalizer")
	natstest.WaitSettled(t, s.js, bus.StreamLeads, "crm-sync")
}

func (s *system) post(t *testing.T, id, body string) int {
	t.Helper()
	code, answer := postSigned(t, s.WebhookURL+"/webhooks/idx", app.DevIDXSecret, id, time.Now(), body)
	if code != http.StatusAccepted && code != http.StatusOK {
		t.Fatalf("POST %s: %d %s", id, code, answer)
	}
	return code
}

func TestSystem_leadArrivesInTheCRMAsOneContact(t *testing.T) {
	t.Parallel()
	s := start(t)
	fub := s.Sandbox.FUB()
	s.post(t, "msg_crm_1", lead)
	s.settle(t)
	people := fub.People()
	if len(people) != 1 || len(fub.Events()) != 1 || people[0].Emails[0].Value != "grace.hopper@example.org" || people[0].Phones[0].Value != "+12125550199" {
		t.Fatalf("people %+v, %d events", people, len(fub.Events()))
	}
	// The repeat visitor: a second lead with the same email is an event on her contact.
	s.post(t, "msg_crm_2", strings.Replace(lead, "What is my house worth?", "Ready to list next month.", 1))
	s.settle(t)
	people, events := fub.People(), fub.Events()
	if len(people) != 1 || len(events) != 2 || events[1].PersonID != people[0].ID || !strings.HasPrefix(events[1].Message, "Ready to list next month.\n\n(Brokerflow lead ") {
		t.Fatalf("people %+v, events %+v", people, events)
	}
}

func TestSystem_crashesBeforeAcksStillLeaveOneContactAndOneEvent(t *testing.T) {
	t.Parallel()
	s := start(t)
	// The next two successful handlers "crash" before their ack: the
	// normalizer's and crm-sync's, so both messages are redelivered.
	s.hooks.SkipNextAcksOf("normalizer", 1)
	s.hooks.SkipNextAcksOf("crm-sync", 1)
	s.post(t, "msg_crash", lead)
	natstest.Eventually(t, 30*time.Second, "both redeliveries", func() bool {
		for _, c := range []struct{ stream, name string }{{bus.StreamWebhooks, "normalizer"}, {bus.StreamLeads, "crm-sync"}} {
			cons, err := s.js.Consumer(context.Background(), c.stream, c.name)
			if err != nil {
				return false
			}
			info, err := cons.Info(context.Background())
			if err != nil || info.Delivered.Consumer < 2 || info.NumAckPending != 0 {
				return false
			}
		}
		return true
	})
	s.settle(t)
	if p, ev := len(s.Sandbox.FUB().People()), len(s.Sandbox.FUB().Events()); p != 1 || ev != 1 {
		t.Fatalf("%d people and %d events after redeliveries, want 1 and 1", p, ev)
	}
}

func TestSystem_crmServerErrorsAreRetried(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.Sandbox.FUB().InjectFault(sandbox.Fault{Method: http.MethodPost, Path: "/v1/events", Status: http.StatusInternalServerError, Count: 3})
	s.post(t, "msg_500", lead)
	natstest.Eventually(t, 30*time.Second, "the lead in the CRM", func() bool { return len(s.Sandbox.FUB().People()) == 1 })
	s.settle(t)
	if n := natstest.Count(t, s.js, bus.StreamOps, bus.FailureSubject(bus.ServiceCRMSync)); n != 0 {
		t.Fatalf("%d failure records for errors that were retried", n)
	}
}

func TestSystem_crmRejectionIsOneFailureThenRedriveDeliversIt(t *testing.T) {
	t.Parallel()
	s := start(t)
	s.Sandbox.FUB().InjectFault(sandbox.Fault{Method: http.MethodPost, Path: "/v1/events", Status: http.StatusBadRequest, Count: 1, Body: `{"errorMessage":"Invalid email"}`})
	s.post(t, "msg_400", lead)
	failures := bus.FailureSubject(bus.ServiceCRMSync)
	natstest.Eventually(t, 30*time.Second, "one failure record", func() bool { return natstest.Count(t, s.js, bus.StreamOps, failures) == 1 })
	s.settle(t)
	if n := len(s.Sandbox.FUB().People()); n != 0 {
		t.Fatalf("%d people after a rejection", n)
	}
	var f opsv1.Failure
	if err := proto.Unmarshal(natstest.Last(t, s.js, bus.StreamOps, failures).Data, &f); err != nil {
		t.Fatal(err)
	}
	if f.GetClass() != opsv1.ErrorClass_ERROR_CLASS_PERMANENT || !strings.Contains(f.GetReason(), "Invalid email") {
		t.Fatalf("failure = %v", &f)
	}
	// The alerter, on its own NATS user, tells the sandbox's Slack and PagerDuty.
	natstest.Eventually(t, 30*time.Second, "the alert", func() bool {
		return len(s.Sandbox.Slack().Messages()) == 1 && len(s.Sandbox.PagerDuty().Alerts()) == 1
	})
	redrive := fmt.Sprintf("brokerflow failures redrive crm-sync %s %d", f.GetMessage().GetStream(), f.GetMessage().GetSequence())
	if blocks := string(s.Sandbox.Slack().Messages()[0].Blocks); !strings.Contains(blocks, redrive) {
		t.Fatalf("the Slack alert lacks %q:\n%s", redrive, blocks)
	}
	// The cause is fixed (the fault is spent); the operator redrives.
	pub := bus.NewPublisher(s.js, "test", nil)
	if _, err := bus.RequestRedrive(natstest.Context(t, 10*time.Second), pub, bus.ServiceCRMSync, f.GetMessage().GetStream(), f.GetMessage().GetSequence(), "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the redriven lead in the CRM", func() bool { return len(s.Sandbox.FUB().People()) == 1 })
	if n := natstest.Count(t, s.js, bus.StreamOps, failures); n != 1 {
		t.Fatalf("%d failure records after a good redrive, want 1", n)
	}
	natstest.Eventually(t, 30*time.Second, "PagerDuty's resolve", func() bool {
		a := s.Sandbox.PagerDuty().Alerts()
		return len(a) == 1 && a[0].Status == "resolved"
	})
}
