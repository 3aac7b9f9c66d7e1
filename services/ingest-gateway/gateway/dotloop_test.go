package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

const (
	dotloopKey  = "dotloop-signing-key"
	dotloopBody = `{"eventId":"evt_7","eventType":"LOOP_UPDATED","timestamp":1,"event":{"id":34308,"profileId":4711,"loopId":34308}}`
)

func dotloopHeaders(key string, ts time.Time, body string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	ms := ts.UnixMilli()
	h.Set(webhooksig.HeaderDotloopTimestamp, strconv.FormatInt(ms, 10))
	h.Set(webhooksig.HeaderDotloopSignature, webhooksig.SignDotloop(key, ms, []byte(body), webhooksig.DotloopTimestampBody))
	return h
}

func setupDotloop(t *testing.T) *env {
	t.Helper()
	return setupBuiltin(t, "webhook.received.tms.dotloop", func(cfg *gateway.Config) {
		cfg.DotloopSigningKeys = []string{dotloopKey}
		cfg.DotloopSigned = string(webhooksig.DotloopTimestampBody)
	})
}

// setupBuiltin serves one built-in source, configured by configure, whose
// webhooks go to subject.
func setupBuiltin(t *testing.T, subject string, configure func(*gateway.Config)) *env {
	t.Helper()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	cfg := testConfig()
	cfg.IDXSecrets = nil
	configure(&cfg)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	natstest.Apply(t, js, testTopology())
	g, err := gateway.New(cfg, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	if src := g.Sources(); len(src) != 1 || src[0].Subject() != subject {
		t.Fatalf("sources = %+v", src)
	}
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	return &env{srv: s, js: js, url: hs.URL}
}

func TestGateway_dotloopWebhookIsPersisted(t *testing.T) {
	t.Parallel()
	e := setupDotloop(t)
	code, resp := post(t, e.url+"/webhooks/dotloop", dotloopHeaders(dotloopKey, time.Now(), dotloopBody), dotloopBody)
	if code != http.StatusAccepted || resp.DeliveryID != "evt_7" {
		t.Fatalf("answer = %d %+v", code, resp)
	}
	msg := natstest.Last(t, e.js, bus.StreamWebhooks, "webhook.received.tms.dotloop")
	var got webhookv1.WebhookReceived
	if err := proto.Unmarshal(msg.Data, &got); err != nil {
		t.Fatal(err)
	}
	if string(got.GetBody()) != dotloopBody || got.GetKind() != webhookv1.Kind_KIND_TMS || msg.Header.Get("Nats-Msg-Id") != "webhook:dotloop:evt_7" {
		t.Fatalf("stored = %v %v", &got, msg.Header)
	}
}

func TestGateway_dotloopRejectsWithNoEvent(t *testing.T) {
	t.Parallel()
	e := setupDotloop(t)
	stale := dotloopHeaders(dotloopKey, time.Now().Add(-10*time.Minute), dotloopBody)
	wrong := dotloopHeaders("not-the-key", time.Now(), dotloopBody)
	tampered := dotloopHeaders(dotloopKey, time.Now(), dotloopBody)
	bodyOnly := dotloopHeaders(dotloopKey, time.Now(), dotloopBody)
	bodyOnly.Set(webhooksig.HeaderDotloopSignature, webhooksig.SignDotloop(dotloopKey, 0, []byte(dotloopBody), webhooksig.DotloopBody))
	noTS := dotloopHeaders(dotloopKey, time.Now(), dotloopBody)
	noTS.Del(webhooksig.HeaderDotloopTimestamp)
	for _, tt := range []struct {
		name string
		h    http.Header
		body string
	}{
		{"stale_timestamp", stale, dotloopBody},
		{"wrong_key", wrong, dotloopBody},
		{"tampered_body", tampered, dotloopBody[:len(dotloopBody)-2] + "9}}"},
		{"signed_body_only", bodyOnly, dotloopBody},
		{"no_timestamp", noTS, dotloopBody},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, resp := post(t, e.url+"/webhooks/dotloop", tt.h, tt.body)
			if code != http.StatusUnauthorized || resp.Error == "" || resp.Reason == "" {
				t.Fatalf("answer = %d %+v, want 401 with an error and a reason", code, resp)
			}
		})
	}
	if n := e.stored(t); n != 0 {
		t.Fatalf("rejected requests produced %d events", n)
	}
}

func TestConfigFromEnv_dotloopSigned(t *testing.T) {
	t.Parallel()
	if _, err := gateway.ConfigFromEnv([]string{"GATEWAY_DOTLOOP_SIGNING_KEYS=k", "GATEWAY_DOTLOOP_SIGNED=sha256"}); err == nil {
		t.Fatal("an unknown GATEWAY_DOTLOOP_SIGNED was accepted")
	}
	cfg, err := gateway.ConfigFromEnv([]string{"GATEWAY_DOTLOOP_SIGNING_KEYS=k", "GATEWAY_DOTLOOP_SIGNED=body"})
	if err != nil || cfg.DotloopSigned != "body" {
		t.Fatalf("cfg %+v, %v", cfg, err)
	}
}
