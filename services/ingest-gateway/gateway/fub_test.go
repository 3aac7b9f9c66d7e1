package gateway_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
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
	fubKey    = "fub-system-key-current"
	fubOldKey = "fub-system-key-previous"
	fubBody   = `{"eventId":"9c7f3c1e-5b1a-4a47-9d0e-3b3a3f0e2a11","eventCreated":"2026-03-02T15:04:05+00:00","event":"peopleStageUpdated","resourceIds":[40942],"uri":"https://api.followupboss.com/v1/people?id=40942"}`
)

// fubSign signs as Follow Up Boss does (pkg/webhooksig tests SignFUB against
// an independent implementation of the documented scheme).
func fubSign(key, body string) string { return webhooksig.SignFUB(key, []byte(body)) }

func fubHeaders(sig string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	if sig != "" {
		h.Set("FUB-Signature", sig)
	}
	return h
}

// setupFUB starts a gateway serving only the Follow Up Boss source, with two
// keys as during a rotation.
func setupFUB(t *testing.T) *env {
	t.Helper()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	cfg := testConfig()
	cfg.IDXSecrets = nil
	cfg.FUBSystemKeys = []string{fubKey, fubOldKey}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	natstest.Apply(t, js, testTopology())
	g, err := gateway.New(cfg, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	if src := g.Sources(); len(src) != 1 || src[0].Name != "followupboss" || src[0].Subject() != "webhook.received.crm.followupboss" {
		t.Fatalf("sources = %+v", src)
	}
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	return &env{srv: s, js: js, url: hs.URL}
}

func TestGateway_followUpBossWebhookIsPersisted(t *testing.T) {
	t.Parallel()
	e := setupFUB(t)
	for _, tt := range []struct {
		name, key, body, id string
	}{
		{"current_key", fubKey, fubBody, "9c7f3c1e-5b1a-4a47-9d0e-3b3a3f0e2a11"},
		{"rotated_out_key_still_valid", fubOldKey, strings.Replace(fubBody, "9c7f3c1e", "0a0a0a0a", 1), "0a0a0a0a-5b1a-4a47-9d0e-3b3a3f0e2a11"},
		{"uppercase_hex", fubKey, `{"eventId":12345,"event":"peopleUpdated","resourceIds":[1]}`, "12345"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sig := fubSign(tt.key, tt.body)
			if tt.name == "uppercase_hex" {
				sig = strings.ToUpper(sig)
			}
			code, resp := post(t, e.url+"/webhooks/followupboss", fubHeaders(sig), tt.body)
			if code != http.StatusAccepted || resp.DeliveryID != tt.id || resp.Source != "followupboss" {
				t.Fatalf("answer = %d %+v", code, resp)
			}
			msg := natstest.Last(t, e.js, bus.StreamWebhooks, "webhook.received.crm.followupboss")
			var got webhookv1.WebhookReceived
			if err := proto.Unmarshal(msg.Data, &got); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.GetBody(), []byte(tt.body)) || got.GetKind() != webhookv1.Kind_KIND_CRM || got.GetDeliveryId() != tt.id {
				t.Fatalf("stored = %v", &got)
			}
			if id := msg.Header.Get("Nats-Msg-Id"); id != "webhook:followupboss:"+tt.id {
				t.Fatalf("Nats-Msg-Id = %q", id)
			}
		})
	}
	// Follow Up Boss retries the same eventId: one event.
	code, resp := post(t, e.url+"/webhooks/followupboss", fubHeaders(fubSign(fubKey, fubBody)), fubBody)
	if code != http.StatusOK || !resp.Duplicate {
		t.Fatalf("retry = %d %+v, want 200 duplicate", code, resp)
	}
	if n := e.stored(t); n != 3 {
		t.Fatalf("WEBHOOKS holds %d messages, want 3", n)
	}
}

func TestGateway_followUpBossWithoutEventIDUsesTheBodyHash(t *testing.T) {
	t.Parallel()
	e := setupFUB(t)
	body := `{"event":"peopleUpdated","resourceIds":[7],"eventId":"has spaces\nand a newline"}`
	code, resp := post(t, e.url+"/webhooks/followupboss", fubHeaders(fubSign(fubKey, body)), body)
	sum := sha256.Sum256([]byte(body))
	if code != http.StatusAccepted || resp.DeliveryID != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Fatalf("answer = %d %+v", code, resp)
	}
}

func TestGateway_followUpBossRejectsWithNoEvent(t *testing.T) {
	t.Parallel()
	e := setupFUB(t)
	for _, tt := range []struct {
		name string
		sig  string
		body string
		code int
	}{
		{"missing_signature", "", fubBody, http.StatusUnauthorized},
		{"wrong_key", fubSign("not-the-system-key", fubBody), fubBody, http.StatusUnauthorized},
		{"tampered_body", fubSign(fubKey, fubBody), strings.Replace(fubBody, "40942", "40943", 1), http.StatusUnauthorized},
		{"signature_of_the_raw_body_not_its_base64", func() string {
			mac := hmac.New(sha256.New, []byte(fubKey))
			mac.Write([]byte(fubBody))
			return hex.EncodeToString(mac.Sum(nil))
		}(), fubBody, http.StatusUnauthorized},
		{"not_hex", "zz" + fubSign(fubKey, fubBody)[2:], fubBody, http.StatusUnauthorized},
		{"truncated", fubSign(fubKey, fubBody)[:40], fubBody, http.StatusUnauthorized},
		{"malformed_json", fubSign(fubKey, `{"event":`), `{"event":`, http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, resp := post(t, e.url+"/webhooks/followupboss", fubHeaders(tt.sig), tt.body)
			if code != tt.code || resp.Error == "" || resp.Reason == "" {
				t.Fatalf("answer = %d %+v, want %d with an error and a reason", code, resp, tt.code)
			}
		})
	}
	if n := e.stored(t); n != 0 {
		t.Fatalf("rejected requests produced %d events", n)
	}
	// The IDX route is not served when only Follow Up Boss is configured.
	code, _ := post(t, e.url+"/webhooks/idx", fubHeaders(fubSign(fubKey, fubBody)), fubBody)
	if code != http.StatusNotFound {
		t.Fatalf("/webhooks/idx = %d, want 404", code)
	}
}

func TestConfigFromEnv_followUpBossAlone(t *testing.T) {
	t.Parallel()
	cfg, err := gateway.ConfigFromEnv([]string{"GATEWAY_FUB_SYSTEM_KEYS=" + fubKey + "," + fubOldKey})
	if err != nil || len(cfg.FUBSystemKeys) != 2 {
		t.Fatalf("cfg = %+v, %v", cfg, err)
	}
	srcs, err := gateway.BuiltinSources(cfg)
	if err != nil || len(srcs) != 1 || srcs[0].Route != "/webhooks/followupboss" || srcs[0].Kind != webhookv1.Kind_KIND_CRM {
		t.Fatalf("sources = %+v, %v", srcs, err)
	}
	both, err := gateway.BuiltinSources(gateway.Config{IDXSecrets: []string{secret}, FUBSystemKeys: []string{fubKey}, TimestampTolerance: time.Minute})
	if err != nil || len(both) != 2 || both[0].Name != "idx" || both[1].Name != "followupboss" {
		t.Fatalf("sources = %+v, %v", both, err)
	}
	if _, err := gateway.ConfigFromEnv([]string{"GATEWAY_FUB_SYSTEM_KEYS_FILE=/nonexistent/keys"}); err == nil {
		t.Fatal("a missing keys file must be an error")
	}
}
