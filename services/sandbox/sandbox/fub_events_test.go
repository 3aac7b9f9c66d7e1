package sandbox_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

type eventsPage struct {
	Metadata struct {
		Collection string  `json:"collection"`
		Total      int     `json:"total"`
		Next       *string `json:"next"`
		NextLink   *string `json:"nextLink"`
	} `json:"_metadata"`
	Events []sandbox.FUBEvent `json:"events"`
}

func (r response) events(t *testing.T) eventsPage {
	t.Helper()
	var pg eventsPage
	if err := json.Unmarshal(r.body, &pg); err != nil {
		t.Fatalf("decode events %s: %v", r.body, err)
	}
	return pg
}

func eventIDs(pg eventsPage) []int64 {
	var ids []int64
	for _, e := range pg.Events {
		ids = append(ids, e.ID)
	}
	return ids
}

func TestFUB_listEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	// Person 1 gets events 1, 3, 5, ...; person 2 events 2, 4, 6, ...
	for i := range 24 {
		person := fmt.Sprintf(`{"firstName":"P","lastName":"%d","emails":[{"value":"p%d@example.com"}]}`, i%2, i%2)
		body := fmt.Sprintf(`{"source":"idx","type":"General Inquiry","message":"m%d","description":"d%d","person":%s}`, i+1, i+1, person)
		want := http.StatusOK // an event on a known person
		if i < 2 {
			want = http.StatusCreated
		}
		e.do(t, postEvent(body)).want(t, want)
	}
	get := func(query string) request {
		return request{method: http.MethodGet, path: pathEvents + "?" + query}
	}

	t.Run("by_person_newest_first_with_what_was_sent", func(t *testing.T) {
		t.Parallel()
		pg := e.do(t, get("personId=2&limit=3")).want(t, http.StatusOK).events(t)
		if got := fmt.Sprint(eventIDs(pg)); got != "[24 22 20]" || pg.Metadata.Total != 12 || pg.Metadata.Collection != "events" || pg.Metadata.Next == nil {
			t.Fatalf("events %s, total %d, next %v; want [24 22 20] of 12 with a next cursor", got, pg.Metadata.Total, pg.Metadata.Next)
		}
		if ev := pg.Events[0]; ev.PersonID != 2 || ev.Message != "m24" || ev.Description != "d24" || ev.Source != "idx" || ev.Type != "General Inquiry" {
			t.Fatalf("event = %+v", ev)
		}
	})
	t.Run("next_cursor_continues", func(t *testing.T) {
		t.Parallel()
		pg := e.do(t, get("personId=1&limit=10")).want(t, http.StatusOK).events(t)
		u, err := url.Parse(*pg.Metadata.NextLink)
		if err != nil {
			t.Fatal(err)
		}
		next := e.do(t, request{method: http.MethodGet, path: u.RequestURI()}).want(t, http.StatusOK).events(t)
		if got := fmt.Sprint(eventIDs(next)); got != "[3 1]" || next.Metadata.Next != nil {
			t.Fatalf("second page %s, next %v; want [3 1] and no next", got, next.Metadata.Next)
		}
	})
	t.Run("all_people_default_limit_10", func(t *testing.T) {
		t.Parallel()
		pg := e.do(t, get("")).want(t, http.StatusOK).events(t)
		if len(pg.Events) != 10 || pg.Events[0].ID != 24 || pg.Metadata.Total != 24 {
			t.Fatalf("events %v total %d", eventIDs(pg), pg.Metadata.Total)
		}
	})
	t.Run("refused_queries", func(t *testing.T) {
		t.Parallel()
		for _, q := range []string{"personId=abc", "personId=0", "limit=0", "next=garbage"} {
			e.do(t, get(q)).want(t, http.StatusBadRequest).errorMessage(t)
		}
	})
}

// GET /v1/events has its own, tighter limit: 20 per window for a registered system, 10
// without, in the "events" context, apart from the global one.
func TestFUB_listEventsRateLimit(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		auth  authMode
		limit int
	}{{authRegistered, 20}, {authUnregistered, 10}} {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{})
			r := request{method: http.MethodGet, path: pathEvents + "?personId=1", auth: tt.auth}
			for i := range tt.limit {
				got := e.do(t, r).want(t, http.StatusOK)
				if got.header.Get("X-RateLimit-Context") != "events" || got.header.Get("X-RateLimit-Limit") != fmt.Sprint(tt.limit) {
					t.Fatalf("call %d headers %v, want context events, limit %d", i+1, got.header, tt.limit)
				}
			}
			if got := e.do(t, r).want(t, http.StatusTooManyRequests); got.header.Get("X-RateLimit-Context") != "events" {
				t.Fatalf("429 context %q, want events", got.header.Get("X-RateLimit-Context"))
			}
			// The global context is untouched.
			got := e.do(t, request{method: http.MethodGet, path: pathPeople, auth: tt.auth}).want(t, http.StatusOK)
			if got.header.Get("X-RateLimit-Context") != "global" {
				t.Fatalf("people context %q, want global", got.header.Get("X-RateLimit-Context"))
			}
		})
	}
}
