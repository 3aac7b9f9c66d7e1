package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
)

// TestIntake_bothTransportsTakeOnePath: a webhook over HTTP and a lead over
// gRPC are persisted, deduplicated and refused alike: a retry is a
// duplicate, and while JetStream is away each sender is told to retry and
// one log line names the source and the delivery id.
func TestIntake_bothTransportsTakeOnePath(t *testing.T) {
	t.Parallel()
	e := startGRPC(t, grpcConfig(), nil)
	hs := httptest.NewServer(e.g.Handler())
	t.Cleanup(hs.Close)

	for attempt, wantDuplicate := range []bool{false, true} {
		code, resp := post(t, hs.URL+"/webhooks/idx", signed(t, "msg_both", time.Now(), leadBody), leadBody)
		wantStatus := http.StatusAccepted
		if wantDuplicate {
			wantStatus = http.StatusOK
		}
		if code != wantStatus || resp.Duplicate != wantDuplicate || resp.DeliveryID != "msg_both" {
			t.Fatalf("webhook, attempt %d: %d %+v", attempt+1, code, resp)
		}
		lead, err := e.client.SubmitLead(withToken(t, grpcToken), validLead("key-both"))
		if err != nil || lead.GetDuplicate() != wantDuplicate || lead.GetDeliveryId() != "key-both" {
			t.Fatalf("lead, attempt %d: %v, %v", attempt+1, lead, err)
		}
	}
	for subject, id := range map[string]string{"webhook.received.lead.idx": "webhook:idx:msg_both", firstPartySubject: "webhook:first_party:key-both"} {
		if got := natstest.Last(t, e.js, bus.StreamWebhooks, subject).Header.Get("Nats-Msg-Id"); got != id {
			t.Errorf("%s: Nats-Msg-Id = %q, want %q", subject, got, id)
		}
	}
	if n := e.stored(t); n != 2 {
		t.Fatalf("WEBHOOKS holds %d messages, want 2", n)
	}

	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	if a := send(t, http.MethodPost, hs.URL+"/webhooks/idx", signed(t, "msg_down", time.Now(), leadBody), leadBody); a.code != http.StatusServiceUnavailable || a.header.Get("Retry-After") == "" {
		t.Fatalf("webhook while JetStream is away: %d (Retry-After %q), want 503 with Retry-After", a.code, a.header.Get("Retry-After"))
	}
	_, err := e.client.SubmitLead(withToken(t, grpcToken), validLead("key-down"))
	wantCode(t, err, codes.Unavailable)

	var failures []string
	for _, line := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(line, "cannot persist the delivery") {
			failures = append(failures, line)
		}
	}
	if len(failures) != 2 ||
		!strings.Contains(failures[0], `"source":"idx","delivery_id":"msg_down"`) ||
		!strings.Contains(failures[1], `"source":"first_party","delivery_id":"key-down"`) || !strings.Contains(failures[1], `"system":"open-house-app"`) {
		t.Fatalf("failure log lines:\n%s", strings.Join(failures, "\n"))
	}
}
