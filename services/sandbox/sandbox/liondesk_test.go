package sandbox_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

const (
	pathContacts = "/liondesk/contacts"
	pathSources  = "/liondesk/contact-sources"
)

// ld is a LionDesk call with the default access token.
func ld(method, path, body string) request {
	return ldAs(sandbox.DefaultLionDeskToken, method, path, body)
}

func ldAs(token, method, path, body string) request {
	r := request{method: method, path: path, body: body, auth: authNone}
	if token != "" {
		r.header = map[string]string{"Authorization": "Bearer " + token}
	}
	return r
}

func readLionDeskFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "liondesk", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return string(b)
}

// matchLionDesk compares got with a testdata/liondesk fixture, as matchGolden does for FUB.
func matchLionDesk(t *testing.T, name string, got []byte) {
	t.Helper()
	var want, have any
	if err := json.Unmarshal([]byte(readLionDeskFixture(t, name)), &want); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	if err := json.Unmarshal(got, &have); err != nil {
		t.Fatalf("response is not JSON (%v): %s", err, got)
	}
	if diff := golden("$", want, have); diff != "" {
		t.Fatalf("response does not match %s: %s\ngot: %s", name, diff, got)
	}
}

func (r response) contact(t *testing.T) sandbox.LionDeskContact {
	t.Helper()
	var c sandbox.LionDeskContact
	if err := json.Unmarshal(r.body, &c); err != nil {
		t.Fatalf("decode contact %s: %v", r.body, err)
	}
	return c
}

type contactList struct {
	Data  []sandbox.LionDeskContact `json:"data"`
	Total int                       `json:"total"`
}

func (r response) contacts(t *testing.T) contactList {
	t.Helper()
	var l contactList
	if err := json.Unmarshal(r.body, &l); err != nil {
		t.Fatalf("decode contact list %s: %v", r.body, err)
	}
	return l
}

func (r response) liondeskMessage(t *testing.T) string {
	t.Helper()
	var e struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Message == "" || e.Code != r.status {
		t.Fatalf("body %s is not {\"code\":%d,\"message\":...} (%v)", r.body, r.status, err)
	}
	return e.Message
}

func ids(cs []sandbox.LionDeskContact) []int64 {
	out := []int64{}
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

func TestLionDesk_matchesDocumentedShapes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	src := e.do(t, ld(http.MethodPost, pathSources, readLionDeskFixture(t, "create_source.request.json"))).want(t, http.StatusCreated)
	matchLionDesk(t, "source.response.json", src.body)

	created := e.do(t, ld(http.MethodPost, pathContacts, readLionDeskFixture(t, "create_contact.request.json"))).want(t, http.StatusCreated)
	matchLionDesk(t, "contact.response.json", created.body)
	c := created.contact(t)

	t.Run("get_by_id", func(t *testing.T) {
		got := e.do(t, ld(http.MethodGet, fmt.Sprintf("%s/%d", pathContacts, c.ID), "")).want(t, http.StatusOK)
		matchLionDesk(t, "contact.response.json", got.body)
	})
	t.Run("search_by_email", func(t *testing.T) {
		got := e.do(t, ld(http.MethodGet, pathContacts+"?email=John.Smith@example.com", "")).want(t, http.StatusOK)
		matchLionDesk(t, "contacts_search.response.json", got.body)
	})
	t.Run("note", func(t *testing.T) {
		got := e.do(t, ld(http.MethodPost, fmt.Sprintf("%s/%d/notes", pathContacts, c.ID), readLionDeskFixture(t, "create_note.request.json"))).want(t, http.StatusCreated)
		matchLionDesk(t, "note.response.json", got.body)
	})
	t.Run("none_strictly_required", func(t *testing.T) {
		got := e.do(t, ld(http.MethodPost, pathContacts, `{}`)).want(t, http.StatusCreated)
		matchLionDesk(t, "empty_contact.response.json", got.body)
	})
	t.Run("invalid_json_is_400", func(t *testing.T) {
		got := e.do(t, ld(http.MethodPost, pathContacts, readLionDeskFixture(t, "invalid_json.request.txt"))).want(t, http.StatusBadRequest)
		matchLionDesk(t, "error.response.json", got.body)
	})
	t.Run("unauthorized", func(t *testing.T) {
		got := e.do(t, ldAs("", http.MethodGet, pathContacts, "")).want(t, http.StatusUnauthorized)
		matchLionDesk(t, "unauthorized.response.json", got.body)
	})
	t.Run("rate_limit_headers", func(t *testing.T) {
		var want map[string]string
		if err := json.Unmarshal([]byte(readLionDeskFixture(t, "rate_limit_headers.json")), &want); err != nil {
			t.Fatal(err)
		}
		fresh := newEnv(t, sandbox.Options{})
		got := fresh.do(t, ld(http.MethodGet, pathContacts, "")).want(t, http.StatusOK)
		for k, v := range want {
			if got.header.Get(k) != v {
				t.Errorf("%s = %q, want %q", k, got.header.Get(k), v)
			}
		}
	})
}

func TestLionDesk_createDoesNotDeduplicate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	body := `{"first_name":"Ada","last_name":"Lovelace","email":"ada@example.com","mobile_phone":"+14155550134"}`
	a := e.do(t, ld(http.MethodPost, pathContacts, body)).want(t, http.StatusCreated).contact(t)
	b := e.do(t, ld(http.MethodPost, pathContacts, body)).want(t, http.StatusCreated).contact(t)
	if a.ID == b.ID || len(e.sb.LionDesk().Contacts()) != 2 {
		t.Fatalf("two creates made contacts %d and %d (%d stored), want two distinct contacts", a.ID, b.ID, len(e.sb.LionDesk().Contacts()))
	}
	found := e.do(t, ld(http.MethodGet, pathContacts+"?email=ADA@example.com", "")).want(t, http.StatusOK).contacts(t)
	if fmt.Sprint(ids(found.Data)) != fmt.Sprint([]int64{a.ID, b.ID}) || found.Total != 2 {
		t.Fatalf("search found %v, want both, oldest first", ids(found.Data))
	}
}

func TestLionDesk_search(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	for i := range 12 {
		e.do(t, ld(http.MethodPost, pathContacts, fmt.Sprintf(
			`{"first_name":"P%d","email":"p%d@example.com","mobile_phone":"(415) 555-%04d","home_phone":"650-555-%04d"}`, i, i, i, i))).want(t, http.StatusCreated)
	}
	tests := []struct {
		name      string
		query     string
		wantIDs   []int64
		wantTotal int
	}{
		{"all_in_id_order", "", []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, 12},
		{"email_case_insensitive", "email=P7@EXAMPLE.com", []int64{8}, 1},
		{"mobile_phone_last_ten_digits", "phone=%2B14155550003", []int64{4}, 1},
		{"home_phone", "phone=1-650-555-0011", []int64{12}, 1},
		{"email_and_phone_both_apply", "email=p1@example.com&phone=4155550002", []int64{}, 0},
		{"no_match", "email=nobody@example.com", []int64{}, 0},
		{"limit_and_offset", "limit=3&offset=4", []int64{5, 6, 7}, 12},
		{"limit_capped_at_100", "limit=1000&offset=11", []int64{12}, 12},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := e.do(t, ld(http.MethodGet, pathContacts+"?"+tt.query, "")).want(t, http.StatusOK).contacts(t)
			if fmt.Sprint(ids(got.Data)) != fmt.Sprint(tt.wantIDs) || got.Total != tt.wantTotal {
				t.Fatalf("ids %v total %d, want %v total %d", ids(got.Data), got.Total, tt.wantIDs, tt.wantTotal)
			}
		})
	}
	t.Run("refused_queries", func(t *testing.T) {
		t.Parallel()
		for _, q := range []string{"limit=0", "offset=-1", "tags=Buyer", "updated_since=yesterday", "phone=none"} {
			e.do(t, ld(http.MethodGet, pathContacts+"?"+q, "")).want(t, http.StatusBadRequest).liondeskMessage(t)
		}
	})
}

func TestLionDesk_updatedSince(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	start := e.clock.Now()
	for i := range 3 {
		e.do(t, ld(http.MethodPost, pathContacts, fmt.Sprintf(`{"first_name":"C%d"}`, i))).want(t, http.StatusCreated)
	}
	e.clock.Advance(time.Minute)
	since := e.clock.Now()
	e.do(t, ld(http.MethodPatch, pathContacts+"/1", `{"last_name":"Changed"}`)).want(t, http.StatusOK)
	e.clock.Advance(time.Minute)
	e.do(t, ld(http.MethodPost, pathContacts+"/2/notes", `{"content":"a note is not a contact change"}`)).want(t, http.StatusCreated)
	e.do(t, ld(http.MethodPost, pathContacts, `{"first_name":"C3"}`)).want(t, http.StatusCreated)

	query := func(t time.Time) string { return "?updated_since=" + t.Format(time.RFC3339) }
	got := e.do(t, ld(http.MethodGet, pathContacts+query(since), "")).want(t, http.StatusOK).contacts(t)
	if fmt.Sprint(ids(got.Data)) != "[1 4]" || got.Total != 2 {
		t.Fatalf("changed since %s: %v, want [1 4] ordered by updated_at", since, ids(got.Data))
	}
	all := e.do(t, ld(http.MethodGet, pathContacts+query(start), "")).want(t, http.StatusOK).contacts(t)
	if fmt.Sprint(ids(all.Data)) != "[2 3 1 4]" {
		t.Fatalf("changed since the start: %v, want [2 3 1 4] (updated_at, then id)", ids(all.Data))
	}
}

func TestLionDesk_patch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	e.do(t, ld(http.MethodPost, pathSources, `{"name":"Website"}`)).want(t, http.StatusCreated)
	c := e.do(t, ld(http.MethodPost, pathContacts, `{"first_name":"Ada","email":"ada@example.com","tags":["Buyer"," Hot "],"source_id":1}`)).want(t, http.StatusCreated).contact(t)
	if c.Tags != "Buyer,Hot" || c.SourceID == nil || *c.SourceID != 1 {
		t.Fatalf("created %+v, want tags joined and source 1", c)
	}
	path := fmt.Sprintf("%s/%d", pathContacts, c.ID)
	e.clock.Advance(5 * time.Second)
	p := e.do(t, ld(http.MethodPatch, path, `{"last_name":"Lovelace","source_id":null,"hotness_id":2}`)).want(t, http.StatusOK).contact(t)
	if p.FirstName != "Ada" || p.LastName != "Lovelace" || p.Email != "ada@example.com" || p.SourceID != nil || p.HotnessID == nil || *p.HotnessID != 2 {
		t.Fatalf("patched %+v, want only last_name, source_id and hotness_id changed", p)
	}
	if !p.UpdatedAt.After(c.UpdatedAt) || !p.CreatedAt.Equal(c.CreatedAt) {
		t.Fatalf("updated_at %s (was %s), created_at %s (was %s)", p.UpdatedAt, c.UpdatedAt, p.CreatedAt, c.CreatedAt)
	}

	tests := []struct {
		name string
		req  request
		want int
	}{
		{"unknown_field", ld(http.MethodPatch, path, `{"phone":"1"}`), http.StatusBadRequest},
		{"wrong_type", ld(http.MethodPatch, path, `{"first_name":7}`), http.StatusBadRequest},
		{"negative_id", ld(http.MethodPatch, path, `{"hotness_id":-1}`), http.StatusBadRequest},
		{"unknown_source", ld(http.MethodPatch, path, `{"source_id":99}`), http.StatusBadRequest},
		{"not_an_object", ld(http.MethodPatch, path, `[1]`), http.StatusBadRequest},
		{"unknown_contact", ld(http.MethodPatch, pathContacts+"/99", `{"first_name":"X"}`), http.StatusNotFound},
		{"create_with_unknown_source", ld(http.MethodPost, pathContacts, `{"source_id":99}`), http.StatusBadRequest},
		{"create_with_bad_tags", ld(http.MethodPost, pathContacts, `{"tags":{"a":1}}`), http.StatusBadRequest},
		{"get_unknown_contact", ld(http.MethodGet, pathContacts+"/99", ""), http.StatusNotFound},
		{"get_non_numeric_id", ld(http.MethodGet, pathContacts+"/abc", ""), http.StatusNotFound},
		{"path_not_emulated", ld(http.MethodGet, "/liondesk/tasks", ""), http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.do(t, tt.req).want(t, tt.want).liondeskMessage(t)
		})
	}
	if got := e.sb.LionDesk().Contacts(); len(got) != 1 || got[0].LastName != "Lovelace" {
		t.Fatalf("refused requests changed the state: %+v", got)
	}
}

func TestLionDesk_notes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	e.do(t, ld(http.MethodPost, pathContacts, `{"first_name":"Ada"}`)).want(t, http.StatusCreated)
	e.do(t, ld(http.MethodPost, pathContacts, `{"first_name":"Grace"}`)).want(t, http.StatusCreated)
	for _, c := range []string{"first", "second"} {
		e.do(t, ld(http.MethodPost, pathContacts+"/1/notes", fmt.Sprintf(`{"content":%q}`, c))).want(t, http.StatusCreated)
	}
	e.do(t, ld(http.MethodPost, pathContacts+"/2/notes", `{"content":"other"}`)).want(t, http.StatusCreated)
	e.do(t, ld(http.MethodPost, pathContacts+"/1/notes", `{"content":"  "}`)).want(t, http.StatusBadRequest).liondeskMessage(t)
	e.do(t, ld(http.MethodPost, pathContacts+"/9/notes", `{"content":"x"}`)).want(t, http.StatusNotFound).liondeskMessage(t)
	e.do(t, ld(http.MethodGet, pathContacts+"/9/notes", "")).want(t, http.StatusNotFound).liondeskMessage(t)

	got := e.do(t, ld(http.MethodGet, pathContacts+"/1/notes", "")).want(t, http.StatusOK)
	var list struct {
		Data  []sandbox.LionDeskNote `json:"data"`
		Total int                    `json:"total"`
	}
	if err := json.Unmarshal(got.body, &list); err != nil {
		t.Fatal(err)
	}
	if list.Total != 2 || list.Data[0].Content != "first" || list.Data[1].Content != "second" || list.Data[1].ContactID != 1 {
		t.Fatalf("notes of contact 1: %s", got.body)
	}
	if n := e.sb.LionDesk().Notes(); len(n) != 3 || n[2].ContactID != 2 {
		t.Fatalf("Notes() = %+v", n)
	}
}

func TestLionDesk_sources(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	e.do(t, ld(http.MethodPost, pathSources, `{"name":"Zillow"}`)).want(t, http.StatusCreated)
	e.do(t, ld(http.MethodPost, pathSources, `{"name":"Zillow"}`)).want(t, http.StatusCreated) // names are not unique
	e.do(t, ld(http.MethodPost, pathSources, `{"name":" "}`)).want(t, http.StatusBadRequest).liondeskMessage(t)
	got := e.do(t, ld(http.MethodGet, pathSources, "")).want(t, http.StatusOK)
	var list struct {
		Data  []sandbox.LionDeskSource `json:"data"`
		Total int                      `json:"total"`
	}
	if err := json.Unmarshal(got.body, &list); err != nil || list.Total != 2 || list.Data[1] != (sandbox.LionDeskSource{ID: 2, Name: "Zillow"}) {
		t.Fatalf("sources %s (%v)", got.body, err)
	}
}

func TestLionDesk_auth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header map[string]string
		want   int
	}{
		{"missing_token", nil, http.StatusUnauthorized},
		{"wrong_token", map[string]string{"Authorization": "Bearer revoked"}, http.StatusUnauthorized},
		{"basic_auth", map[string]string{"Authorization": basic(sandbox.DefaultLionDeskToken, "")}, http.StatusUnauthorized},
		{"token_without_scheme", map[string]string{"Authorization": sandbox.DefaultLionDeskToken}, http.StatusUnauthorized},
		{"scheme_is_case_insensitive", map[string]string{"Authorization": "bearer " + sandbox.DefaultLionDeskToken}, http.StatusOK},
		{"second_configured_token", map[string]string{"Authorization": "Bearer other-user"}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{LionDesk: sandbox.LionDeskOptions{Tokens: []string{sandbox.DefaultLionDeskToken, "other-user"}}})
			got := e.do(t, request{method: http.MethodGet, path: pathContacts, auth: authNone, header: tt.header}).want(t, tt.want)
			if tt.want == http.StatusUnauthorized {
				got.liondeskMessage(t)
				if got.header.Get("X-RateLimit-Limit") != "" || !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Bearer") {
					t.Fatalf("401 headers %v, want a Bearer challenge and no rate-limit headers", got.header)
				}
			}
		})
	}
}

func TestLionDesk_rateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{LionDesk: sandbox.LionDeskOptions{Limit: 3, Tokens: []string{"a", "b"}}})
	for i, want := range []string{"2", "1", "0"} {
		got := e.do(t, ldAs("a", http.MethodGet, pathContacts, "")).want(t, http.StatusOK)
		if got.header.Get("X-RateLimit-Remaining") != want || got.header.Get("X-RateLimit-Limit") != "3" || got.header.Get("X-RateLimit-Window") != "10" {
			t.Fatalf("call %d: headers %v, want remaining %s of 3 per 10 s", i+1, got.header, want)
		}
		e.clock.Advance(2 * time.Second)
	}
	over := e.do(t, ldAs("a", http.MethodPost, pathContacts, `{"first_name":"X"}`)).want(t, http.StatusTooManyRequests)
	over.liondeskMessage(t)
	// The first call leaves the window 10 s after it was made: 4 s from now.
	if over.header.Get("Retry-After") != "4" || over.header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("429 headers %v, want Retry-After 4", over.header)
	}
	if n := len(e.sb.LionDesk().Contacts()); n != 0 {
		t.Fatalf("a refused call made %d contacts", n)
	}
	e.do(t, ldAs("b", http.MethodGet, pathContacts, "")).want(t, http.StatusOK) // per token
	e.clock.Advance(4 * time.Second)
	e.do(t, ldAs("a", http.MethodGet, pathContacts, "")).want(t, http.StatusOK)
}

func TestLionDesk_faults(t *testing.T) {
	t.Parallel()
	t.Run("path_and_method", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.sb.LionDesk().InjectFault(sandbox.Fault{Method: http.MethodPost, Path: "/contacts", Status: 503, Count: 2})
		e.do(t, ld(http.MethodGet, pathContacts, "")).want(t, http.StatusOK)
		for range 2 {
			got := e.do(t, ld(http.MethodPost, pathContacts, `{"first_name":"A"}`)).want(t, http.StatusServiceUnavailable)
			got.liondeskMessage(t)
			if got.header.Get("X-RateLimit-Limit") != "60" {
				t.Fatalf("a faulted answer lacks the rate-limit headers: %v", got.header)
			}
		}
		e.do(t, ld(http.MethodPost, pathContacts, `{"first_name":"A"}`)).want(t, http.StatusCreated)
		if n := len(e.sb.LionDesk().Contacts()); n != 1 {
			t.Fatalf("%d contacts, want 1: faulted requests are not processed", n)
		}
	})
	t.Run("too_many_requests_with_retry_after", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.sb.LionDesk().InjectFault(sandbox.Fault{Status: 429, RetryAfter: 30})
		got := e.do(t, ld(http.MethodGet, pathContacts, "")).want(t, http.StatusTooManyRequests)
		if got.header.Get("Retry-After") != "30" {
			t.Fatalf("headers %v, want Retry-After 30", got.header)
		}
		e.do(t, ld(http.MethodGet, pathContacts, "")).want(t, http.StatusOK)
	})
	t.Run("over_http_and_clear", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.do(t, request{method: http.MethodPost, path: "/_sandbox/liondesk/faults", body: `{"path":"/contact-sources","status":502,"count":5}`}).want(t, http.StatusNoContent)
		e.do(t, ld(http.MethodGet, pathSources, "")).want(t, http.StatusBadGateway)
		e.do(t, request{method: http.MethodDelete, path: "/_sandbox/liondesk/faults"}).want(t, http.StatusNoContent)
		e.do(t, ld(http.MethodGet, pathSources, "")).want(t, http.StatusOK)
		e.do(t, request{method: http.MethodPost, path: "/_sandbox/liondesk/faults", body: `{"status":42}`}).want(t, http.StatusBadRequest)
		e.sb.LionDesk().InjectFault(sandbox.Fault{Status: 500})
		e.sb.LionDesk().ClearFaults()
		e.do(t, ld(http.MethodGet, pathSources, "")).want(t, http.StatusOK)
	})
	t.Run("fub_faults_do_not_touch_liondesk", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, sandbox.Options{})
		e.sb.FUB().InjectFault(sandbox.Fault{Status: 500})
		e.do(t, ld(http.MethodGet, pathContacts, "")).want(t, http.StatusOK)
	})
}

func TestLionDesk_views(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	e.do(t, ld(http.MethodPost, pathSources, `{"name":"idx"}`)).want(t, http.StatusCreated)
	e.do(t, ld(http.MethodPost, pathContacts, `{"first_name":"Ada","last_name":"<Lovelace>","email":"ada@example.com","source_id":1}`)).want(t, http.StatusCreated)
	e.do(t, ld(http.MethodPost, pathContacts+"/1/notes", `{"content":"Asked about 12 Main St"}`)).want(t, http.StatusCreated)

	t.Run("html_page", func(t *testing.T) {
		t.Parallel()
		page := string(e.do(t, request{method: http.MethodGet, path: "/", auth: authNone}).want(t, http.StatusOK).body)
		for _, want := range []string{"LionDesk", "Ada &lt;Lovelace&gt;", "ada@example.com", "Asked about 12 Main St", "<td>idx</td>", "Follow Up Boss"} {
			if !strings.Contains(page, want) {
				t.Errorf("page lacks %q", want)
			}
		}
	})
	t.Run("state_json", func(t *testing.T) {
		t.Parallel()
		got := e.do(t, request{method: http.MethodGet, path: "/_sandbox/liondesk/state", auth: authNone}).want(t, http.StatusOK)
		var st struct {
			Contacts []sandbox.LionDeskContact `json:"contacts"`
			Notes    []sandbox.LionDeskNote    `json:"notes"`
			Sources  []sandbox.LionDeskSource  `json:"sources"`
		}
		if err := json.Unmarshal(got.body, &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Contacts) != 1 || st.Contacts[0].Email != "ada@example.com" || len(st.Notes) != 1 || st.Notes[0].ContactID != 1 || len(st.Sources) != 1 {
			t.Fatalf("state %s", got.body)
		}
	})
	t.Run("empty_state_has_empty_lists", func(t *testing.T) {
		t.Parallel()
		fresh := newEnv(t, sandbox.Options{})
		got := fresh.do(t, request{method: http.MethodGet, path: "/_sandbox/liondesk/state", auth: authNone}).want(t, http.StatusOK)
		if string(got.body) != `{"contacts":[],"notes":[],"sources":[]}` {
			t.Fatalf("empty state %s", got.body)
		}
	})
}

func TestLionDesk_reset(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		reset func(t *testing.T, e *env)
	}{
		{"method", func(_ *testing.T, e *env) { e.sb.LionDesk().Reset() }},
		{"over_http", func(t *testing.T, e *env) {
			e.do(t, request{method: http.MethodPost, path: "/_sandbox/liondesk/reset"}).want(t, http.StatusNoContent)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{LionDesk: sandbox.LionDeskOptions{Limit: 4}})
			e.do(t, ld(http.MethodPost, pathSources, `{"name":"idx"}`)).want(t, http.StatusCreated)
			e.do(t, ld(http.MethodPost, pathContacts, `{"first_name":"A"}`)).want(t, http.StatusCreated)
			e.do(t, ld(http.MethodPost, pathContacts+"/1/notes", `{"content":"x"}`)).want(t, http.StatusCreated)
			e.sb.LionDesk().InjectFault(sandbox.Fault{Status: 500})
			tt.reset(t, e)
			l := e.sb.LionDesk()
			if len(l.Contacts()) != 0 || len(l.Notes()) != 0 || len(l.Sources()) != 0 {
				t.Fatal("state survived the reset")
			}
			for range 3 { // no fault, a fresh window
				e.do(t, ld(http.MethodGet, pathContacts, "")).want(t, http.StatusOK)
			}
			if c := e.do(t, ld(http.MethodPost, pathContacts, `{"first_name":"B"}`)).want(t, http.StatusCreated).contact(t); c.ID != 1 {
				t.Fatalf("first id after reset = %d, want 1", c.ID)
			}
		})
	}
}
