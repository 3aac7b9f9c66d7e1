package followupboss_test

import (
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
)

// TestFollowUpBoss_ParseWebhook_readsIDsAsTheGatewayDoes: the eventId and
// the resourceIds are read as strings or numbers, a string trimmed, and the
// eventId the adapter reads is the delivery id the gateway deduplicated the
// webhook by, whenever the gateway could use it.
func TestFollowUpBoss_ParseWebhook_readsIDsAsTheGatewayDoes(t *testing.T) {
	t.Parallel()
	const key = "fub-system-key"
	gw, err := webhooksig.NewFUBSignature([]string{key})
	if err != nil {
		t.Fatal(err)
	}
	fub := followupboss.New(followupboss.Config{BaseURL: "http://127.0.0.1:1", Timeout: time.Second})
	for _, tt := range []struct {
		name, body, eventID string
		ids                 []string
	}{
		{"strings", `{"eventId":"abc-1","event":"peopleUpdated","resourceIds":["12"]}`, "abc-1", []string{"12"}},
		{"padded_strings", `{"eventId":" abc-1\n","event":"peopleUpdated","resourceIds":[" 12 ","\t13"]}`, "abc-1", []string{"12", "13"}},
		{"numbers", `{"eventId":12345,"event":"peopleUpdated","resourceIds":[12]}`, "12345", []string{"12"}},
		{"number_as_written", `{"eventId":1e3,"event":"peopleUpdated","resourceIds":[12]}`, "1e3", []string{"12"}},
		{"no_event_id", `{"event":"peopleUpdated","resourceIds":[12]}`, "", []string{"12"}},
		{"object_event_id", `{"eventId":{"id":1},"event":"peopleUpdated","resourceIds":[12]}`, "", []string{"12"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, err := fub.ParseWebhook([]byte(tt.body))
			if err != nil || n.EventID != tt.eventID || !slices.Equal(n.ContactIDs, tt.ids) {
				t.Fatalf("ParseWebhook = event %q, contacts %q, %v; want %q, %q", n.EventID, n.ContactIDs, err, tt.eventID, tt.ids)
			}
			h := http.Header{}
			h.Set(webhooksig.HeaderFUBSignature, webhooksig.SignFUB(key, []byte(tt.body)))
			deliveryID, err := gw.Verify(h, []byte(tt.body))
			if err != nil || deliveryID != tt.eventID {
				t.Fatalf("the gateway's delivery id = %q, %v; the adapter's eventId = %q", deliveryID, err, tt.eventID)
			}
		})
	}
}
