package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/sources"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

const secret = "whsec_dGVzdC1zZWNyZXQtZm9yLXRoZS1pbmdlc3QtZ2F0ZXdheQ=="

const leadBody = `{"type":"lead.created","timestamp":"2026-11-26T20:00:00Z","data":{"first_name":"Ada","last_name":"Lovelace","email":"ada@example.com","phone":"(415) 555-0134"}}`

func testConfig() gateway.Config {
	return gateway.Config{
		Addr:               "127.0.0.1:0",
		IDXSecrets:         []string{secret},
		TimestampTolerance: 5 * time.Minute,
		MaxBodyBytes:       4096,
		PublishTimeout:     2 * time.Second,
		ShutdownTimeout:    5 * time.Second,
		GroupCommit:        true,
	}
}

// testTopology is the apply step's declarations for these tests.
func testTopology() bus.Topology {
	return bus.Topology{Replicas: 1, DuplicateWindow: time.Hour, AckWait: 30 * time.Second, MaxDeliver: 8}
}

type env struct {
	srv *natstest.Server
	js  jetstream.JetStream
	url string
	g   *gateway.Gateway
	reg *prometheus.Registry
}

func setup(t *testing.T) *env {
	t.Helper()
	return setupWith(t, testConfig(), testTopology())
}

// setupWith serves a gateway of cfg, with its metrics on its own registry,
// on an embedded JetStream with topo applied.
func setupWith(t *testing.T, cfg gateway.Config, topo bus.Topology) *env {
	t.Helper()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	natstest.Apply(t, js, topo)
	reg := prometheus.NewRegistry()
	g, err := gateway.New(cfg, service.Deps{NATS: nc, Registerer: reg, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	return &env{srv: s, js: js, url: hs.URL, g: g, reg: reg}
}

func signed(t *testing.T, id string, ts time.Time, body string) http.Header {
	t.Helper()
	h, err := webhooksig.SignedHeaders(secret, id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	h.Set("Content-Type", "application/json")
	return h
}

func post(t *testing.T, url string, h http.Header, body string) (int, gateway.Response) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r gateway.Response
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("status %d: body is not JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, r
}

// stored counts every message in WEBHOOKS, whatever its subject, so that a
// zero proves no event at all.
func (e *env) stored(t *testing.T) int {
	t.Helper()
	return len(natstest.All(t, e.js, bus.StreamWebhooks, ">"))
}

func TestGateway_persistsASignedWebhookBeforeAnswering(t *testing.T) {
	t.Parallel()
	e := setup(t)
	h := signed(t, "msg_lead_1", time.Now(), leadBody)
	h.Set("Authorization", "Bearer not-for-the-log")
	h.Set("X-Api-Key", "also-secret")
	h.Set("X-Forwarded-For", "203.0.113.7")
	h.Set("Nats-Msg-Id", "caller-chosen")

	code, resp := post(t, e.url+"/webhooks/idx", h, leadBody)
	if code != http.StatusAccepted || resp.Status != "accepted" || resp.DeliveryID != "msg_lead_1" {
		t.Fatalf("answer = %d %+v", code, resp)
	}
	// The 202 came after the persisted ack: the message is there now.
	msg := natstest.Last(t, e.js, bus.StreamWebhooks, "webhook.received.lead.idx")
	var got webhookv1.WebhookReceived
	if err := proto.Unmarshal(msg.Data, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.GetBody(), []byte(leadBody)) || got.GetSource() != "idx" || got.GetKind() != webhookv1.Kind_KIND_LEAD ||
		got.GetDeliveryId() != "msg_lead_1" || got.GetReceivedAt() == nil || got.GetPath() != "/webhooks/idx" {
		t.Fatalf("stored event = %v", &got)
	}
	var names []string
	for _, hd := range got.GetHeaders() {
		names = append(names, hd.GetName())
	}
	for _, secretHeader := range []string{"authorization", "x-api-key"} {
		if slices.Contains(names, secretHeader) {
			t.Errorf("credential header %s was stored", secretHeader)
		}
	}
	for _, kept := range []string{"webhook-id", "webhook-signature", "webhook-timestamp", "x-forwarded-for"} {
		if !slices.Contains(names, kept) {
			t.Errorf("header %s was not stored; stored %v", kept, names)
		}
	}
	// HTTP headers never become NATS headers.
	if id := msg.Header.Get("Nats-Msg-Id"); id != "webhook:idx:msg_lead_1" {
		t.Errorf("Nats-Msg-Id = %q: a caller must not choose it", id)
	}
	for k := range msg.Header {
		if strings.EqualFold(k, "X-Forwarded-For") || strings.EqualFold(k, "Authorization") {
			t.Errorf("HTTP header %s copied into NATS headers", k)
		}
	}
	if msg.Header.Get("ce-type") != "brokerflow.webhook.v1.WebhookReceived" || msg.Header.Get("ce-source") != "ingest-gateway" {
		t.Errorf("ce headers = %v", msg.Header)
	}
}

func TestGateway_rejectsWithAReasonAndNoEvent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	now := time.Now()
	tests := []struct {
		name   string
		path   string
		method string
		header func() http.Header
		body   string
		code   int
	}{
		{"missing_signature", "/webhooks/idx", http.MethodPost, func() http.Header {
			h := signed(t, "m1", now, leadBody)
			h.Del("webhook-signature")
			return h
		}, leadBody, http.StatusUnauthorized},
		{"wrong_signature", "/webhooks/idx", http.MethodPost, func() http.Header {
			h, _ := webhooksig.SignedHeaders("whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==", "m2", now, []byte(leadBody))
			h.Set("Content-Type", "application/json")
			return h
		}, leadBody, http.StatusUnauthorized},
		{"tampered_body", "/webhooks/idx", http.MethodPost, func() http.Header { return signed(t, "m3", now, leadBody) },
			strings.Replace(leadBody, "ada@", "eve@", 1), http.StatusUnauthorized},
		{"stale_timestamp", "/webhooks/idx", http.MethodPost, func() http.Header { return signed(t, "m4", now.Add(-6*time.Minute), leadBody) }, leadBody, http.StatusUnauthorized},
		{"future_timestamp", "/webhooks/idx", http.MethodPost, func() http.Header { return signed(t, "m5", now.Add(6*time.Minute), leadBody) }, leadBody, http.StatusUnauthorized},
		{"malformed_json", "/webhooks/idx", http.MethodPost, func() http.Header { return signed(t, "m6", now, `{"type":`) }, `{"type":`, http.StatusBadRequest},
		{"oversized_body", "/webhooks/idx", http.MethodPost, func() http.Header {
			big := `{"pad":"` + strings.Repeat("x", 5000) + `"}`
			return signed(t, "m7", now, big)
		}, `{"pad":"` + strings.Repeat("x", 5000) + `"}`, http.StatusRequestEntityTooLarge},
		{"wrong_content_type", "/webhooks/idx", http.MethodPost, func() http.Header {
			h := signed(t, "m8", now, leadBody)
			h.Set("Content-Type", "text/plain")
			return h
		}, leadBody, http.StatusUnsupportedMediaType},
		{"unknown_source", "/webhooks/nope", http.MethodPost, func() http.Header { return signed(t, "m9", now, leadBody) }, leadBody, http.StatusNotFound},
		{"get_method", "/webhooks/idx", http.MethodGet, func() http.Header { return signed(t, "m10", now, leadBody) }, "", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(context.Background(), tt.method, e.url+tt.path, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header = tt.header()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var r gateway.Response
			if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
				t.Fatalf("status %d without a JSON body: %v", resp.StatusCode, err)
			}
			if resp.StatusCode != tt.code || r.Error == "" || r.Reason == "" {
				t.Fatalf("answer = %d %+v, want %d with an error and a reason", resp.StatusCode, r, tt.code)
			}
		})
	}
	if n := e.stored(t); n != 0 {
		t.Fatalf("rejected requests produced %d events", n)
	}
}

func TestGateway_signedRetryOfADeliveryIsOneEvent(t *testing.T) {
	t.Parallel()
	e := setup(t)
	code, _ := post(t, e.url+"/webhooks/idx", signed(t, "msg_retry", time.Now().Add(-time.Minute), leadBody), leadBody)
	if code != http.StatusAccepted {
		t.Fatalf("first delivery: %d", code)
	}
	// The provider retries: same webhook-id, new timestamp and signature.
	code, resp := post(t, e.url+"/webhooks/idx", signed(t, "msg_retry", time.Now(), leadBody), leadBody)
	if code != http.StatusOK || !resp.Duplicate {
		t.Fatalf("retry: %d %+v, want 200 duplicate", code, resp)
	}
	if n := e.stored(t); n != 1 {
		t.Fatalf("WEBHOOKS holds %d messages, want 1", n)
	}
}

func TestGateway_answers503WhenItCannotPersist(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, e.url+"/webhooks/idx", strings.NewReader(leadBody))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = signed(t, "msg_down", time.Now(), leadBody)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("answer = %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	cfg, err := gateway.ConfigFromEnv([]string{"GATEWAY_IDX_SECRETS=" + secret + ",whsec_b2xkLXNlY3JldC1zdGlsbC12YWxpZC1mb3ItYS1kYXk="})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != ":8080" || cfg.MaxBodyBytes != 1<<20 || len(cfg.IDXSecrets) != 2 || cfg.NATS.URL != "nats://127.0.0.1:4222" ||
		cfg.TimestampTolerance != 5*time.Minute {
		t.Fatalf("defaults = %+v", cfg)
	}
	for name, environ := range map[string][]string{
		"no_secret":     nil,
		"bad_duration":  {"GATEWAY_IDX_SECRETS=" + secret, "GATEWAY_PUBLISH_TIMEOUT=soon"},
		"zero_body":     {"GATEWAY_IDX_SECRETS=" + secret, "GATEWAY_MAX_BODY_BYTES=0"},
		"missing_file":  {"GATEWAY_IDX_SECRETS_FILE=/nonexistent/secret"},
		"bad_log_level": {"GATEWAY_IDX_SECRETS=" + secret, "GATEWAY_LOG_LEVEL=loud"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := gateway.ConfigFromEnv(environ); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

// TestFromSpec_kindIsTheSubjectToken: a sources file's kind is the Kind of
// the stored WebhookReceived and the token of its subject.
func TestFromSpec_kindIsTheSubjectToken(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kind    string
		want    webhookv1.Kind
		subject string
	}{
		{"lead", webhookv1.Kind_KIND_LEAD, "webhook.received.lead.hooks"},
		{"crm", webhookv1.Kind_KIND_CRM, "webhook.received.crm.hooks"},
		{"tms", webhookv1.Kind_KIND_TMS, "webhook.received.tms.hooks"},
		{"ledger", webhookv1.Kind_KIND_LEDGER, "webhook.received.ledger.hooks"},
	} {
		spec := sources.Spec{Name: "hooks", Kind: tt.kind, Route: "/webhooks/hooks", Format: sources.FormatJSON,
			Auth: sources.Auth{Scheme: sources.SchemeBasic, Secrets: []string{"user:password"}}}
		src, err := gateway.FromSpec(spec)
		if err != nil || src.Kind != tt.want || src.Subject() != tt.subject {
			t.Errorf("kind %s: source kind %v, subject %q, %v; want %v, %q", tt.kind, src.Kind, src.Subject(), err, tt.want, tt.subject)
		}
	}
	spec := sources.Spec{Name: "hooks", Kind: "invoice", Route: "/webhooks/hooks", Format: sources.FormatJSON,
		Auth: sources.Auth{Scheme: sources.SchemeBasic, Secrets: []string{"user:password"}}}
	if _, err := gateway.FromSpec(spec); err == nil || !strings.Contains(err.Error(), "lead, crm, tms, ledger") {
		t.Errorf("unknown kind: %v, want an error naming the kinds", err)
	}
}

func TestNewRegistry_namesTheBadSource(t *testing.T) {
	t.Parallel()
	sw, err := webhooksig.NewStandardWebhooks([]string{secret}, 0)
	if err != nil {
		t.Fatal(err)
	}
	good := gateway.Source{Name: "idx", Route: "/webhooks/idx", Verifiers: []gateway.Verifier{sw}, ContentTypes: []string{"application/json"}, Kind: webhookv1.Kind_KIND_LEAD}
	bad := good
	bad.Name, bad.Route, bad.Verifiers = "Zillow!", "/webhooks/zillow", nil
	unsigned := good
	unsigned.Name, unsigned.Route, unsigned.Verifiers = "fb", "/webhooks/fb", nil
	_, err = gateway.NewRegistry(good, bad, unsigned)
	if err == nil || !strings.Contains(err.Error(), `"Zillow!"`) || !strings.Contains(err.Error(), `"fb": no verifier`) {
		t.Fatalf("err = %v", err)
	}
}

func TestGateway_refusesToStartWithoutTheDeclaredStream(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	g, err := gateway.New(testConfig(), service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	err = g.Run(natstest.Context(t, 30*time.Second))
	if !errors.Is(err, bus.ErrNotApplied) || !strings.Contains(err.Error(), "brokerflow streams apply") {
		t.Fatalf("Run = %v, want ErrNotApplied naming the apply command", err)
	}
	if _, err := js.Stream(natstest.Context(t, 10*time.Second), bus.StreamWebhooks); err == nil {
		t.Fatal("the gateway created a stream")
	}
}
