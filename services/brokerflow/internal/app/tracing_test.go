package app_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/telemetry/otlptest"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
)

// One lead, one trace, exported over OTLP: the gateway, the normalizer and
// crm-sync each add their spans to the trace the webhook started.
func TestSystem_oneTraceForOneLeadOverOTLP(t *testing.T) {
	t.Parallel()
	rcv := otlptest.NewReceiver()
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	s := start(t, "OTEL_EXPORTER_OTLP_ENDPOINT="+srv.URL)
	if code, body := postSigned(t, s.WebhookURL+"/webhooks/idx", app.DevIDXSecret, "msg_traced", time.Now(), lead); code != http.StatusAccepted {
		t.Fatalf("status %d: %s", code, body)
	}
	natstest.Eventually(t, 30*time.Second, "the lead in the CRM", func() bool { return len(s.Sandbox.FUB().People()) == 1 })
	wh := natstest.Last(t, s.js, bus.StreamWebhooks, "webhook.received.lead.idx")
	id := traceID(t, wh.Header)
	want := []string{bus.ServiceGateway, bus.ServiceNormalizer, bus.ServiceCRMSync}
	natstest.Eventually(t, 30*time.Second, "spans of every service in the lead's trace", func() bool {
		got := rcv.Services(id)
		for _, w := range want {
			if !slices.Contains(got, w) {
				return false
			}
		}
		return true
	})
}

func TestConfig_tracingIsOffWithoutAnEndpoint(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		env  []string
		want string
	}{
		"unset":           {nil, ""},
		"endpoint":        {[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318"}, "http://collector:4318/v1/traces"},
		"traces_endpoint": {[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=https://b/v1/traces"}, "https://b/v1/traces"},
		"sdk_disabled":    {[]string{"OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318", "OTEL_SDK_DISABLED=true"}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg, err := app.ConfigFromEnv(append([]string{"BROKERFLOW_DATA_DIR=" + t.TempDir()}, tc.env...), app.Mode{Sandbox: true})
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Tracing.Endpoint != tc.want {
				t.Fatalf("endpoint %q, want %q", cfg.Tracing.Endpoint, tc.want)
			}
		})
	}
	if _, err := app.ConfigFromEnv([]string{"BROKERFLOW_DATA_DIR=" + t.TempDir(), "OTEL_EXPORTER_OTLP_ENDPOINT=collector:4318"}, app.Mode{Sandbox: true}); err == nil {
		t.Fatal("an endpoint without a scheme must be an error")
	}
}
