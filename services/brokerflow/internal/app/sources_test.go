package app_test

import (
	"bytes"
	"encoding/base64"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	intakev1 "github.com/brokerflow/brokerflow/proto/brokerflow/intake/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// One sources file with every preset, the way a brokerage configures them.
const sourcesFile = `
sources:
  - {name: website, preset: idx}
  - {name: zillow, preset: zillow, crm_source: Zillow Premier Agent}
  - {name: realtor, preset: realtor}
  - {name: idx-vendor, preset: fub_events}
  - {name: facebook, preset: facebook}
  - {name: lead-mail, preset: email}
`

// fubSourceOf is the source of the event recorded for the person with email
// in the sandbox's Follow Up Boss, and the person's own source when they
// agree; "" until there is one event, "mismatch" when they differ.
func fubSourceOf(fub *sandbox.FUB, email string) string {
	for _, p := range fub.People() {
		if len(p.Emails) == 0 || p.Emails[0].Value != email {
			continue
		}
		for _, e := range fub.Events() {
			if e.PersonID == p.ID {
				if e.Source != p.Source {
					return "mismatch: event " + e.Source + ", person " + p.Source
				}
				return e.Source
			}
		}
	}
	return ""
}

// TestSystem_everyPresetEndToEnd sends a real, authenticated HTTP request
// for each preset to the running system and finds the canonical lead on
// lead.normalized.<source>.
func TestSystem_everyPresetEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "sources.yaml")
	if err := os.WriteFile(path, []byte(sourcesFile), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t,
		"SOURCE_WEBSITE_SECRETS="+app.DevIDXSecret,
		"SOURCE_ZILLOW_SECRETS=zillow-shared-secret-2026",
		"SOURCE_REALTOR_SECRETS=realtor-api-key-2026",
		"SOURCE_IDX_VENDOR_SECRETS=vendor:vendor-password",
		"SOURCE_FACEBOOK_SECRETS="+sandbox.DefaultGraphAppSecret,
		"SOURCE_FACEBOOK_VERIFY_TOKEN=verify-me",
		"SOURCE_LEAD_MAIL_SECRETS=sendgrid:inbound-password",
		"BROKERFLOW_SOURCES_FILE="+path,
		"GATEWAY_GRPC_ADDR=127.0.0.1:0",
		"GATEWAY_GRPC_TOKENS=first-party-token-0123456789",
	)
	a, js := s.App, s.js

	send := func(t *testing.T, path, contentType string, body []byte, h http.Header) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, a.WebhookURL+path, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range h {
			req.Header[k] = v
		}
		req.Header.Set("Content-Type", contentType)
		if code, answer := do(t, req); code != http.StatusAccepted {
			t.Fatalf("POST %s: %d %s", path, code, answer)
		}
	}
	basic := func(userPass string) http.Header {
		return http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte(userPass))}}
	}

	// Facebook: the lead exists in the Graph; the notification names it.
	graph := a.Sandbox.Graph()
	fbLead, err := graph.AddLead(sandbox.GraphLead{ID: "4471111", Fields: []sandbox.GraphField{
		{Name: "full_name", Values: []string{"Dorothy Vaughan"}},
		{Name: "email", Values: []string{"Dorothy@Example.com"}},
		{Name: "phone_number", Values: []string{"+1 757 555 0142"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	fbBody := graph.Notification(fbLead.ID)

	var mail bytes.Buffer
	mw := multipart.NewWriter(&mail)
	for k, v := range map[string]string{
		"from":    "Zillow <leads@zillow.com>",
		"to":      "leads@brokerage.example",
		"subject": "New Contact: Mary Jackson is requesting information",
		"text":    "Name: Mary Jackson\nEmail: mary.jackson@example.net\nPhone: (757) 555-0177\nMessage: Can I tour 9 Oak Ave?\nProperty: 9 Oak Ave, Hampton, VA\n",
	} {
		if err := mw.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}

	idxBody := []byte(`{"type":"lead.created","data":{"name":"Ada Lovelace","email":"ada@example.com","phone":"(415) 555-0134","inquiry_type":"buy"}}`)
	idxHeaders, err := webhooksig.SignedHeaders(app.DevIDXSecret, "msg_presets_1", time.Now(), idxBody)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		source, path, contentType string
		body                      []byte
		headers                   http.Header
		email, phone              string
		// crmSource is the source Follow Up Boss records: the source's name,
		// its fixed crm_source (zillow), or the payload's (idx-vendor).
		crmSource string
	}{
		{"website", "/webhooks/website", "application/json", idxBody, idxHeaders, "ada@example.com", "+14155550134", "website"},
		{"zillow", "/webhooks/zillow", "application/x-www-form-urlencoded",
			[]byte(url.Values{"name": {"Katherine Johnson"}, "email": {"KJ@example.org"}, "phone": {"757-555-0199"}, "listingId": {"ZL-42"}, "message": {"Is it pet friendly?"}}.Encode()),
			http.Header{"X-Brokerflow-Secret": {"zillow-shared-secret-2026"}}, "kj@example.org", "+17575550199", "Zillow Premier Agent"},
		{"realtor", "/webhooks/realtor", "application/json",
			[]byte(`{"lead_id":"rdc-9001","role":"seller","contact":{"first_name":"Annie","last_name":"Easley","email":"annie@example.com","phone":"216-555-0123"},"property":{"address":"1 Lake Rd","city":"Cleveland","state":"OH","postal_code":"44101"},"message":"Thinking of selling"}`),
			http.Header{"X-Api-Key": {"realtor-api-key-2026"}}, "annie@example.com", "+12165550123", "realtor"},
		{"idx-vendor", "/webhooks/idx-vendor", "application/json",
			[]byte(`{"source":"MyIDX.example","type":"Property Inquiry","message":"Schedule a showing","person":{"firstName":"Evelyn","lastName":"Boyd","emails":[{"value":"evelyn@example.com"}],"phones":[{"value":"555-555-5555"}]},"property":{"street":"1234 High Oak St","city":"Rochester","state":"WA","code":"98579","mlsNumber":"1234567","price":449000}}`),
			basic("vendor:vendor-password"), "evelyn@example.com", "", "MyIDX.example"},
		{"facebook", "/webhooks/facebook", "application/json", fbBody,
			http.Header{"X-Hub-Signature-256": {sandbox.SignFacebook(sandbox.DefaultGraphAppSecret, fbBody)}}, "dorothy@example.com", "+17575550142", "facebook"},
		{"lead-mail", "/webhooks/lead-mail", mw.FormDataContentType(), mail.Bytes(),
			basic("sendgrid:inbound-password"), "mary.jackson@example.net", "+17575550177", "lead-mail"},
	}
	for _, c := range cases {
		t.Run(c.source, func(t *testing.T) {
			send(t, c.path, c.contentType, c.body, c.headers)
			subject := "lead.normalized." + c.source
			natstest.Eventually(t, 30*time.Second, "a lead on "+subject, func() bool { return natstest.Count(t, js, bus.StreamLeads, subject) == 1 })
			var l leadv1.Lead
			if err := proto.Unmarshal(natstest.Last(t, js, bus.StreamLeads, subject).Data, &l); err != nil {
				t.Fatal(err)
			}
			ct := l.GetContact()
			if l.GetLeadSource() != c.source || l.GetCrmSource() != c.crmSource || ct.GetEmail() != c.email || (c.phone != "" && ct.GetMobilePhone() != c.phone) {
				t.Fatalf("lead = %v", &l)
			}
			// crm-sync sends it on: Follow Up Boss records the event, and the
			// new person, under the CRM source.
			natstest.Eventually(t, 30*time.Second, "the lead's event in Follow Up Boss", func() bool { return fubSourceOf(a.Sandbox.FUB(), c.email) != "" })
			if got := fubSourceOf(a.Sandbox.FUB(), c.email); got != c.crmSource {
				t.Fatalf("Follow Up Boss recorded source %q, want %q", got, c.crmSource)
			}
		})
	}
	// The brokerage's own systems submit over gRPC (first_party).
	t.Run("first_party", func(t *testing.T) {
		conn, err := grpc.NewClient(a.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer first-party-token-0123456789")
		_, err = intakev1.NewIntakeServiceClient(conn).SubmitLead(ctx, &intakev1.SubmitLeadRequest{
			System: "open-house-app", IdempotencyKey: "oh-2026-11-26-001",
			Contact:     &intakev1.Contact{FullName: "Christine Darden", Email: "Christine@Example.com", Phone: "757-555-0111"},
			InquiryType: "buy",
		})
		if err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, 30*time.Second, "a first-party lead", func() bool {
			return natstest.Count(t, js, bus.StreamLeads, "lead.normalized.first_party") == 1
		})
		var l leadv1.Lead
		if err := proto.Unmarshal(natstest.Last(t, js, bus.StreamLeads, "lead.normalized.first_party").Data, &l); err != nil {
			t.Fatal(err)
		}
		if l.GetContact().GetEmail() != "christine@example.com" || l.GetContact().GetLastName() != "Darden" || l.GetDeliveryId() != "oh-2026-11-26-001" {
			t.Fatalf("lead = %v", &l)
		}
	})
	if n := natstest.Count(t, js, bus.StreamLeads, "lead.rejected.>"); n != 0 {
		t.Fatalf("%d leads rejected", n)
	}
}
