package gateway_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
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

// schemesFile declares one source per auth scheme, as a brokerage would.
const schemesFile = `
sources:
  - name: website
    auth: {scheme: standard_webhooks, secrets_env: WEBSITE_SECRETS}
    mapping: {email: "body.data?.email"}
  - name: hooks
    auth: {scheme: hmac_sha256, header: X-Signature, prefix: "sha256=", encoding: hex, delivery_id_header: X-Delivery-Id}
    mapping: {email: body.email}
  - name: realtor
    auth: {scheme: api_key, header: X-API-Key, delivery_id_header: X-Delivery-Id}
    mapping: {email: body.contact.email}
  - name: zillow
    route: /webhooks/zillow-rentals
    auth: {scheme: shared_secret, query: token}
    format: form
    mapping: {email: body.email}
  - name: fb
    auth: {scheme: facebook}
    format: facebook_leadgen
    mapping: {email: fields.email}
  - name: vendor
    auth: {scheme: basic, delivery_id_header: X-Delivery-Id}
    mapping: {email: body.email}
  - name: inbound
    auth: {scheme: shared_secret, header: X-Inbound-Secret}
    format: email
    templates:
      - name: any
        fields: {email: 'Email: (\S+)'}
    mapping: {email: fields.email}
  - name: fubcrm
    kind: crm
    auth: {scheme: fub_signature}
  - name: limited
    auth: {scheme: api_key, header: X-API-Key}
    rate_limit: {per_second: 0.01, burst: 2}
    mapping: {email: body.email}
`

const (
	websiteSecret = "whsec_d2Vic2l0ZS1zZWNyZXQtZm9yLXRoZS1oYXJkZW5pbmctdGVzdHM="
	hooksSecret   = "hooks-hmac-secret"
	realtorKey    = "realtor-api-key"
	zillowToken   = "zillow-shared-secret"
	fbAppSecret   = "facebook-app-secret"
	fbVerifyToken = "facebook-verify-token"
	vendorUser    = "vendor:s3cret:pass"
	inboundSecret = "inbound-parse-secret"
	fubcrmKey     = "fub-system-key"
)

var schemesEnv = map[string]string{
	"WEBSITE_SECRETS":              websiteSecret,
	"SOURCE_HOOKS_SECRETS":         hooksSecret,
	"SOURCE_REALTOR_SECRETS":       "old-realtor-key, " + realtorKey,
	"SOURCE_ZILLOW_SECRETS":        zillowToken,
	"SOURCE_FB_SECRETS":            fbAppSecret,
	"SOURCE_FB_VERIFY_TOKEN":       fbVerifyToken,
	"SOURCE_VENDOR_SECRETS":        vendorUser,
	"SOURCE_INBOUND_SECRETS":       inboundSecret,
	"SOURCE_FUBCRM_SECRETS":        fubcrmKey,
	"SOURCE_LIMITED_SECRETS":       realtorKey,
	"GATEWAY_MAX_BODY_BYTES":       "4096",
	"GATEWAY_PUBLISH_TIMEOUT":      "2s",
	"GATEWAY_BUS_DUPLICATE_WINDOW": "1h",
}

// writeSources writes a sources file in a temporary directory and returns
// the environment of a gateway reading it.
func writeSources(t *testing.T, yaml string, vars map[string]string) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	environ := []string{"GATEWAY_SOURCES_FILE=" + path, "GATEWAY_ADDR=127.0.0.1:0"}
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	return environ
}

// startFromEnv starts a gateway configured only through its environment,
// as main does, on an embedded JetStream and a real HTTP server.
func startFromEnv(t *testing.T, environ []string) *env {
	t.Helper()
	cfg, err := gateway.ConfigFromEnv(environ)
	if err != nil {
		t.Fatal(err)
	}
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	natstest.Apply(t, js, testTopology())
	g, err := gateway.New(cfg, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	return &env{srv: s, js: js, url: hs.URL}
}

// answer is what the gateway said.
type answer struct {
	code   int
	header http.Header
	body   string
	resp   gateway.Response
}

func send(t *testing.T, method, url string, h http.Header, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if h.Get("Transfer-Encoding") == "chunked" {
		// No Content-Length: the gateway learns the size only by reading.
		req.Header.Del("Transfer-Encoding")
		req.ContentLength, req.Body = -1, io.NopCloser(strings.NewReader(body))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{code: resp.StatusCode, header: resp.Header, body: string(raw)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(raw, &a.resp); err != nil {
			t.Fatalf("status %d: JSON body does not parse: %v", resp.StatusCode, err)
		}
	}
	return a
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

const (
	jsonLead = `{"email":"ada@example.com","contact":{"email":"ada@example.com"},"data":{"email":"ada@example.com"}}`
	formLead = "email=ada%40example.com&name=Ada+Lovelace&listing=MLS123"
	fbLead   = `{"object":"page","entry":[{"id":"153125381133","time":1447342027,"changes":[{"field":"leadgen","value":{"leadgen_id":"444444444444","form_id":"1","page_id":"153125381133"}}]}]}`
)

func websiteHeaders(t *testing.T, id string, ts time.Time, body string) http.Header {
	t.Helper()
	h, err := webhooksig.SignedHeaders(websiteSecret, id, ts, []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	h.Set("Content-Type", "application/json")
	return h
}

func basicAuth(userpass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(userpass))
}

// emailBody is a SendGrid Inbound Parse style multipart post.
func emailBody(t *testing.T) (contentType, body string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for k, v := range map[string]string{"from": "leads@zillow.example", "subject": "New lead", "text": "Name: Ada\nEmail: ada@example.com\n"} {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), b.String()
}

// signedRequest is one correctly authenticated, well-formed request per
// source of schemesFile.
type signedRequest struct {
	source, path, body string
	header             http.Header
}

func signedRequests(t *testing.T, now time.Time) []signedRequest {
	t.Helper()
	mailType, mail := emailBody(t)
	return []signedRequest{
		{"website", "/webhooks/website", jsonLead, websiteHeaders(t, "msg_website_1", now, jsonLead)},
		{"hooks", "/webhooks/hooks", jsonLead, hdr("Content-Type", "application/json", "X-Delivery-Id", "dlv-42",
			"X-Signature", webhooksig.SignHMACSHA256(hooksSecret, webhooksig.Hex, "sha256=", []byte(jsonLead)))},
		{"realtor", "/webhooks/realtor", jsonLead, hdr("Content-Type", "application/json", "X-API-Key", realtorKey)},
		{"zillow", "/webhooks/zillow-rentals?token=" + zillowToken, formLead, hdr("Content-Type", "application/x-www-form-urlencoded")},
		{"fb", "/webhooks/fb", fbLead, hdr("Content-Type", "application/json", "X-Hub-Signature-256", webhooksig.SignFacebook(fbAppSecret, []byte(fbLead)))},
		{"vendor", "/webhooks/vendor", jsonLead, hdr("Content-Type", "application/json; charset=utf-8", "Authorization", basicAuth(vendorUser))},
		{"inbound", "/webhooks/inbound", mail, hdr("Content-Type", mailType, "X-Inbound-Secret", inboundSecret)},
		{"fubcrm", "/webhooks/fubcrm", `{"eventId":"ev-1","event":"peopleUpdated"}`, hdr("Content-Type", "application/json",
			"FUB-Signature", webhooksig.SignFUB(fubcrmKey, []byte(`{"eventId":"ev-1","event":"peopleUpdated"}`)))},
	}
}

func TestGateway_adversarialRequestsGetAReasonAndNoEvent(t *testing.T) {
	t.Parallel()
	e := startFromEnv(t, writeSources(t, schemesFile, schemesEnv))
	now := time.Now()
	mailType, mail := emailBody(t)
	big := `{"pad":"` + strings.Repeat("x", 5000) + `"}`
	jsonType := "application/json"
	tests := []struct {
		name, method, path, body string
		header                   http.Header
		code                     int
		kind                     string
	}{
		// Signatures, per scheme.
		{"standard_webhooks_wrong_secret", "POST", "/webhooks/website", jsonLead, func() http.Header {
			h, _ := webhooksig.SignedHeaders("whsec_bm90LXRoZS13ZWJzaXRlLXNlY3JldC1hdC1hbGw=", "m1", now, []byte(jsonLead))
			h.Set("Content-Type", jsonType)
			return h
		}(), 401, "unauthorized"},
		{"standard_webhooks_tampered_body", "POST", "/webhooks/website", strings.Replace(jsonLead, "ada@", "eve@", 1), websiteHeaders(t, "m2", now, jsonLead), 401, "unauthorized"},
		{"standard_webhooks_stale_timestamp", "POST", "/webhooks/website", jsonLead, websiteHeaders(t, "m3", now.Add(-6*time.Minute), jsonLead), 401, "unauthorized"},
		{"standard_webhooks_future_timestamp", "POST", "/webhooks/website", jsonLead, websiteHeaders(t, "m4", now.Add(6*time.Minute), jsonLead), 401, "unauthorized"},
		{"standard_webhooks_missing_signature", "POST", "/webhooks/website", jsonLead, hdr("Content-Type", jsonType, "webhook-id", "m5"), 401, "unauthorized"},
		{"hmac_wrong_secret", "POST", "/webhooks/hooks", jsonLead, hdr("Content-Type", jsonType,
			"X-Signature", webhooksig.SignHMACSHA256("guess", webhooksig.Hex, "sha256=", []byte(jsonLead))), 401, "unauthorized"},
		{"hmac_missing_prefix", "POST", "/webhooks/hooks", jsonLead, hdr("Content-Type", jsonType,
			"X-Signature", webhooksig.SignHMACSHA256(hooksSecret, webhooksig.Hex, "", []byte(jsonLead))), 401, "unauthorized"},
		{"api_key_missing", "POST", "/webhooks/realtor", jsonLead, hdr("Content-Type", jsonType), 401, "unauthorized"},
		{"api_key_wrong", "POST", "/webhooks/realtor", jsonLead, hdr("Content-Type", jsonType, "X-API-Key", "realtor-api-ke"), 401, "unauthorized"},
		{"shared_secret_wrong_query", "POST", "/webhooks/zillow-rentals?token=guess", formLead, hdr("Content-Type", "application/x-www-form-urlencoded"), 401, "unauthorized"},
		{"shared_secret_missing", "POST", "/webhooks/zillow-rentals", formLead, hdr("Content-Type", "application/x-www-form-urlencoded"), 401, "unauthorized"},
		{"shared_secret_wrong_header", "POST", "/webhooks/inbound", mail, hdr("Content-Type", mailType, "X-Inbound-Secret", "guess"), 401, "unauthorized"},
		{"facebook_bad_signature", "POST", "/webhooks/fb", fbLead, hdr("Content-Type", jsonType, "X-Hub-Signature-256", webhooksig.SignFacebook("not-the-app-secret", []byte(fbLead))), 401, "unauthorized"},
		{"facebook_sha1_only", "POST", "/webhooks/fb", fbLead, hdr("Content-Type", jsonType, "X-Hub-Signature", "sha1=0000"), 401, "unauthorized"},
		{"basic_wrong_password", "POST", "/webhooks/vendor", jsonLead, hdr("Content-Type", jsonType, "Authorization", basicAuth("vendor:s3cret:guess")), 401, "unauthorized"},
		{"basic_missing", "POST", "/webhooks/vendor", jsonLead, hdr("Content-Type", jsonType), 401, "unauthorized"},
		{"fub_signature_wrong_key", "POST", "/webhooks/fubcrm", `{"eventId":"x"}`, hdr("Content-Type", jsonType, "FUB-Signature", webhooksig.SignFUB("guess", []byte(`{"eventId":"x"}`))), 401, "unauthorized"},
		// Facebook's handshake.
		{"hub_challenge_wrong_token", "GET", "/webhooks/fb?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=guess", "", nil, 403, "forbidden"},
		{"hub_challenge_wrong_mode", "GET", "/webhooks/fb?hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=" + fbVerifyToken, "", nil, 403, "forbidden"},
		{"hub_challenge_on_another_scheme", "GET", "/webhooks/realtor?hub.mode=subscribe&hub.challenge=1&hub.verify_token=" + fbVerifyToken, "", nil, 405, "method_not_allowed"},
		// Bodies.
		{"oversized_body", "POST", "/webhooks/realtor", big, hdr("Content-Type", jsonType, "X-API-Key", realtorKey), 413, "body_too_large"},
		{"oversized_body_chunked", "POST", "/webhooks/website", big, func() http.Header {
			h := websiteHeaders(t, "m6", now, big)
			h.Set("Transfer-Encoding", "chunked")
			return h
		}(), 413, "body_too_large"},
		{"malformed_json", "POST", "/webhooks/website", `{"data":`, websiteHeaders(t, "m7", now, `{"data":`), 400, "malformed_json"},
		{"malformed_json_facebook", "POST", "/webhooks/fb", `{"object":"page",`, hdr("Content-Type", jsonType, "X-Hub-Signature-256", webhooksig.SignFacebook(fbAppSecret, []byte(`{"object":"page",`))), 400, "malformed_json"},
		{"malformed_form", "POST", "/webhooks/zillow-rentals?token=" + zillowToken, "email=%zz", hdr("Content-Type", "application/x-www-form-urlencoded"), 400, "malformed_form"},
		{"malformed_multipart", "POST", "/webhooks/inbound", "--nope\r\nnot a part", hdr("Content-Type", "multipart/form-data; boundary=xyz", "X-Inbound-Secret", inboundSecret), 400, "malformed_multipart"},
		{"multipart_without_boundary", "POST", "/webhooks/inbound", mail, hdr("Content-Type", "multipart/form-data", "X-Inbound-Secret", inboundSecret), 400, "malformed_multipart"},
		{"wrong_content_type", "POST", "/webhooks/website", jsonLead, func() http.Header {
			h := websiteHeaders(t, "m8", now, jsonLead)
			h.Set("Content-Type", "text/plain")
			return h
		}(), 415, "unsupported_media_type"},
		{"json_to_a_form_source", "POST", "/webhooks/zillow-rentals?token=" + zillowToken, jsonLead, hdr("Content-Type", jsonType), 415, "unsupported_media_type"},
		{"no_content_type", "POST", "/webhooks/realtor", jsonLead, hdr("X-API-Key", realtorKey), 415, "unsupported_media_type"},
		// Routes and methods.
		{"unknown_source", "POST", "/webhooks/nope", jsonLead, hdr("Content-Type", jsonType, "X-API-Key", realtorKey), 404, "unknown_source"},
		{"route_with_a_trailing_slash", "POST", "/webhooks/realtor/", jsonLead, hdr("Content-Type", jsonType, "X-API-Key", realtorKey), 404, "unknown_source"},
		{"put", "PUT", "/webhooks/realtor", jsonLead, hdr("Content-Type", jsonType, "X-API-Key", realtorKey), 405, "method_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := send(t, tt.method, e.url+tt.path, tt.header, tt.body)
			if a.code != tt.code || a.resp.Error != tt.kind || a.resp.Reason == "" {
				t.Fatalf("answer = %d %q, want %d with error %q and a reason", a.code, a.body, tt.code, tt.kind)
			}
		})
	}
	if n := e.stored(t); n != 0 {
		t.Fatalf("rejected requests produced %d events in WEBHOOKS", n)
	}
}

func TestGateway_everySchemeAcceptsOnceAndDedupsItsRetries(t *testing.T) {
	t.Parallel()
	e := startFromEnv(t, writeSources(t, schemesFile, schemesEnv))
	reqs := signedRequests(t, time.Now())
	for _, r := range reqs {
		t.Run(r.source, func(t *testing.T) {
			a := send(t, http.MethodPost, e.url+r.path, r.header, r.body)
			if a.code != http.StatusAccepted || a.resp.Source != r.source || a.resp.DeliveryID == "" {
				t.Fatalf("answer = %d %q", a.code, a.body)
			}
			kind := "lead"
			if r.source == "fubcrm" {
				kind = "crm"
			}
			msg := natstest.Last(t, e.js, bus.StreamWebhooks, "webhook.received."+kind+"."+r.source)
			var got webhookv1.WebhookReceived
			if err := proto.Unmarshal(msg.Data, &got); err != nil {
				t.Fatal(err)
			}
			if string(got.GetBody()) != r.body || got.GetDeliveryId() != a.resp.DeliveryID {
				t.Fatalf("stored = %v", &got)
			}
			for _, h := range got.GetHeaders() {
				if n := h.GetName(); n == "x-api-key" || n == "authorization" || n == "x-inbound-secret" {
					t.Errorf("credential header %s stored", n)
				}
			}
			// The provider retries the same delivery.
			retry := send(t, http.MethodPost, e.url+r.path, r.header, r.body)
			if retry.code != http.StatusOK || !retry.resp.Duplicate || retry.resp.DeliveryID != a.resp.DeliveryID {
				t.Fatalf("retry = %d %q, want 200 duplicate", retry.code, retry.body)
			}
		})
	}
	if n := e.stored(t); n != len(reqs) {
		t.Fatalf("WEBHOOKS holds %d messages for %d deliveries", n, len(reqs))
	}
	// The delivery id: the one the scheme signs, or else the body hash
	// (never an unsigned header: TestGateway_replayUnderAFreshDeliveryIDHeaderIsNoSecondLead).
	for subject, want := range map[string]string{
		"lead.website": "webhook:website:msg_website_1", "lead.hooks": "webhook:hooks:sha256:",
		"crm.fubcrm": "webhook:fubcrm:ev-1", "lead.realtor": "webhook:realtor:sha256:",
	} {
		got := natstest.Last(t, e.js, bus.StreamWebhooks, "webhook.received."+subject)
		if id := got.Header.Get("Nats-Msg-Id"); !strings.HasPrefix(id, want) {
			t.Errorf("%s: Nats-Msg-Id = %q, want %s…", subject, id, want)
		}
	}
}

func TestGateway_standardWebhooksRetryWithANewSignatureIsOneEvent(t *testing.T) {
	t.Parallel()
	e := startFromEnv(t, writeSources(t, schemesFile, schemesEnv))
	first := send(t, http.MethodPost, e.url+"/webhooks/website", websiteHeaders(t, "msg_r", time.Now().Add(-2*time.Minute), jsonLead), jsonLead)
	retry := send(t, http.MethodPost, e.url+"/webhooks/website", websiteHeaders(t, "msg_r", time.Now(), jsonLead), jsonLead)
	if first.code != http.StatusAccepted || retry.code != http.StatusOK || !retry.resp.Duplicate {
		t.Fatalf("first %d, retry %d %q", first.code, retry.code, retry.body)
	}
	if n := e.stored(t); n != 1 {
		t.Fatalf("WEBHOOKS holds %d messages, want 1", n)
	}
}

// Schemes whose signature (or key) covers no delivery id: a request replayed
// under a fresh delivery-id header, by whoever read it from WEBHOOKS, is the
// same delivery, and the same lead. The header is kept as metadata.
func TestGateway_replayUnderAFreshDeliveryIDHeaderIsNoSecondLead(t *testing.T) {
	t.Parallel()
	e := startFromEnv(t, writeSources(t, schemesFile, schemesEnv))
	for _, r := range signedRequests(t, time.Now()) {
		if r.source != "hooks" && r.source != "realtor" && r.source != "vendor" {
			continue
		}
		t.Run(r.source, func(t *testing.T) {
			first := r.header.Clone()
			first.Set("X-Delivery-Id", "dlv-"+r.source+"-1")
			a := send(t, http.MethodPost, e.url+r.path, first, r.body)
			if a.code != http.StatusAccepted || !strings.HasPrefix(a.resp.DeliveryID, "sha256:") {
				t.Fatalf("first = %d %q, want 202 with the body's hash as the delivery id", a.code, a.body)
			}
			replay := r.header.Clone()
			replay.Set("X-Delivery-Id", "dlv-"+r.source+"-replayed")
			b := send(t, http.MethodPost, e.url+r.path, replay, r.body)
			if b.code != http.StatusOK || !b.resp.Duplicate || b.resp.DeliveryID != a.resp.DeliveryID {
				t.Fatalf("replay = %d %q, want 200 duplicate of %s", b.code, b.body, a.resp.DeliveryID)
			}
			stored := natstest.All(t, e.js, bus.StreamWebhooks, "webhook.received.lead."+r.source)
			if len(stored) != 1 {
				t.Fatalf("WEBHOOKS holds %d messages for %s, want 1", len(stored), r.source)
			}
			var got webhookv1.WebhookReceived
			if err := proto.Unmarshal(stored[0].Data(), &got); err != nil {
				t.Fatal(err)
			}
			// The lead id derives from the delivery id: one delivery id, one lead.
			kept := false
			for _, h := range got.GetHeaders() {
				kept = kept || (h.GetName() == "x-delivery-id" && len(h.GetValues()) == 1 && h.GetValues()[0] == "dlv-"+r.source+"-1")
			}
			if got.GetDeliveryId() != a.resp.DeliveryID || !kept {
				t.Fatalf("stored delivery id %q, headers %v: want %s, and the header kept", got.GetDeliveryId(), got.GetHeaders(), a.resp.DeliveryID)
			}
		})
	}
}

// Past the duplicate window, a replay is stored again, but as the same
// delivery: the normalizer derives the same lead id, and crm-sync's
// idempotency record makes it no second lead in the CRM.
func TestGateway_replayPastTheDuplicateWindowIsTheSameDelivery(t *testing.T) {
	t.Parallel()
	cfg, err := gateway.ConfigFromEnv(writeSources(t, schemesFile, schemesEnv))
	if err != nil {
		t.Fatal(err)
	}
	topo := testTopology()
	topo.DuplicateWindow = 200 * time.Millisecond
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	natstest.Apply(t, js, topo)
	g, err := gateway.New(cfg, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	body := `{"email":"replay@example.com"}`
	h := hdr("Content-Type", "application/json", "X-Signature", webhooksig.SignHMACSHA256(hooksSecret, webhooksig.Hex, "sha256=", []byte(body)))
	h.Set("X-Delivery-Id", "dlv-1")
	if a := send(t, http.MethodPost, hs.URL+"/webhooks/hooks", h, body); a.code != http.StatusAccepted {
		t.Fatalf("first = %d %q", a.code, a.body)
	}
	i := 0
	natstest.Eventually(t, 30*time.Second, "the replay stored past the window", func() bool {
		i++
		h.Set("X-Delivery-Id", "dlv-replay-"+strconv.Itoa(i))
		return send(t, http.MethodPost, hs.URL+"/webhooks/hooks", h, body).code == http.StatusAccepted
	})
	stored := natstest.All(t, js, bus.StreamWebhooks, "webhook.received.lead.hooks")
	if len(stored) != 2 {
		t.Fatalf("WEBHOOKS holds %d messages, want 2", len(stored))
	}
	var ids []string
	for _, m := range stored {
		var got webhookv1.WebhookReceived
		if err := proto.Unmarshal(m.Data(), &got); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got.GetDeliveryId())
	}
	if ids[0] != ids[1] || !strings.HasPrefix(ids[0], "sha256:") {
		t.Fatalf("delivery ids %v: want one, the body's hash", ids)
	}
}

func TestGateway_unmappableButAuthenticIsAccepted(t *testing.T) {
	t.Parallel()
	e := startFromEnv(t, writeSources(t, schemesFile, schemesEnv))
	for name, body := range map[string]string{"empty_object": `{}`, "array": `[1,2]`, "string": `"hello"`} {
		a := send(t, http.MethodPost, e.url+"/webhooks/realtor", hdr("Content-Type", "application/json", "X-API-Key", realtorKey), body)
		if a.code != http.StatusAccepted {
			t.Errorf("%s: %d %q, want 202: the normalizer rejects it downstream", name, a.code, a.body)
		}
	}
}

func TestGateway_facebookHandshakeEchoesTheChallenge(t *testing.T) {
	t.Parallel()
	e := startFromEnv(t, writeSources(t, schemesFile, schemesEnv))
	a := send(t, http.MethodGet, e.url+"/webhooks/fb?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token="+fbVerifyToken, nil, "")
	if a.code != http.StatusOK || a.body != "1158201444" || !strings.HasPrefix(a.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("handshake = %d %q (%s)", a.code, a.body, a.header.Get("Content-Type"))
	}
	if n := e.stored(t); n != 0 {
		t.Fatalf("the handshake stored %d events", n)
	}
}

func TestGateway_rateLimitedBurstGets429WithRetryAfter(t *testing.T) {
	t.Parallel()
	e := startFromEnv(t, writeSources(t, schemesFile, schemesEnv))
	var accepted, limited int
	for i := range 6 {
		body := `{"email":"burst` + strconv.Itoa(i) + `@example.com"}`
		a := send(t, http.MethodPost, e.url+"/webhooks/limited", hdr("Content-Type", "application/json", "X-API-Key", realtorKey), body)
		switch a.code {
		case http.StatusAccepted:
			accepted++
		case http.StatusTooManyRequests:
			limited++
			secs, err := strconv.Atoi(a.header.Get("Retry-After"))
			if err != nil || secs < 1 || a.resp.Error != "rate_limited" || a.resp.Reason == "" {
				t.Fatalf("429 with Retry-After %q, body %q", a.header.Get("Retry-After"), a.body)
			}
		default:
			t.Fatalf("request %d: %d %q", i, a.code, a.body)
		}
	}
	// burst 2, and 0.01/s refills nothing meanwhile.
	if accepted != 2 || limited != 4 {
		t.Fatalf("accepted %d, limited %d; want 2 and 4", accepted, limited)
	}
	if n := e.stored(t); n != 2 {
		t.Fatalf("WEBHOOKS holds %d messages, want 2", n)
	}
	// Another source has its own allowance.
	if a := send(t, http.MethodPost, e.url+"/webhooks/realtor", hdr("Content-Type", "application/json", "X-API-Key", realtorKey), jsonLead); a.code != http.StatusAccepted {
		t.Fatalf("another source: %d %q", a.code, a.body)
	}
	// Forged requests do not spend the allowance: they are refused first.
	if a := send(t, http.MethodPost, e.url+"/webhooks/limited", hdr("Content-Type", "application/json", "X-API-Key", "guess"), `{}`); a.code != http.StatusUnauthorized {
		t.Fatalf("forged request while limited: %d", a.code)
	}
}

func TestGateway_defaultRateLimitFromTheEnvironment(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"GATEWAY_IDX_SECRETS": secret, "GATEWAY_RATE_PER_SOURCE": "0.01", "GATEWAY_RATE_BURST": "1"}
	var environ []string
	for k, v := range vars {
		environ = append(environ, k+"="+v)
	}
	e := startFromEnv(t, environ)
	codes := []int{}
	for i := range 2 {
		id := "msg_rate_" + strconv.Itoa(i)
		codes = append(codes, send(t, http.MethodPost, e.url+"/webhooks/idx", signed(t, id, time.Now(), leadBody), leadBody).code)
	}
	if codes[0] != http.StatusAccepted || codes[1] != http.StatusTooManyRequests {
		t.Fatalf("codes = %v, want 202 then 429", codes)
	}
}

// A brokerage adds a source by editing its sources file and setting the
// secret: no code, no rebuild.
func TestGateway_addingASourceIsAConfigChange(t *testing.T) {
	t.Parallel()
	const file = `
sources:
  - name: acme-leads
    preset: realtor
    route: /webhooks/acme
    auth: {secrets_env: ACME_LEADS_KEY}
`
	e := startFromEnv(t, writeSources(t, file, map[string]string{"ACME_LEADS_KEY": "acme-key-2026"}))
	body := `{"lead_id":"acme-1","role":"buyer","contact":{"first_name":"Ada","last_name":"Lovelace","email":"ada@example.com","phone":"4155550134"},"message":"Is 12 Main St still available?"}`
	a := send(t, http.MethodPost, e.url+"/webhooks/acme", hdr("Content-Type", "application/json", "X-API-Key", "acme-key-2026"), body)
	if a.code != http.StatusAccepted || a.resp.Source != "acme-leads" {
		t.Fatalf("answer = %d %q", a.code, a.body)
	}
	msg := natstest.Last(t, e.js, bus.StreamWebhooks, "webhook.received.lead.acme-leads")
	var got webhookv1.WebhookReceived
	if err := proto.Unmarshal(msg.Data, &got); err != nil {
		t.Fatal(err)
	}
	if got.GetSource() != "acme-leads" || string(got.GetBody()) != body || got.GetPath() != "/webhooks/acme" {
		t.Fatalf("stored = %v", &got)
	}
	if a := send(t, http.MethodPost, e.url+"/webhooks/acme", hdr("Content-Type", "application/json", "X-API-Key", "wrong"), body); a.code != http.StatusUnauthorized {
		t.Fatalf("wrong key: %d", a.code)
	}
}

func TestConfigFromEnv_sourcesFile(t *testing.T) {
	t.Parallel()
	file := `
sources:
  - name: acme-leads
    preset: realtor
`
	t.Run("missing_secret_names_the_source_and_the_variable", func(t *testing.T) {
		t.Parallel()
		_, err := gateway.ConfigFromEnv(writeSources(t, file, nil))
		if err == nil || !strings.Contains(err.Error(), `"acme-leads"`) || !strings.Contains(err.Error(), "SOURCE_ACME_LEADS_SECRETS") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing_verify_token", func(t *testing.T) {
		t.Parallel()
		_, err := gateway.ConfigFromEnv(writeSources(t, "sources:\n  - {name: fb, preset: facebook}\n", map[string]string{"SOURCE_FB_SECRETS": "x"}))
		if err == nil || !strings.Contains(err.Error(), "SOURCE_FB_VERIFY_TOKEN") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("bad_secret_names_the_source", func(t *testing.T) {
		t.Parallel()
		_, err := gateway.ConfigFromEnv(writeSources(t, "sources:\n  - {name: site, preset: idx}\n", map[string]string{"SOURCE_SITE_SECRETS": "whsec_!!"}))
		if err == nil || !strings.Contains(err.Error(), `"site"`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing_file", func(t *testing.T) {
		t.Parallel()
		if _, err := gateway.ConfigFromEnv([]string{"GATEWAY_SOURCES_FILE=/nonexistent/sources.yaml"}); err == nil {
			t.Fatal("want an error")
		}
	})
	t.Run("with_the_old_variables", func(t *testing.T) {
		t.Parallel()
		cfg, err := gateway.ConfigFromEnv(writeSources(t, file, map[string]string{
			"SOURCE_ACME_LEADS_SECRETS": "k", "GATEWAY_IDX_SECRETS": secret, "GATEWAY_FUB_SYSTEM_KEYS": "fub",
		}))
		if err != nil {
			t.Fatal(err)
		}
		srcs, err := gateway.ConfiguredSources(cfg)
		if err != nil || len(srcs) != 3 || srcs[0].Name != "acme-leads" || srcs[1].Name != "idx" || srcs[2].Name != "followupboss" {
			t.Fatalf("sources = %+v, %v", srcs, err)
		}
	})
	t.Run("the_file_overrides_a_builtin", func(t *testing.T) {
		t.Parallel()
		cfg, err := gateway.ConfigFromEnv(writeSources(t, "sources:\n  - {name: idx, preset: idx, rate_limit: {per_second: 5}}\n", map[string]string{
			"SOURCE_IDX_SECRETS": secret, "GATEWAY_IDX_SECRETS": secret,
		}))
		if err != nil {
			t.Fatal(err)
		}
		srcs, err := gateway.ConfiguredSources(cfg)
		if err != nil || len(srcs) != 1 || srcs[0].RatePerSecond != 5 {
			t.Fatalf("sources = %+v, %v", srcs, err)
		}
	})
}
