package sandbox_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

const (
	pathEvents = "/fub/v1/events"
	pathPeople = "/fub/v1/people"
	pathNotes  = "/fub/v1/notes"
)

func postEvent(body string) request {
	return request{method: http.MethodPost, path: pathEvents, body: body}
}

func getPeople(query string) request {
	return request{method: http.MethodGet, path: pathPeople + "?" + query}
}

func TestFUB_matchesVendorExamples(t *testing.T) {
	t.Parallel()
	inquiry := string(readFixture(t, "send_buyer_inquiry.request.json"))

	t.Run("buyer_inquiry_creates_then_dedups", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		first := e.do(t, postEvent(inquiry)).want(t, http.StatusCreated)
		matchGolden(t, "send_buyer_inquiry.response.json", first.body)
		again := e.do(t, postEvent(inquiry)).want(t, http.StatusOK)
		matchGolden(t, "send_buyer_inquiry.response.json", again.body)
		if a, b := first.person(t).ID, again.person(t).ID; a != b {
			t.Fatalf("second inquiry made person %d, want the same person %d", b, a)
		}
		events := e.sb.FUB().Events()
		if len(events) != 2 || len(e.sb.FUB().People()) != 1 {
			t.Fatalf("got %d events and %d people, want 2 and 1", len(events), len(e.sb.FUB().People()))
		}
		if ev := events[0]; ev.Type != "Property Inquiry" || ev.Source != "MyAwesomeWebsite.com" || !strings.Contains(string(ev.Property), `"mlsNumber": "1234567"`) {
			t.Fatalf("recorded event %+v (property %s), want the inquiry with its property as sent", ev, ev.Property)
		}
	})
	t.Run("people_envelope", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.do(t, postEvent(inquiry)).want(t, http.StatusCreated)
		got := e.do(t, request{method: http.MethodGet, path: pathPeople}).want(t, http.StatusOK)
		matchGolden(t, "people_list.response.json", got.body)
	})
	t.Run("rate_limit_headers", func(t *testing.T) {
		t.Parallel()
		var want map[string]map[string]string
		if err := json.Unmarshal(readFixture(t, "rate_limit_headers.json"), &want); err != nil {
			t.Fatal(err)
		}
		auth := map[string]authMode{
			"GET /v1/people (registered system, first call in the window)": authRegistered,
			"GET /v1/people (no X-System-Key, first call in the window)":   authUnregistered,
		}
		for name, headers := range want {
			e := newEnv(t, sandbox.Options{})
			got := e.do(t, request{method: http.MethodGet, path: pathPeople, auth: auth[name]}).want(t, http.StatusOK)
			for k, v := range headers {
				if got.header.Get(k) != v {
					t.Errorf("%s: %s = %q, want %q", name, k, got.header.Get(k), v)
				}
			}
		}
	})
	t.Run("invalid_json_is_400", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		got := e.do(t, postEvent(string(readFixture(t, "invalid_json.request.txt")))).want(t, http.StatusBadRequest)
		matchGolden(t, "error.response.json", got.body)
	})
	t.Run("unknown_type_is_400", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		got := e.do(t, postEvent(string(readFixture(t, "unknown_type.request.json")))).want(t, http.StatusBadRequest)
		matchGolden(t, "error.response.json", got.body)
		if n := len(e.sb.FUB().People()); n != 0 {
			t.Fatalf("a refused event made %d people", n)
		}
	})
}

func TestFUB_dedup(t *testing.T) {
	t.Parallel()
	const ada = `{"firstName":"Ada","lastName":"Lovelace","emails":[{"value":"Ada@Example.com"}],"phones":[{"value":"(415) 555-0134"}]}`
	tests := []struct {
		name       string
		second     string // the second event's person; "%d" is replaced by the first person's id
		wantStatus int
		wantSame   bool
	}{
		{"email_match", `{"firstName":"Someone","lastName":"Else","emails":[{"value":"ada@example.COM"}]}`, http.StatusOK, true},
		{"phone_and_name_match", `{"firstName":"ADA","lastName":"lovelace","phones":[{"value":"+14155550134"}]}`, http.StatusOK, true},
		{"phone_match_other_name_is_new_person", `{"firstName":"Grace","lastName":"Hopper","phones":[{"value":"+14155550134"}]}`, http.StatusCreated, false},
		{"name_match_other_phone_is_new_person", `{"firstName":"Ada","lastName":"Lovelace","phones":[{"value":"415-555-9999"}]}`, http.StatusCreated, false},
		{"person_id_links", `{"id":%d,"firstName":"Different","emails":[{"value":"other@example.com"}]}`, http.StatusOK, true},
		{"unknown_person_id_is_404", `{"id":99999,"firstName":"Ada","emails":[{"value":"ada@example.com"}]}`, http.StatusNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{})
			first := e.do(t, postEvent(event("Registration", ada))).want(t, http.StatusCreated).person(t)
			second := tt.second
			if strings.Contains(second, "%d") {
				second = fmt.Sprintf(second, first.ID)
			}
			got := e.do(t, postEvent(event("General Inquiry", second))).want(t, tt.wantStatus)
			if tt.wantStatus == http.StatusNotFound {
				got.errorMessage(t)
				if n := len(e.sb.FUB().Events()); n != 1 {
					t.Fatalf("%d events recorded, want only the first", n)
				}
				return
			}
			p := got.person(t)
			if same := p.ID == first.ID; same != tt.wantSame {
				t.Fatalf("second event went to person %d (first %d), want same=%v", p.ID, first.ID, tt.wantSame)
			}
			if evs := e.sb.FUB().Events(); len(evs) != 2 || evs[1].PersonID != p.ID {
				t.Fatalf("events %+v, want the second linked to person %d", evs, p.ID)
			}
		})
	}

	t.Run("match_adds_new_values", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.do(t, postEvent(event("Registration", ada))).want(t, http.StatusCreated)
		p := e.do(t, postEvent(event("Registration",
			`{"emails":[{"value":"ADA@example.com"},{"value":"ada@work.example"}],"phones":[{"value":"415.555.0134"},{"value":"415-555-0199","type":"work"}],"tags":["Seller"]}`,
		))).want(t, http.StatusOK).person(t)
		if len(p.Emails) != 2 || p.Emails[1].Value != "ada@work.example" || len(p.Phones) != 2 || p.Phones[1].Type != "work" || len(p.Tags) != 1 {
			t.Fatalf("person after merge = %+v, want one new email, one new phone and the tag", p)
		}
		if p.Name != "Ada Lovelace" || p.Stage != "Lead" || p.Source != "example.com" {
			t.Fatalf("person after merge = %+v, want name, stage and source kept", p)
		}
	})
	t.Run("inquiry_shorthand", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.do(t, postEvent(event("Inquiry", ada))).want(t, http.StatusCreated)
		e.do(t, postEvent(`{"source":"example.com","type":"Inquiry","person":`+ada+`,"property":{"street":"1 Main St"}}`)).want(t, http.StatusOK)
		evs := e.sb.FUB().Events()
		if evs[0].Type != "General Inquiry" || evs[1].Type != "Property Inquiry" {
			t.Fatalf("types = %q, %q; want General Inquiry, Property Inquiry", evs[0].Type, evs[1].Type)
		}
	})
	t.Run("archived_source_is_204", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.sb.FUB().ArchiveSource("Example.com")
		got := e.do(t, postEvent(event("Registration", ada))).want(t, http.StatusNoContent)
		if len(got.body) != 0 || len(e.sb.FUB().People()) != 0 || len(e.sb.FUB().Events()) != 0 {
			t.Fatalf("archived source: body %q, %d people, %d events; want nothing", got.body, len(e.sb.FUB().People()), len(e.sb.FUB().Events()))
		}
	})
	t.Run("on_person_created_hooks", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		var calls atomic.Int64
		var got atomic.Int64
		for range 2 {
			e.sb.FUB().OnPersonCreated(func(p sandbox.FUBPerson) {
				calls.Add(1)
				got.Store(p.ID)
				_ = e.sb.FUB().People() // hooks run outside the lock
			})
		}
		p := e.do(t, postEvent(event("Registration", ada))).want(t, http.StatusCreated).person(t)
		e.do(t, postEvent(event("Registration", ada))).want(t, http.StatusOK)
		if calls.Load() != 2 || got.Load() != p.ID {
			t.Fatalf("hooks called %d times with person %d, want 2 calls (one creation, two hooks) with %d", calls.Load(), got.Load(), p.ID)
		}
	})
}

func TestFUB_auth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header map[string]string
		auth   authMode
		want   int
	}{
		{"missing_key", nil, authNone, http.StatusUnauthorized},
		{"wrong_key", map[string]string{"Authorization": basic("not-a-key", "")}, authNone, http.StatusUnauthorized},
		{"key_with_password", map[string]string{"Authorization": basic(sandbox.DefaultFUBAPIKey, "secret")}, authNone, http.StatusUnauthorized},
		{"bearer_token", map[string]string{"Authorization": "Bearer " + sandbox.DefaultFUBAPIKey}, authNone, http.StatusUnauthorized},
		{"second_configured_key", map[string]string{"Authorization": basic("other-account", "")}, authNone, http.StatusOK},
		{"default_key", nil, authRegistered, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{FUB: sandbox.FUBOptions{APIKeys: []string{sandbox.DefaultFUBAPIKey, "other-account"}}})
			for _, r := range []request{
				{method: http.MethodGet, path: pathPeople},
				{method: http.MethodPost, path: pathEvents, body: event("Registration", `{"firstName":"A","emails":[{"value":"a@example.com"}]}`)},
			} {
				r.auth, r.header = tt.auth, tt.header
				got := e.do(t, r)
				if tt.want == http.StatusOK && got.status < 300 {
					continue
				}
				got.want(t, tt.want)
				got.errorMessage(t)
			}
		})
	}
}

func basic(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil) //nolint:noctx // only builds a header value
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}

func TestFUB_rateLimits(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		auth  authMode
		limit int
	}{
		{"registered_system_250", authRegistered, 250},
		{"without_system_key_125", authUnregistered, 125},
		{"wrong_system_key_125", authRegistered, 125},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{})
			r := request{method: http.MethodGet, path: pathPeople, auth: tt.auth}
			if tt.name == "wrong_system_key_125" {
				r.header = map[string]string{"X-System-Key": "wrong"}
			}
			for i := range tt.limit {
				got := e.do(t, r).want(t, http.StatusOK)
				if rem := got.header.Get("X-RateLimit-Remaining"); rem != fmt.Sprint(tt.limit-i-1) {
					t.Fatalf("call %d: remaining %s, want %d", i+1, rem, tt.limit-i-1)
				}
			}
			e.clock.Advance(3 * time.Second)
			got := e.do(t, r).want(t, http.StatusTooManyRequests)
			got.errorMessage(t)
			if got.header.Get("Retry-After") != "7" || got.header.Get("X-RateLimit-Remaining") != "0" ||
				got.header.Get("X-RateLimit-Limit") != fmt.Sprint(tt.limit) || got.header.Get("X-RateLimit-Context") != "global" {
				t.Fatalf("429 headers %v, want Retry-After 7, remaining 0, limit %d, context global", got.header, tt.limit)
			}
			// Events are not limited, and a refused call was not processed or counted.
			e.do(t, request{method: http.MethodPost, path: pathEvents, auth: tt.auth, header: r.header,
				body: event("Registration", `{"firstName":"A","emails":[{"value":"a@example.com"}]}`)}).want(t, http.StatusCreated)
			e.clock.Advance(7 * time.Second)
			got = e.do(t, r).want(t, http.StatusOK)
			if rem := got.header.Get("X-RateLimit-Remaining"); rem != fmt.Sprint(tt.limit-1) {
				t.Fatalf("after the window: remaining %s, want %d", rem, tt.limit-1)
			}
		})
	}

	t.Run("events_unlimited", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{FUB: sandbox.FUBOptions{GlobalLimit: 2}})
		for i := range 20 {
			got := e.do(t, postEvent(event("Registration", fmt.Sprintf(`{"firstName":"A","emails":[{"value":"a%d@example.com"}]}`, i)))).want(t, http.StatusCreated)
			if got.header.Get("X-RateLimit-Context") != "POST.events" || got.header.Get("X-RateLimit-Limit") == "" || got.header.Get("X-RateLimit-Window") != "10" {
				t.Fatalf("event headers %v, want context POST.events with limit and window", got.header)
			}
		}
		e.do(t, request{method: http.MethodGet, path: pathPeople}).want(t, http.StatusOK)
		e.do(t, request{method: http.MethodGet, path: pathPeople}).want(t, http.StatusOK)
		e.do(t, request{method: http.MethodGet, path: pathPeople}).want(t, http.StatusTooManyRequests)
	})
	t.Run("window_slides", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{FUB: sandbox.FUBOptions{GlobalLimit: 4}})
		r := request{method: http.MethodGet, path: pathPeople}
		e.do(t, r).want(t, http.StatusOK) // t=0
		e.do(t, r).want(t, http.StatusOK)
		e.clock.Advance(4 * time.Second)
		e.do(t, r).want(t, http.StatusOK) // t=4
		e.do(t, r).want(t, http.StatusOK)
		e.clock.Advance(5500 * time.Millisecond) // t=9.5: the t=0 calls leave at 10
		if got := e.do(t, r).want(t, http.StatusTooManyRequests); got.header.Get("Retry-After") != "1" {
			t.Fatalf("Retry-After %q, want 1 (half a second, rounded up)", got.header.Get("Retry-After"))
		}
		e.clock.Advance(500 * time.Millisecond) // t=10: two slots free, the t=4 calls still count
		e.do(t, r).want(t, http.StatusOK)
		e.do(t, r).want(t, http.StatusOK)
		if got := e.do(t, r).want(t, http.StatusTooManyRequests); got.header.Get("Retry-After") != "4" {
			t.Fatalf("Retry-After %q, want 4 (until the t=4 calls leave)", got.header.Get("Retry-After"))
		}
	})
	t.Run("per_account", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{FUB: sandbox.FUBOptions{APIKeys: []string{sandbox.DefaultFUBAPIKey, "b"}, GlobalLimit: 1}})
		e.do(t, request{method: http.MethodGet, path: pathPeople}).want(t, http.StatusOK)
		e.do(t, request{method: http.MethodGet, path: pathPeople}).want(t, http.StatusTooManyRequests)
		e.do(t, request{method: http.MethodGet, path: pathPeople, header: map[string]string{"Authorization": basic("b", "")}}).want(t, http.StatusOK)
	})
}

func TestFUB_faults(t *testing.T) {
	t.Parallel()
	body := event("Registration", `{"firstName":"A","emails":[{"value":"a@example.com"}]}`)
	t.Run("server_error_three_times_then_success", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.sb.FUB().InjectFault(sandbox.Fault{Method: http.MethodPost, Path: "/v1/events", Status: 500, Count: 3})
		e.do(t, request{method: http.MethodGet, path: pathPeople}).want(t, http.StatusOK) // does not match
		for range 3 {
			e.do(t, postEvent(body)).want(t, http.StatusInternalServerError).errorMessage(t)
		}
		e.do(t, postEvent(body)).want(t, http.StatusCreated)
		if n := len(e.sb.FUB().Events()); n != 1 {
			t.Fatalf("%d events recorded, want 1: faulted requests are not processed", n)
		}
	})
	t.Run("too_many_requests_with_retry_after", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.sb.FUB().InjectFault(sandbox.Fault{Status: 429, RetryAfter: 30})
		got := e.do(t, getPeople("")).want(t, http.StatusTooManyRequests)
		got.errorMessage(t)
		if got.header.Get("Retry-After") != "30" || got.header.Get("X-RateLimit-Context") != "global" {
			t.Fatalf("headers %v, want Retry-After 30 and the rate-limit headers", got.header)
		}
		e.do(t, getPeople("")).want(t, http.StatusOK)
	})
	t.Run("custom_body_and_clear", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.sb.FUB().InjectFault(sandbox.Fault{Path: "/v1/people", Status: 503, Body: "upstream down", Count: 5})
		got := e.do(t, getPeople("")).want(t, http.StatusServiceUnavailable)
		if string(got.body) != "upstream down" {
			t.Fatalf("body %q, want the fault's body", got.body)
		}
		e.sb.FUB().ClearFaults()
		e.do(t, getPeople("")).want(t, http.StatusOK)
	})
	t.Run("over_http", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.do(t, request{method: http.MethodPost, path: "/_sandbox/fub/faults", body: `{"method":"POST","path":"/v1/notes","status":502,"count":2}`}).want(t, http.StatusNoContent)
		note := request{method: http.MethodPost, path: pathNotes, body: `{"personId":1,"body":"x"}`}
		e.do(t, note).want(t, http.StatusBadGateway)
		e.do(t, request{method: http.MethodDelete, path: "/_sandbox/fub/faults"}).want(t, http.StatusNoContent)
		e.do(t, note).want(t, http.StatusNotFound)
		e.do(t, request{method: http.MethodPost, path: "/_sandbox/fub/faults", body: `{"status":42}`}).want(t, http.StatusBadRequest)
	})
}

func TestFUB_assignmentDelay(t *testing.T) {
	t.Parallel()
	const person = `{"firstName":"Ada","lastName":"Lovelace","emails":[{"value":"ada@example.com"}],"phones":[{"value":"415-555-0134"}]}`
	tests := []struct {
		name string
		opts sandbox.FUBOptions
		set  func(t *testing.T, e *env)
	}{
		{"option", sandbox.FUBOptions{AssignmentDelay: 30 * time.Second}, func(*testing.T, *env) {}},
		{"method", sandbox.FUBOptions{}, func(_ *testing.T, e *env) { e.sb.FUB().SetAssignmentDelay(30 * time.Second) }},
		{"over_http", sandbox.FUBOptions{}, func(t *testing.T, e *env) {
			e.do(t, request{method: http.MethodPut, path: "/_sandbox/fub/assignment-delay", body: `{"delay":"30s"}`}).want(t, http.StatusNoContent)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{FUB: tt.opts})
			tt.set(t, e)

			p := e.do(t, postEvent(event("Registration", person))).want(t, http.StatusCreated).person(t)
			note := request{method: http.MethodPost, path: pathNotes, body: fmt.Sprintf(`{"personId":%d,"subject":"Call","body":"Called back","isHtml":false}`, p.ID)}
			hidden := func(t *testing.T) {
				t.Helper()
				if pg := e.do(t, getPeople("email=ada@example.com")).want(t, http.StatusOK).page(t); pg.Metadata.Total != 0 || len(pg.People) != 0 {
					t.Fatalf("search found %+v during assignment", pg)
				}
				e.do(t, request{method: http.MethodGet, path: fmt.Sprintf("%s/%d", pathPeople, p.ID)}).want(t, http.StatusNotFound).errorMessage(t)
				e.do(t, note).want(t, http.StatusNotFound).errorMessage(t)
			}
			hidden(t)
			// FUB's own dedup sees the person.
			if again := e.do(t, postEvent(event("General Inquiry", person))).want(t, http.StatusOK).person(t); again.ID != p.ID {
				t.Fatalf("dedup during assignment made person %d, want %d", again.ID, p.ID)
			}
			e.clock.Advance(29 * time.Second)
			hidden(t)
			e.clock.Advance(time.Second)
			if pg := e.do(t, getPeople("email=ada@example.com")).want(t, http.StatusOK).page(t); pg.Metadata.Total != 1 {
				t.Fatalf("search after assignment: %+v", pg)
			}
			e.do(t, request{method: http.MethodGet, path: fmt.Sprintf("%s/%d", pathPeople, p.ID)}).want(t, http.StatusOK)
			n := e.do(t, note).want(t, http.StatusCreated)
			var got sandbox.FUBNote
			if err := json.Unmarshal(n.body, &got); err != nil || got.PersonID != p.ID || got.Body != "Called back" || got.Subject != "Call" {
				t.Fatalf("note %s (%v)", n.body, err)
			}
			if notes := e.sb.FUB().Notes(); len(notes) != 1 || notes[0] != got {
				t.Fatalf("Notes() = %+v, want [%+v]", notes, got)
			}
		})
	}
}

func TestFUB_people(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	for i := range 25 {
		e.do(t, postEvent(event("Registration", fmt.Sprintf(
			`{"firstName":"P%d","lastName":"Test","emails":[{"value":"p%d@example.com"}],"phones":[{"value":"(415) 555-%04d"}]}`, i, i, i)))).want(t, http.StatusCreated)
	}
	tests := []struct {
		name      string
		query     string
		wantIDs   []int64
		wantTotal int
		wantNext  bool
	}{
		{"default_reverse_by_id_limit_10", "", []int64{25, 24, 23, 22, 21, 20, 19, 18, 17, 16}, 25, true},
		{"limit_and_offset", "limit=3&offset=2", []int64{23, 22, 21}, 25, true},
		{"last_page_has_no_next", "limit=10&offset=20", []int64{5, 4, 3, 2, 1}, 25, false},
		{"email_case_insensitive", "email=P7@EXAMPLE.com", []int64{8}, 1, false},
		{"phone_last_ten_digits", "phone=%2B14155550134", nil, 0, false},
		{"phone_formatted_differently", "phone=%2B1-415-555-0012", []int64{13}, 1, false},
		{"no_match", "email=nobody@example.com", nil, 0, false},
		{"limit_capped_at_100", "limit=1000&offset=24", []int64{1}, 25, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pg := e.do(t, getPeople(tt.query)).want(t, http.StatusOK).page(t)
			var ids []int64
			for _, p := range pg.People {
				ids = append(ids, p.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.wantIDs) || pg.Metadata.Total != tt.wantTotal || (pg.Metadata.Next != nil) != tt.wantNext || (pg.Metadata.NextLink != nil) != tt.wantNext {
				t.Fatalf("ids %v total %d next %v, want %v total %d next %v", ids, pg.Metadata.Total, pg.Metadata.Next, tt.wantIDs, tt.wantTotal, tt.wantNext)
			}
		})
	}
	t.Run("next_link_continues", func(t *testing.T) {
		t.Parallel()
		pg := e.do(t, getPeople("limit=20&source=example.com")).want(t, http.StatusOK).page(t)
		u, err := url.Parse(*pg.Metadata.NextLink)
		if err != nil {
			t.Fatal(err)
		}
		next := e.do(t, request{method: http.MethodGet, path: u.RequestURI()}).want(t, http.StatusOK).page(t)
		if len(next.People) != 5 || next.People[0].ID != 5 || next.Metadata.Offset != 20 || next.Metadata.Next != nil {
			t.Fatalf("second page %+v", next)
		}
	})
	t.Run("get_by_id", func(t *testing.T) {
		t.Parallel()
		p := e.do(t, request{method: http.MethodGet, path: pathPeople + "/3"}).want(t, http.StatusOK).person(t)
		if p.ID != 3 || p.Emails[0].Value != "p2@example.com" {
			t.Fatalf("person 3 = %+v", p)
		}
		e.do(t, request{method: http.MethodGet, path: pathPeople + "/999"}).want(t, http.StatusNotFound).errorMessage(t)
		e.do(t, request{method: http.MethodGet, path: pathPeople + "/abc"}).want(t, http.StatusNotFound).errorMessage(t)
	})
	t.Run("refused_queries", func(t *testing.T) {
		t.Parallel()
		for _, q := range []string{"limit=0", "offset=-1", "next=garbage", "tags=Buyer", "sort=lastActivity", "sort=-name",
			"updatedAfter=yesterday", "updatedAfter=2026-03-02"} {
			e.do(t, getPeople(q)).want(t, http.StatusBadRequest).errorMessage(t)
		}
	})
}

// updatedAfter keeps the people updated strictly after it, and sort=updated lists them oldest
// change first, the order a reconcile poll walks; next pages keep both.
func TestFUB_peopleUpdatedAfter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	for i := range 4 {
		e.do(t, postEvent(event("Registration", fmt.Sprintf(`{"firstName":"P%d","emails":[{"value":"p%d@example.com"}]}`, i, i)))).want(t, http.StatusCreated)
	}
	start := e.clock.Now()
	e.clock.Advance(time.Minute)
	if _, err := e.sb.FUB().SetStage(3, "Active Client"); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	if _, err := e.sb.FUB().SetStage(1, "Prospect"); err != nil {
		t.Fatal(err)
	}
	ids := func(q string) []int64 {
		var out []int64
		for _, p := range e.do(t, getPeople(q)).want(t, http.StatusOK).page(t).People {
			out = append(out, p.ID)
		}
		return out
	}
	at := func(t time.Time) string { return url.QueryEscape(t.Format(time.RFC3339)) }
	for _, tt := range []struct {
		query string
		want  []int64
	}{
		{"updatedAfter=" + at(start.Add(-time.Second)) + "&sort=updated", []int64{2, 4, 3, 1}},
		{"updatedAfter=" + at(start) + "&sort=updated", []int64{3, 1}},
		{"updatedAfter=" + at(start.Add(time.Minute)) + "&sort=updated", []int64{1}},
		{"updatedAfter=" + at(start.Add(2*time.Minute)) + "&sort=updated", nil},
		{"updatedAfter=" + at(start) + "&sort=-updated", []int64{1, 3}},
		{"sort=created", []int64{1, 2, 3, 4}},
		{"sort=-id&limit=2", []int64{4, 3}},
	} {
		if got := ids(tt.query); fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: ids %v, want %v", tt.query, got, tt.want)
		}
	}
	first := e.do(t, getPeople("updatedAfter="+at(start.Add(-time.Second))+"&sort=updated&limit=3")).want(t, http.StatusOK).page(t)
	if first.Metadata.Next == nil {
		t.Fatal("no next after a full page")
	}
	second := e.do(t, getPeople("updatedAfter="+at(start.Add(-time.Second))+"&sort=updated&limit=3&next="+*first.Metadata.Next)).want(t, http.StatusOK).page(t)
	if len(second.People) != 1 || second.People[0].ID != 1 || second.Metadata.Next != nil {
		t.Fatalf("second page %+v, want person 1 alone", second.People)
	}
}

func TestFUB_requests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		req  request
		want int
	}{
		{"event_without_type", postEvent(`{"source":"x","person":{"firstName":"A"}}`), http.StatusBadRequest},
		{"event_without_person", postEvent(`{"source":"x","type":"Registration"}`), http.StatusBadRequest},
		{"event_with_empty_person", postEvent(`{"source":"x","type":"Registration","person":{}}`), http.StatusBadRequest},
		{"event_type_is_case_sensitive", postEvent(event("registration", `{"firstName":"A"}`)), http.StatusBadRequest},
		{"event_type_viewed_property", postEvent(event("Viewed Property", `{"firstName":"A"}`)), http.StatusCreated},
		{"note_without_person", request{method: http.MethodPost, path: pathNotes, body: `{"body":"x"}`}, http.StatusBadRequest},
		{"note_without_body", request{method: http.MethodPost, path: pathNotes, body: `{"personId":1}`}, http.StatusBadRequest},
		{"note_unknown_person", request{method: http.MethodPost, path: pathNotes, body: `{"personId":7,"body":"x"}`}, http.StatusNotFound},
		{"path_not_emulated", request{method: http.MethodGet, path: "/fub/v1/deals"}, http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{})
			got := e.do(t, tt.req).want(t, tt.want)
			if tt.want >= 400 {
				got.errorMessage(t)
			}
		})
	}
}

func TestFUB_views(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	e.sb.FUB().SetAssignmentDelay(time.Minute)
	p := e.do(t, postEvent(event("Registration", `{"firstName":"Ada","lastName":"<Lovelace>","emails":[{"value":"ada@example.com"}]}`))).want(t, http.StatusCreated).person(t)
	e.clock.Advance(time.Minute)
	e.do(t, request{method: http.MethodPost, path: pathNotes, body: fmt.Sprintf(`{"personId":%d,"subject":"Hi","body":"First call"}`, p.ID)}).want(t, http.StatusCreated)

	t.Run("html_page", func(t *testing.T) {
		t.Parallel()
		got := e.do(t, request{method: http.MethodGet, path: "/", auth: authNone}).want(t, http.StatusOK)
		page := string(got.body)
		for _, want := range []string{`http-equiv="refresh" content="2"`, "not the vendor", "Ada &lt;Lovelace&gt;", "ada@example.com", "Registration", "First call", "Follow Up Boss"} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		if ct := got.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("Content-Type %q", ct)
		}
	})
	t.Run("state_json", func(t *testing.T) {
		t.Parallel()
		got := e.do(t, request{method: http.MethodGet, path: "/_sandbox/fub/state", auth: authNone}).want(t, http.StatusOK)
		var st struct {
			People []sandbox.FUBPerson `json:"people"`
			Events []sandbox.FUBEvent  `json:"events"`
			Notes  []sandbox.FUBNote   `json:"notes"`
		}
		if err := json.Unmarshal(got.body, &st); err != nil {
			t.Fatal(err)
		}
		if len(st.People) != 1 || st.People[0].ID != p.ID || len(st.Events) != 1 || st.Events[0].PersonID != p.ID || len(st.Notes) != 1 {
			t.Fatalf("state %s", got.body)
		}
	})
}

func TestFUB_reset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reset func(t *testing.T, e *env)
	}{
		{"method", func(_ *testing.T, e *env) { e.sb.FUB().Reset() }},
		{"over_http", func(t *testing.T, e *env) {
			e.do(t, request{method: http.MethodPost, path: "/_sandbox/fub/reset"}).want(t, http.StatusNoContent)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{FUB: sandbox.FUBOptions{GlobalLimit: 2}})
			e.do(t, postEvent(event("Registration", `{"firstName":"A","emails":[{"value":"a@example.com"}]}`))).want(t, http.StatusCreated)
			e.do(t, getPeople("")).want(t, http.StatusOK)
			e.sb.FUB().InjectFault(sandbox.Fault{Status: 500})
			e.sb.FUB().SetAssignmentDelay(time.Hour)
			e.do(t, request{method: http.MethodPost, path: "/_sandbox/fub/archived-sources", body: `{"source":"archived.example"}`}).want(t, http.StatusNoContent)
			tt.reset(t, e)
			f := e.sb.FUB()
			if len(f.People()) != 0 || len(f.Events()) != 0 || len(f.Notes()) != 0 {
				t.Fatal("state survived the reset")
			}
			e.do(t, getPeople("")).want(t, http.StatusOK)
			e.do(t, getPeople("")).want(t, http.StatusOK) // no fault, a fresh window
			p := e.do(t, postEvent(`{"source":"archived.example","type":"Registration","person":{"firstName":"B"}}`)).want(t, http.StatusCreated).person(t)
			if p.ID != 1 {
				t.Fatalf("first id after reset = %d, want 1", p.ID)
			}
			e.clock.Advance(10 * time.Second)
			e.do(t, request{method: http.MethodGet, path: pathPeople + "/1"}).want(t, http.StatusOK) // no delay left
		})
	}
}
