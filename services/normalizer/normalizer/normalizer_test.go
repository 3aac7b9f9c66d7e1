package normalizer_test

import (
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
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	cfg := normalizer.Config{
		DefaultRegion:   "US",
		Concurrency:     4,
		ShutdownTimeout: 5 * time.Second,
		Bus:             service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: time.Second},
	}
	hooks := &bus.TestHooks{}
	n, err := normalizer.New(cfg, service.Deps{NATS: nc, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, n.Run)
	natstest.WaitConsumer(t, js, bus.StreamWebhooks, "normalizer")
	return &env{js: js, nc: nc, pub: bus.NewPublisher(js, "ingest-gateway", nil), hooks: hooks}
}

func (e *env) receive(t *testing.T, delivery, body string) {
	t.Helper()
	ev := &webhookv1.WebhookReceived{
		Body: []byte(body), Source: "idx", Kind: webhookv1.Kind_KIND_LEAD,
		DeliveryId: delivery, ReceivedAt: timestamppb.Now(),
	}
	if _, err := e.pub.Publish(natstest.Context(t, 10*time.Second), "webhook.received.lead.idx", "webhook:idx:"+delivery, ev); err != nil {
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
	if _, err := normalizer.ConfigFromEnv([]string{"NORMALIZER_DEFAULT_REGION=XX"}); err == nil {
		t.Fatal("an unknown region must be an error")
	}
}
