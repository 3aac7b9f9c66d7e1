package gateway_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

// fullRatio reads brokerflow_bus_stream_full_ratio of stream.
func fullRatio(t *testing.T, e *env, stream string) (float64, bool) {
	t.Helper()
	for _, m := range gather(t, e.reg, "brokerflow_bus_stream_full_ratio") {
		for _, l := range m.GetLabel() {
			if l.GetName() == "stream" && l.GetValue() == stream {
				return m.GetGauge().GetValue(), true
			}
		}
	}
	return 0, false
}

// WEBHOOKS at its size limit refuses new webhooks, which are answered 503
// for their providers to retry, and keeps every one it had accepted: none
// is dropped to make room, processed or not.
func TestGateway_aFullWebhooksStreamAnswers503AndLosesNothing(t *testing.T) {
	t.Parallel()
	topo := testTopology()
	topo.MaxBytes = 16 << 10
	e := setupWith(t, testConfig(), topo)
	var accepted []string
	full := false
	for i := 0; i < 200 && !full; i++ {
		r := postIDX(e.url, fmt.Sprintf("msg_fill_%03d", i))
		switch {
		case r.err != nil:
			t.Fatal(r.err)
		case r.code == http.StatusAccepted:
			accepted = append(accepted, r.id)
		case r.code == http.StatusServiceUnavailable:
			full = true
		default:
			t.Fatalf("%s: %d %+v", r.id, r.code, r.resp)
		}
	}
	if !full || len(accepted) == 0 {
		t.Fatalf("%d accepted and no 503: the stream made room by dropping messages", len(accepted))
	}
	// A batch meets the same wall.
	for _, r := range postHeld(t, e, "msg_over_1", "msg_over_2", "msg_over_3") {
		if r.code != http.StatusServiceUnavailable {
			t.Errorf("%s into a full stream: %d %+v, want 503", r.id, r.code, r.resp)
		}
	}
	stored := natstest.All(t, e.js, bus.StreamWebhooks, ">")
	if len(stored) != len(accepted) {
		t.Fatalf("WEBHOOKS holds %d messages, %d were accepted", len(stored), len(accepted))
	}
	for i, m := range stored {
		if got, want := m.Headers().Get(bus.HeaderMsgID), gateway.MsgID("idx", accepted[i]); got != want {
			t.Fatalf("message %d is %s, want %s: an accepted webhook was dropped", i, got, want)
		}
	}
	if r, ok := fullRatio(t, e, bus.StreamWebhooks); !ok || r < 0.8 || r > 1 {
		t.Fatalf("WEBHOOKS full ratio %v (reported %v), want at least 0.8", r, ok)
	}
	if r, ok := fullRatio(t, e, bus.StreamLeads); !ok || r != 0 {
		t.Fatalf("LEADS full ratio %v (reported %v), want 0", r, ok)
	}
}
