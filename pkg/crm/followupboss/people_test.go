package followupboss_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync/atomic"
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

// changedEnv is the sandbox's Follow Up Boss, one person created per
// second, behind a server that runs afterPage once the first listing of
// changed people is answered.
func changedEnv(t *testing.T, people int, afterPage func(sb *sandbox.Sandbox)) (*sandbox.Sandbox, *followupboss.FollowUpBoss, time.Time) {
	t.Helper()
	clock := sandbox.NewClock(time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC))
	sb := sandbox.New(sandbox.Options{Now: clock.Now})
	var pages atomic.Int64
	h := sb.Handler()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		if r.URL.Query().Has("updatedAfter") && pages.Add(1) == 1 && afterPage != nil {
			afterPage(sb)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close)
	a := followupboss.New(crmtest.FollowUpBossConfig(srv.URL))
	start := clock.Now()
	for i := range people {
		if _, err := a.Record(t.Context(), crmtest.Lead(fmt.Sprintf("ld_%d", i), "P", fmt.Sprint(i), fmt.Sprintf("p%d@example.com", i), ""), ""); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
	}
	return sb, a, start
}

// ChangedSince walks every page of the people changed since a time, oldest
// change first, one counted call per page, and lists a person updated in
// the cursor's own second (the sandbox reads updatedAfter as strictly
// after, the reading that loses the most).
func TestFollowUpBoss_ChangedSincePagesOldestFirst(t *testing.T) {
	t.Parallel()
	n := followupboss.ChangedPageSize + 5
	sb, a, start := changedEnv(t, n, nil)
	counted := sb.FUB().Usage().Counted
	people, err := a.ChangedSince(t.Context(), start)
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
	moved, err := sb.FUB().SetStage(3, "Active Client")
	if err != nil {
		t.Fatal(err)
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

// A person changed while the walk is between pages moves to its end; the
// person behind them on the next page is still listed (paging by offset
// would skip them).
func TestFollowUpBoss_ChangedSinceSkipsNoOneWhenAPersonMovesMidWalk(t *testing.T) {
	t.Parallel()
	n := 2*followupboss.ChangedPageSize + 5
	_, a, start := changedEnv(t, n, func(sb *sandbox.Sandbox) {
		if _, err := sb.FUB().SetStage(1, "Prospect"); err != nil {
			t.Error(err)
		}
	})
	people, err := a.ChangedSince(t.Context(), start)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, p := range people {
		ids[p.ID] = true
	}
	for id := 1; id <= n; id++ {
		if !ids[strconv.Itoa(id)] {
			t.Fatalf("person %d was not listed (%d people listed)", id, len(people))
		}
	}
	if i := slices.IndexFunc(people, func(p crm.Person) bool { return p.ID == "1" && p.Stage == "Prospect" }); i < 0 {
		t.Fatal("person 1's move was not listed")
	}
}
