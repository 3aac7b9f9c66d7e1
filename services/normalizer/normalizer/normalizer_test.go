package normalizer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/normalizer/normalizer"
)

type env struct {
	js    jetstream.JetStream
	nc    *nats.Conn
	pub   *bus.Publisher
	hooks *bus.TestHooks
}

func setup(t *testing.T) *env {
	t.Helper()
	return setupWith(t, "")
}

// setupWith runs a normalizer with the sources file at sourcesFile (empty:
// the built-in sources) and opts.
func setupWith(t *testing.T, sourcesFile string, opts ...normalizer.Option) *env {
	t.Helper()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	cfg := normalizer.Config{
		DefaultRegion:   "US",
		Concurrency:     4,
		ShutdownTimeout: 5 * time.Second,
		Bus:             service.ConsumeConfig{RetrySchedule: []time.Duration{50 * time.Millisecond, 50 * time.Millisecond}},
		SourcesFile:     sourcesFile,
	}
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: time.Second, ConsumeConfig: cfg.Bus}.Topology())
	hooks := &bus.TestHooks{}
	n, err := normalizer.New(cfg, service.Deps{NATS: nc, Hooks: hooks}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, n.Run)
	natstest.WaitConsumer(t, js, bus.StreamWebhooks, "normalizer")
	return &env{js: js, nc: nc, pub: bus.NewPublisher(js, "ingest-gateway", nil), hooks: hooks}
}

func (e *env) receive(t *testing.T, delivery, body string) {
	t.Helper()
	e.receiveFrom(t, "idx", delivery, "application/json", body)
}

// receiveFrom stores a webhook from source as the gateway would.
func (e *env) receiveFrom(t *testing.T, source, delivery, contentType, body string) {
	t.Helper()
	ev := &webhookv1.WebhookReceived{
		Body: []byte(body), Source: source, Kind: webhookv1.Kind_KIND_LEAD, ContentType: contentType,
		DeliveryId: delivery, ReceivedAt: timestamppb.Now(), Method: "POST", Path: "/webhooks/" + source,
	}
	if _, err := e.pub.Publish(natstest.Context(t, 10*time.Second), "webhook.received.lead."+source, "webhook:"+source+":"+delivery, ev); err != nil {
		t.Fatal(err)
	}
}

// last decodes the last message on subject into into.
func (e *env) last(t *testing.T, stream, subject string, into proto.Message) {
	t.Helper()
	if err := proto.Unmarshal(natstest.Last(t, e.js, stream, subject).Data, into); err != nil {
		t.Fatal(err)
	}
}

const idxLead = `{"type":"lead.created","timestamp":"2026-11-26T20:00:00Z","data":{"name":"Ada Lovelace","email":" Ada@Example.COM ","phone":"(415) 555-0134","message":"Is 12 Main St still available?","inquiry_type":"buy","property":{"address":"12 Main St","city":"Springfield","state":"IL","postal_code":"62701","mls_number":"MLS123","price":850000},"utm":{"source":"google","campaign":"spring"}}}`

func TestNormalizer_publishesTheCanonicalLead(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.receive(t, "msg_1", idxLead)
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, "normalizer")

	var l leadv1.Lead
	e.last(t, bus.StreamLeads, "lead.normalized.idx", &l)
	c := l.GetContact()
	if l.GetLeadId() != normalizer.LeadID("idx", "msg_1", 0) || l.GetLeadSource() != "idx" || l.GetDeliveryId() != "msg_1" {
		t.Errorf("ids = %s %s %s", l.GetLeadId(), l.GetLeadSource(), l.GetDeliveryId())
	}
	if c.GetEmail() != "ada@example.com" || c.GetMobilePhone() != "+14155550134" || c.GetFirstName() != "Ada" || c.GetLastName() != "Lovelace" {
		t.Errorf("contact = %v", c)
	}
	p := l.GetInquiry().GetProperty()
	if l.GetInquiry().GetType() != leadv1.InquiryType_INQUIRY_TYPE_BUY || p.GetListingId() != "MLS123" || p.GetListPrice().GetAmountMinor() != 85000000 {
		t.Errorf("inquiry = %v", l.GetInquiry())
	}
	if l.GetCampaign().GetUtmSource() != "google" || l.GetWebhook().GetStream() != bus.StreamWebhooks || l.GetCorrelation().GetLeadId() != l.GetLeadId() {
		t.Errorf("campaign %v webhook %v correlation %v", l.GetCampaign(), l.GetWebhook(), l.GetCorrelation())
	}
}

func TestNormalizer_rejectsALeadWithoutEmailOrPhone(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.receive(t, "msg_2", `{"type":"lead.created","data":{"name":"No Contact","email":"not-an-email","phone":"12"}}`)
	e.receive(t, "msg_3", `{"type":"listing.viewed","data":{}}`)
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, "normalizer")
	if n := natstest.Count(t, e.js, bus.StreamLeads, "lead.rejected.idx"); n != 2 {
		t.Fatalf("%d rejected leads, want 2", n)
	}
	if n := natstest.Count(t, e.js, bus.StreamLeads, "lead.normalized.idx"); n != 0 {
		t.Fatalf("%d normalized leads, want 0", n)
	}
	var r leadv1.LeadRejected
	e.last(t, bus.StreamLeads, "lead.rejected.idx", &r)
	if d := r.GetDeliveryId(); r.GetReason() == "" || (d != "msg_2" && d != "msg_3") || r.GetWebhook().GetSequence() == 0 {
		t.Fatalf("rejection = %v", &r)
	}
}

func TestNormalizer_redeliveryPublishesNoSecondLead(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.hooks.SkipNextAcks(1)
	e.receive(t, "msg_4", idxLead)
	natstest.Eventually(t, 30*time.Second, "redelivery", func() bool {
		ctx := natstest.Context(t, 5*time.Second)
		c, err := e.js.Consumer(ctx, bus.StreamWebhooks, "normalizer")
		if err != nil {
			return false
		}
		info, err := c.Info(ctx)
		return err == nil && info.AckFloor.Consumer >= 1 && info.NumAckPending == 0 && info.NumRedelivered == 0 && info.Delivered.Consumer >= 2
	})
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, "normalizer")
	if n := natstest.Count(t, e.js, bus.StreamLeads, "lead.normalized.idx"); n != 1 {
		t.Fatalf("%d normalized leads after a redelivery, want 1", n)
	}
}

func TestNormalizer_undecodableMessageIsAFailureRecord(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if _, err := e.js.Publish(natstest.Context(t, 10*time.Second), "webhook.received.lead.idx", []byte{0xff, 0xff, 0xff}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool {
		return natstest.Count(t, e.js, bus.StreamOps, bus.FailureSubject(bus.ServiceNormalizer)) == 1
	})
	var f opsv1.Failure
	e.last(t, bus.StreamOps, bus.FailureSubject(bus.ServiceNormalizer), &f)
	if f.GetClass() != opsv1.ErrorClass_ERROR_CLASS_PERMANENT || f.GetConsumer() != "normalizer" || f.GetMessage().GetSubject() != "webhook.received.lead.idx" {
		t.Fatalf("failure = %v", &f)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	cfg, err := normalizer.ConfigFromEnv(nil)
	if err != nil || cfg.DefaultRegion != "US" || cfg.Concurrency != 8 {
		t.Fatalf("defaults = %+v, %v", cfg, err)
	}
	cfg, err = normalizer.ConfigFromEnv([]string{"NORMALIZER_SOURCES_FILE=/etc/brokerflow/sources.yaml", "NORMALIZER_GRAPH_ACCESS_TOKEN=tok"})
	if err != nil || cfg.SourcesFile != "/etc/brokerflow/sources.yaml" || cfg.Graph.AccessToken != "tok" || cfg.Graph.BaseURL != "https://graph.facebook.com/v19.0" {
		t.Fatalf("cfg = %+v, %v", cfg, err)
	}
	if _, err := normalizer.ConfigFromEnv([]string{"NORMALIZER_DEFAULT_REGION=XX"}); err == nil {
		t.Fatal("an unknown region must be an error")
	}
}

// writeSources writes a sources file and returns its path.
func writeSources(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sources.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const sourcesFile = `
sources:
  - {name: zillow, preset: zillow}
  - {name: realtor, preset: realtor}
  - {name: fub_events, preset: fub_events}
  - {name: email, preset: email}
  - {name: facebook, preset: facebook}
`

// inboundParse builds a SendGrid Inbound Parse post.
func inboundParse(t *testing.T, fields map[string]string) (body, contentType string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, k := range []string{"headers", "from", "to", "subject", "text", "html", "envelope"} {
		if v, ok := fields[k]; ok {
			if err := w.WriteField(k, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String(), w.FormDataContentType()
}

func TestNormalizer_presetsFromTheSourcesFile(t *testing.T) {
	t.Parallel()
	e := setupWith(t, writeSources(t, sourcesFile), normalizer.WithLeadReader(&graphLeads{}))

	zillow := url.Values{"listingId": {"Z-118"}, "name": {"Ada Lovelace"}, "email": {"Ada@Example.com"}, "phone": {"(415) 555-0134"},
		"message": {"Still available?"}, "listingStreet": {"12 Main St"}, "listingCity": {"Springfield"}, "listingState": {"IL"}}.Encode()
	e.receiveFrom(t, "zillow", "sha256:zillow-1", "application/x-www-form-urlencoded", zillow)
	e.receiveFrom(t, "realtor", "sha256:realtor-1", "application/json",
		`{"lead_id":"RDC-7731","role":"seller","contact":{"first_name":"Grace","last_name":"Hopper","email":"grace@example.com","phone":"415-555-0199"},"property":{"address":"99 Elm St","list_price":625000.5},"timestamp":"2026-11-26T20:00:00Z"}`)
	e.receiveFrom(t, "fub_events", "sha256:fub-1", "application/json",
		`{"source":"MyAwesomeWebsite.com","type":"Property Inquiry","message":"More info please","person":{"firstName":"John","lastName":"Smith","emails":[{"value":"john.smith@example.com"}],"phones":[{"value":"(206) 555-0100"}]},"property":{"street":"1234 High Oak St","mlsNumber":"1234567","price":449000,"forRent":false}}`)
	fits, fitsCT := inboundParse(t, map[string]string{"from": "Zillow <noreply@zillow.com>", "to": "leads@inbound.brokerage.example", "subject": "New Contact: Katherine Johnson",
		"text": "Name: Katherine Johnson\nEmail: kj@example.com\nPhone: 757-555-0100\nMessage: Please call me\n"})
	e.receiveFrom(t, "email", "sha256:email-1", fitsCT, fits)
	misfit, misfitCT := inboundParse(t, map[string]string{"from": "Newsletter <news@example.com>", "subject": "Spring market report", "text": "Prices rose 3%."})
	e.receiveFrom(t, "email", "sha256:email-2", misfitCT, misfit)
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, "normalizer")

	var z leadv1.Lead
	e.last(t, bus.StreamLeads, "lead.normalized.zillow", &z)
	if c := z.GetContact(); c.GetEmail() != "ada@example.com" || c.GetMobilePhone() != "+14155550134" || c.GetLastName() != "Lovelace" ||
		z.GetInquiry().GetType() != leadv1.InquiryType_INQUIRY_TYPE_RENT || z.GetInquiry().GetProperty().GetListingId() != "Z-118" ||
		z.GetLeadId() != normalizer.LeadID("zillow", "sha256:zillow-1", 0) {
		t.Errorf("zillow lead = %v", &z)
	}
	var r leadv1.Lead
	e.last(t, bus.StreamLeads, "lead.normalized.realtor", &r)
	if r.GetDeliveryId() != "RDC-7731" || r.GetLeadId() != normalizer.LeadID("realtor", "RDC-7731", 0) ||
		r.GetInquiry().GetType() != leadv1.InquiryType_INQUIRY_TYPE_SELL || r.GetInquiry().GetProperty().GetListPrice().GetAmountMinor() != 62500050 ||
		r.GetContact().GetMobilePhone() != "+14155550199" {
		t.Errorf("realtor lead = %v", &r)
	}
	var f leadv1.Lead
	e.last(t, bus.StreamLeads, "lead.normalized.fub_events", &f)
	if f.GetContact().GetEmail() != "john.smith@example.com" || f.GetContact().GetMobilePhone() != "+12065550100" ||
		f.GetInquiry().GetType() != leadv1.InquiryType_INQUIRY_TYPE_BUY || f.GetCampaign().GetUtmSource() != "MyAwesomeWebsite.com" ||
		f.GetLeadSource() != "fub_events" || f.GetCrmSource() != "MyAwesomeWebsite.com" {
		t.Errorf("fub_events lead = %v", &f)
	}
	if z.GetCrmSource() != "zillow" {
		t.Errorf("zillow lead's crm_source %q, want the source's name", z.GetCrmSource())
	}
	var m leadv1.Lead
	e.last(t, bus.StreamLeads, "lead.normalized.email", &m)
	if m.GetContact().GetFullName() != "Katherine Johnson" || m.GetContact().GetMobilePhone() != "+17575550100" || m.GetInquiry().GetMessage() != "Please call me" {
		t.Errorf("email lead = %v", &m)
	}
	if n := natstest.Count(t, e.js, bus.StreamLeads, "lead.normalized.email"); n != 1 {
		t.Errorf("%d normalized e-mail leads, want 1", n)
	}
	var rej leadv1.LeadRejected
	e.last(t, bus.StreamLeads, "lead.rejected.email", &rej)
	if rej.GetDeliveryId() != "sha256:email-2" || !strings.Contains(rej.GetReason(), "no e-mail template fits (tried lead_metadata, zillow, realtor)") {
		t.Errorf("rejection = %v", &rej)
	}
}

func TestNormalizer_aSourceAddedAndFixedByConfigOnly(t *testing.T) {
	t.Parallel()
	// A kiosk that posts its own JSON, and Zillow renaming phone to
	// phoneNumber: both are sources-file edits, no code.
	e := setupWith(t, writeSources(t, `
sources:
  - name: open_house_kiosk
    auth: {scheme: basic}
    mapping:
      full_name: body.visitor.name
      email: body.visitor.mail
      phone: body.visitor.cell
      inquiry_type: '"buy"'
      property.address: body.house
  - name: zillow
    preset: zillow
    mapping:
      phone: coalesce(body.phoneNumber, body.phone)
`))
	e.receiveFrom(t, "open_house_kiosk", "k-1", "application/json", `{"visitor":{"name":"Ada Lovelace","mail":"ada@example.com","cell":"415 555 0134"},"house":"12 Main St"}`)
	e.receiveFrom(t, "zillow", "z-1", "application/x-www-form-urlencoded", "name=Grace+Hopper&phoneNumber=%2B1+415+555+0199")
	e.receiveFrom(t, "first_party", "fp-1", "application/json", `{"system":"crm-form","idempotency_key":"fp-1","contact":{"email":"kj@example.com"}}`)
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, "normalizer")

	var k leadv1.Lead
	e.last(t, bus.StreamLeads, "lead.normalized.open_house_kiosk", &k)
	if k.GetContact().GetMobilePhone() != "+14155550134" || k.GetInquiry().GetProperty().GetUnparsedAddress() != "12 Main St" || k.GetLeadSource() != "open_house_kiosk" {
		t.Errorf("kiosk lead = %v", &k)
	}
	var z leadv1.Lead
	e.last(t, bus.StreamLeads, "lead.normalized.zillow", &z)
	if z.GetContact().GetMobilePhone() != "+14155550199" {
		t.Errorf("zillow lead = %v", &z)
	}
	var fp leadv1.Lead
	e.last(t, bus.StreamLeads, "lead.normalized.first_party", &fp)
	if fp.GetContact().GetEmail() != "kj@example.com" || fp.GetCampaign().GetUtmSource() != "crm-form" {
		t.Errorf("first_party lead = %v", &fp)
	}
}

func TestNormalizer_unknownSourceIsRejected(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.receiveFrom(t, "zillow", "z-1", "application/x-www-form-urlencoded", "email=a%40b.co")
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, "normalizer")
	var r leadv1.LeadRejected
	e.last(t, bus.StreamLeads, "lead.rejected.zillow", &r)
	if !strings.Contains(r.GetReason(), `no mapping is configured for source "zillow"`) {
		t.Fatalf("rejection = %v", &r)
	}
}

// graphLeads is a LeadReader over fixed leads: the Graph API's HTTP
// emulation lives in the sandbox; this tests the normalizer's side only.
type graphLeads struct {
	mu    sync.Mutex
	leads map[string]map[string]any
	err   error
	reads []string
}

func (g *graphLeads) ReadLead(_ context.Context, id string) (map[string]any, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.reads = append(g.reads, id)
	if g.err != nil {
		return nil, g.err
	}
	l, ok := g.leads[id]
	if !ok {
		return nil, bus.AsPermanent(fmt.Errorf("graph: lead %s: 404", id))
	}
	return l, nil
}

const leadgenNotification = `{"object":"page","entry":[{"id":"153125381133","time":1447342027,"changes":[
  {"field":"leadgen","value":{"ad_id":"A1","form_id":"F1","leadgen_id":"111","created_time":1447342026,"page_id":"153125381133","adgroup_id":"G1"}},
  {"field":"leadgen","value":{"ad_id":"A1","form_id":"F1","leadgen_id":222,"created_time":1447342027,"page_id":"153125381133","adgroup_id":"G1"}}]}]}`

func TestNormalizer_facebookReadsEachLeadgenID(t *testing.T) {
	t.Parallel()
	g := &graphLeads{leads: map[string]map[string]any{
		"111": {"id": "111", "created_time": "2026-11-26T20:00:00+0000", "fields": map[string]any{
			"email": "ada@example.com", "full_name": "Ada Lovelace", "phone_number": "+14155550134", "buy_or_sell": "Buying"}},
		"222": {"id": "222", "created_time": "2026-11-26T20:00:01+0000", "fields": map[string]any{"full_name": "No Contact"}},
	}}
	e := setupWith(t, writeSources(t, sourcesFile), normalizer.WithLeadReader(g))
	e.receiveFrom(t, "facebook", "sha256:fb-1", "application/json", leadgenNotification)
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, "normalizer")

	var l leadv1.Lead
	e.last(t, bus.StreamLeads, "lead.normalized.facebook", &l)
	if l.GetLeadId() != normalizer.LeadID("facebook", "sha256:fb-1", 0) || l.GetItemIndex() != 0 || l.GetContact().GetEmail() != "ada@example.com" ||
		l.GetInquiry().GetType() != leadv1.InquiryType_INQUIRY_TYPE_BUY || l.GetCampaign().GetUtmContent() != "A1" || l.GetCampaign().GetUtmTerm() != "F1" {
		t.Errorf("lead = %v", &l)
	}
	var r leadv1.LeadRejected
	e.last(t, bus.StreamLeads, "lead.rejected.facebook", &r)
	if r.GetLeadId() != normalizer.LeadID("facebook", "sha256:fb-1", 1) || r.GetItemIndex() != 1 || !strings.Contains(r.GetReason(), "no usable email or phone") {
		t.Errorf("rejection = %v", &r)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if strings.Join(g.reads, ",") != "111,222" {
		t.Errorf("reads = %v", g.reads)
	}
}

func TestNormalizer_facebookGraphErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		err       error
		wantReads int
	}{
		// 4xx: permanent, one read, a failure record.
		{"permanent", bus.AsPermanent(errors.New("graph: 400 invalid access token")), 1},
		// 5xx, timeouts: retried on the schedule (two retries here), then a failure record.
		{"transient", errors.New("graph: 503"), 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			g := &graphLeads{err: tt.err}
			e := setupWith(t, writeSources(t, sourcesFile), normalizer.WithLeadReader(g))
			e.receiveFrom(t, "facebook", "sha256:fb-2", "application/json", leadgenNotification)
			natstest.Eventually(t, 30*time.Second, "failure record", func() bool {
				return natstest.Count(t, e.js, bus.StreamOps, bus.FailureSubject(bus.ServiceNormalizer)) == 1
			})
			var f opsv1.Failure
			e.last(t, bus.StreamOps, bus.FailureSubject(bus.ServiceNormalizer), &f)
			if !strings.Contains(f.GetReason(), "read Facebook lead 1 of 2 from the Graph API") {
				t.Errorf("failure = %v", &f)
			}
			if n := natstest.Count(t, e.js, bus.StreamLeads, "lead.>"); n != 0 {
				t.Errorf("%d leads published, want 0", n)
			}
			g.mu.Lock()
			defer g.mu.Unlock()
			if len(g.reads) != tt.wantReads {
				t.Errorf("%d reads, want %d", len(g.reads), tt.wantReads)
			}
		})
	}
}

func TestNew_aFacebookSourceNeedsTheGraphToken(t *testing.T) {
	t.Parallel()
	cfg := normalizer.Config{DefaultRegion: "US", Concurrency: 1, SourcesFile: writeSources(t, sourcesFile),
		Graph: normalizer.GraphConfig{BaseURL: "https://graph.facebook.com/v19.0", Timeout: time.Second}}
	if _, err := normalizer.New(cfg, service.Deps{}); !errors.Is(err, normalizer.ErrConfig) || !strings.Contains(err.Error(), "NORMALIZER_GRAPH_ACCESS_TOKEN") {
		t.Fatalf("err = %v", err)
	}
}

func TestNew_badSourcesFileIsAnErrorAtStart(t *testing.T) {
	t.Parallel()
	cfg := normalizer.Config{DefaultRegion: "US", Concurrency: 1, SourcesFile: writeSources(t, `
sources:
  - name: realtor
    preset: realtor
    mapping:
      email: body.contact.emial ?? body.
`)}
	_, err := normalizer.New(cfg, service.Deps{})
	if !errors.Is(err, normalizer.ErrConfig) || !strings.Contains(err.Error(), `source "realtor": mapping.email: `) {
		t.Fatalf("err = %v", err)
	}
}
