package gateway_test

import (
	"net/http"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

// Intuit's two payloads, as its documentation shows them: the legacy
// eventNotifications object and the CloudEvents array.
const (
	qbLegacyBody = `{"eventNotifications":[{"realmId":"310687","dataChangeEvent":{"entities":[{"id":"1234","operation":"Create","name":"Payment","lastUpdated":"2026-11-29T20:52:31.657Z"}]}}]}`
	qbCloudBody  = `[{"specversion":"1.0","id":"88cd52aa-33cc-4d2a-8f6e-2a1b3c4d5e6f","source":"intuit.dsnBgbseACLLRZNxo2dfc4evmEJdxde58xeeYcZliOU=","type":"qbo.payment.created.v1","datacontenttype":"application/json","time":"2026-11-29T20:52:31.657Z","intuitentityid":"1234","intuitaccountid":"310687","data":{}}]`
)

func qbHeaders(token, body string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set(gateway.HeaderIntuitSignature, webhooksig.SignHMACSHA256(token, webhooksig.Base64, "", []byte(body)))
	return h
}

func setupQuickBooks(t *testing.T, tokens ...string) *env {
	t.Helper()
	return setupBuiltin(t, "webhook.received.ledger.quickbooks", func(cfg *gateway.Config) { cfg.QuickBooksVerifierTokens = tokens })
}

// Both of Intuit's payloads are kept as they came, as ledger webhooks, under
// either verifier token of a rotation; Intuit's retry of one notification is
// stored once.
func TestGateway_quickbooksNotificationsArePersistedInBothFormats(t *testing.T) {
	t.Parallel()
	e := setupQuickBooks(t, "old-verifier-token", "new-verifier-token")
	for i, tt := range []struct {
		name, token, body, contentType string
	}{
		{"legacy", "old-verifier-token", qbLegacyBody, "application/json"},
		{"cloudevents", "new-verifier-token", qbCloudBody, "application/cloudevents-batch+json"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := qbHeaders(tt.token, tt.body)
			h.Set("Content-Type", tt.contentType)
			code, resp := post(t, e.url+"/webhooks/quickbooks", h, tt.body)
			if code != http.StatusAccepted || resp.DeliveryID == "" {
				t.Fatalf("answer = %d %+v", code, resp)
			}
			msg := natstest.Last(t, e.js, bus.StreamWebhooks, "webhook.received.ledger.quickbooks")
			var got webhookv1.WebhookReceived
			if err := proto.Unmarshal(msg.Data, &got); err != nil {
				t.Fatal(err)
			}
			if string(got.GetBody()) != tt.body || got.GetKind() != webhookv1.Kind_KIND_LEDGER || got.GetSource() != "quickbooks" {
				t.Fatalf("stored = %v", &got)
			}
			if n := e.stored(t); n != i+1 {
				t.Fatalf("%d webhooks stored, want %d", n, i+1)
			}
			code, again := post(t, e.url+"/webhooks/quickbooks", h, tt.body)
			if code != http.StatusOK || !again.Duplicate || again.DeliveryID != resp.DeliveryID {
				t.Fatalf("Intuit's retry answered %d %+v, want 200 duplicate of %s", code, again, resp.DeliveryID)
			}
			if n := e.stored(t); n != i+1 {
				t.Fatalf("the retry stored a second webhook: %d", n)
			}
		})
	}
}

func TestGateway_quickbooksRejectsWithNoEvent(t *testing.T) {
	t.Parallel()
	e := setupQuickBooks(t, "verifier-token")
	unsigned := qbHeaders("verifier-token", qbLegacyBody)
	unsigned.Del(gateway.HeaderIntuitSignature)
	hexSig := qbHeaders("verifier-token", qbLegacyBody)
	hexSig.Set(gateway.HeaderIntuitSignature, webhooksig.SignHMACSHA256("verifier-token", webhooksig.Hex, "", []byte(qbLegacyBody)))
	for _, tt := range []struct {
		name string
		h    http.Header
		body string
	}{
		{"wrong_token", qbHeaders("another-apps-token", qbLegacyBody), qbLegacyBody},
		{"tampered_body", qbHeaders("verifier-token", qbLegacyBody), qbLegacyBody[:len(qbLegacyBody)-4] + "]}}]}"},
		{"unsigned", unsigned, qbLegacyBody},
		{"hex_not_base64", hexSig, qbLegacyBody},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, resp := post(t, e.url+"/webhooks/quickbooks", tt.h, tt.body)
			if code != http.StatusUnauthorized || resp.Error == "" || resp.Reason == "" {
				t.Fatalf("answer = %d %+v, want 401 with an error and a reason", code, resp)
			}
		})
	}
	if n := e.stored(t); n != 0 {
		t.Fatalf("rejected requests produced %d events", n)
	}
}
