package dotloop_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/pkg/tms/tmstest"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

func TestDotloop_contract(t *testing.T) {
	t.Parallel()
	tmstest.Run(t, func(t *testing.T) (tms.TMS, tmstest.Backend) {
		a, be := tmstest.Dotloop(t)
		return a, be
	})
}

// readOnly is the Dotloop adapter with webhooks, participant and property
// updates taken away, as a TMS without them (SkySlope's Files API) would be: the
// suite's ErrUnsupported branches run against it.
type readOnly struct{ *dotloop.Dotloop }

func (r readOnly) Capabilities() tms.Capabilities {
	return tms.Capabilities{ListTransactions: true, Participants: true, Commission: true}
}
func (r readOnly) UpdateParticipant(context.Context, string, string, tms.Party) (tms.Party, error) {
	return tms.Party{}, tms.ErrUnsupported
}
func (r readOnly) UpdateProperty(context.Context, string, string, tms.Property) error {
	return tms.ErrUnsupported
}
func (r readOnly) Subscribe(context.Context, tms.Subscription) (tms.Subscription, error) {
	return tms.Subscription{}, tms.ErrUnsupported
}
func (r readOnly) Subscriptions(context.Context) ([]tms.Subscription, error) {
	return nil, tms.ErrUnsupported
}
func (r readOnly) Unsubscribe(context.Context, string) error { return tms.ErrUnsupported }

func TestContract_unsupportedCapabilities(t *testing.T) {
	t.Parallel()
	tmstest.Run(t, func(t *testing.T) (tms.TMS, tmstest.Backend) {
		a, be := tmstest.Dotloop(t)
		return readOnly{a}, be
	})
}

// TestLoopItBody_matchesTheReference: the body the adapter sends for the
// reference's loop has the reference's fields and values.
func TestLoopItBody_matchesTheReference(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../../services/sandbox/sandbox/testdata/dotloop/loop_it_request.json")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	body, err := dotloop.LoopItBody(tms.Open{
		Name: "Brian Erwin", Type: tms.TypePurchase, Status: "PRE_OFFER", TemplateID: "1424",
		Property: &tms.Property{StreetName: "Waterview Dr", StreetNumber: "2100", Unit: "12", City: "San Francisco", PostalCode: "94114", State: "CA", Country: "US", MLSNumber: "43FSB8"},
		Parties: []tms.Party{
			{FullName: "Brian Erwin", Email: "brian@example.com", Role: "BUYER"},
			{FullName: "Allen Agent", Email: "allen@example.com", Role: "LISTING_AGENT"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(body)
	var got map[string]any
	_ = json.Unmarshal(b, &got)
	for k, v := range want {
		if k == "mlsId" || k == "mlsAgentId" || k == "nrdsId" {
			continue // the agent's MLS ids: not sent (not in the agent directory yet)
		}
		gb, _ := json.Marshal(got[k])
		wb, _ := json.Marshal(v)
		if string(gb) != string(wb) {
			t.Errorf("%s = %s, want %s", k, gb, wb)
		}
	}
	extra := []string{}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		t.Errorf("fields the reference does not have: %v", extra)
	}
}

func TestParseWebhook(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, body string
		want       tms.Notification
		bad        bool
	}{
		{"loop_updated", `{"eventId":"e1","eventType":"LOOP_UPDATED","timestamp":1,"event":{"id":34308,"profileId":4711,"loopId":34308}}`,
			tms.Notification{EventID: "e1", Event: "LOOP_UPDATED", Profile: "4711", Transaction: "34308"}, false},
		{"loop_id_from_event_id", `{"eventId":"e2","eventType":"LOOP_UPDATED","event":{"id":"9","profileId":"8"}}`,
			tms.Notification{EventID: "e2", Event: "LOOP_UPDATED", Profile: "8", Transaction: "9"}, false},
		{"contact_event", `{"eventId":"e3","eventType":"CONTACT_UPDATED","event":{"id":5}}`,
			tms.Notification{EventID: "e3", Event: "CONTACT_UPDATED"}, false},
		{"loop_without_ids", `{"eventId":"e4","eventType":"LOOP_UPDATED","event":{}}`, tms.Notification{}, true},
		{"not_json", `nope`, tms.Notification{}, true},
		{"no_type", `{"eventId":"e5"}`, tms.Notification{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n, err := dotloop.ParseWebhook([]byte(c.body))
			if (err != nil) != c.bad || n != c.want {
				t.Fatalf("ParseWebhook = %+v, %v", n, err)
			}
		})
	}
}

// FuzzParseWebhook: whatever body is sent, ParseWebhook neither panics nor
// returns a loop event without numeric profile and loop ids.
func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(`{"eventId":"e1","eventType":"LOOP_UPDATED","event":{"id":34308,"profileId":4711,"loopId":34308}}`))
	f.Add([]byte(`{"eventType":"LOOP_PARTICIPANT_UPDATED","event":{"id":"7","profileId":"1","loopId":"2"}}`))
	f.Add([]byte(`{"eventType":"CONTACT_CREATED","event":{"id":1}}`))
	f.Add([]byte(`{"eventType":"LOOP_UPDATED","event":{"loopId":-1,"profileId":1e99}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := dotloop.ParseWebhook(body)
		if err != nil || n.Transaction == "" {
			return
		}
		for _, id := range []string{n.Profile, n.Transaction} {
			if v, err := strconv.ParseInt(id, 10, 64); err != nil || v <= 0 {
				t.Fatalf("loop event with id %q: %+v", id, n)
			}
		}
	})
}

// TestDotloop_pacesToTheLimitItsHeadersSay: configured for 100 calls a
// minute on an account that allows 4, the adapter learns 4 from
// X-RateLimit-Limit and -Remaining and waits rather than meet a 429 (its
// initial burst of 5 would).
func TestDotloop_pacesToTheLimitItsHeadersSay(t *testing.T) {
	t.Parallel()
	a, be := tmstest.DotloopWith(t, sandbox.DotloopOptions{Limit: 4})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var waited error
	for range 6 {
		if _, err := a.Transactions(ctx, be.Profile(), 1); err != nil {
			waited = err
			break
		}
	}
	if u := be.D.Usage(); u.Refused != 0 || waited == nil || !errors.Is(waited, vendorapi.ErrUnreachable) {
		t.Fatalf("usage %+v, last error %v; want the pacer to wait (no 429) until the deadline", u, waited)
	}
}
