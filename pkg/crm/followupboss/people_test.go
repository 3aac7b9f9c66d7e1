package followupboss_test

import (
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
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

// ChangedSince walks every page of the people changed since a time, oldest
// change first, one counted call per page, and lists a person updated in
// the cursor's own second (the sandbox reads updatedAfter as strictly
// after, the reading that loses the most).
func TestFollowUpBoss_ChangedSincePagesOldestFirst(t *testing.T) {
	t.Parallel()
	sb, base := crmtest.Sandbox(t, sandbox.Options{})
	a := followupboss.New(crmtest.FollowUpBossConfig(base))
	before := time.Now().Add(-time.Second)
	n := followupboss.ChangedPageSize + 5
	for i := range n {
		if _, err := a.Record(t.Context(), crmtest.Lead(fmt.Sprintf("ld_%d", i), "P", fmt.Sprint(i), fmt.Sprintf("p%d@example.com", i), ""), ""); err != nil {
			t.Fatal(err)
		}
	}
	moved, err := sb.FUB().SetStage(3, "Active Client")
	if err != nil {
		t.Fatal(err)
	}
	counted := sb.FUB().Usage().Counted
	people, err := a.ChangedSince(t.Context(), before)
	if err != nil {
		t.Fatal(err)
	}
	if len(people) != n {
		t.Fatalf("%d people changed, want %d", len(people), n)
	}
	for i := 1; i < len(people); i++ {
		if people[i].Updated.Before(people[i-1].Updated) {
			t.Fatalf("person %s (updated %s) listed after %s (updated %s): not oldest first",
				people[i].ID, people[i].Updated, people[i-1].ID, people[i-1].Updated)
		}
	}
	if calls := sb.FUB().Usage().Counted - counted; calls != 2 {
		t.Fatalf("%d counted calls for %d people, want 2 pages", calls, n)
	}
	since, err := a.ChangedSince(t.Context(), moved.Updated)
	if err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(since, func(p crm.Person) bool { return p.ID == "3" })
	if i < 0 || since[i].Stage != "Active Client" || !since[i].Updated.Equal(moved.Updated) {
		t.Fatalf("people changed since the move (%s): %+v; want person 3 at Active Client", moved.Updated, since)
	}
}
