package normalizer_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/normalizer/normalizer"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// counter is the value of a brokerflow_bus_* counter with the labels given.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if v, ok := labels[l.GetName()]; ok && v != l.GetValue() {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// The normalizer's one consumer serves every lead source. A Graph rate limit
// (HTTP 400, code 17) is bus.Throttled, and must delay only the Facebook lead
// it hit: the consumer is not paused, and the IDX website's leads flow
// meanwhile. The Facebook lead arrives once its retry is due.
func TestNormalizer_aGraphRateLimitDelaysOnlyTheFacebookLead(t *testing.T) {
	t.Parallel()
	sb := sandbox.New(sandbox.Options{})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	fb, err := sb.Graph().AddLead(sandbox.GraphLead{Fields: []sandbox.GraphField{
		{Name: "email", Values: []string{"grace@example.org"}}, {Name: "full_name", Values: []string{"Grace Hopper"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	sb.Graph().InjectFault(sandbox.Fault{Status: http.StatusBadRequest,
		Body: `{"error":{"message":"(#17) User request limit reached","type":"OAuthException","code":17,"fbtrace_id":"Athrottle"}}`})

	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	// The Facebook lead's retry is due this long after the rate limit.
	const retry = 4 * time.Second
	cfg := normalizer.Config{
		DefaultRegion: "US", Concurrency: 2, ShutdownTimeout: 5 * time.Second,
		Bus:         service.ConsumeConfig{RetrySchedule: []time.Duration{retry}},
		SourcesFile: writeSources(t, "sources:\n  - {name: idx, preset: idx}\n  - {name: facebook, preset: facebook}\n"),
		Graph: normalizer.GraphConfig{
			BaseURL: srv.URL + "/graph/v19.0", AccessToken: sandbox.DefaultGraphAccessToken, Timeout: 10 * time.Second,
		},
	}
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: time.Second, ConsumeConfig: cfg.Bus}.Topology())
	reg := prometheus.NewRegistry()
	n, err := normalizer.New(cfg, service.Deps{NATS: nc, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, n.Run)
	natstest.WaitConsumer(t, js, bus.StreamWebhooks, "normalizer")
	gateway := bus.NewPublisher(js, bus.ServiceGateway, nil)
	receive := func(source, delivery string, body []byte) {
		t.Helper()
		ev := &webhookv1.WebhookReceived{
			Body: body, Source: source, Kind: webhookv1.Kind_KIND_LEAD, ContentType: "application/json",
			DeliveryId: delivery, ReceivedAt: timestamppb.Now(), Method: http.MethodPost, Path: "/webhooks/" + source,
		}
		if _, err := gateway.Publish(natstest.Context(t, 10*time.Second), "webhook.received.lead."+source, "webhook:"+source+":"+delivery, ev); err != nil {
			t.Fatal(err)
		}
	}

	receive("facebook", "sha256:fb-throttled", sb.Graph().Notification(fb.ID))
	natstest.Eventually(t, 30*time.Second, "the rate-limited Graph read, set to retry", func() bool {
		return counter(t, reg, "brokerflow_bus_messages_handled_total", map[string]string{"consumer": "normalizer", "outcome": "retry"}) == 1
	})
	limited := time.Now()
	consumer, err := js.Consumer(natstest.Context(t, 10*time.Second), bus.StreamWebhooks, "normalizer")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := consumer.Info(natstest.Context(t, 10*time.Second)); err != nil || info.Paused {
		t.Fatalf("consumer paused by a Graph rate limit (info %+v, %v): it serves every lead source", info, err)
	}

	// Meanwhile, the website's leads flow.
	receive("idx", "msg_during_limit", []byte(idxLead))
	natstest.Eventually(t, 30*time.Second, "the IDX lead", func() bool {
		return natstest.Count(t, js, bus.StreamLeads, "lead.normalized.idx") == 1
	})
	if waited := time.Since(limited); waited >= retry {
		t.Fatalf("the IDX lead took %s, as long as the Facebook lead's retry (%s): it waited for the rate limit", waited, retry)
	}
	if n := natstest.Count(t, js, bus.StreamLeads, "lead.normalized.facebook"); n != 0 {
		t.Fatalf("%d Facebook leads before the retry was due", n)
	}

	// The Facebook lead is read again once its retry is due, and arrives.
	natstest.Eventually(t, 30*time.Second, "the delayed Facebook lead", func() bool {
		return natstest.Count(t, js, bus.StreamLeads, "lead.normalized.facebook") == 1
	})
	if since := time.Since(limited); since < retry-500*time.Millisecond {
		t.Fatalf("the Facebook lead was read again %s after the rate limit, before its retry was due (%s)", since, retry)
	}
	natstest.WaitSettled(t, js, bus.StreamWebhooks, "normalizer")
	var l leadv1.Lead
	if err := proto.Unmarshal(natstest.Last(t, js, bus.StreamLeads, "lead.normalized.facebook").Data, &l); err != nil || l.GetContact().GetEmail() != "grace@example.org" {
		t.Fatalf("Facebook lead = %v, %v", &l, err)
	}
	if p := counter(t, reg, "brokerflow_bus_consumer_pauses_total", nil); p != 0 {
		t.Fatalf("the consumer was paused %v times", p)
	}
	if f := natstest.Count(t, js, bus.StreamOps, bus.FailureSubject(bus.ServiceNormalizer)); f != 0 {
		t.Fatalf("%d failure records for a rate limit", f)
	}
}
