package sandbox_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

func TestFUB_usageCountsWhatTheQuotaCounts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{FUB: sandbox.FUBOptions{GlobalLimit: 2}})
	for range 3 {
		e.do(t, request{method: http.MethodGet, path: "/fub/v1/people"})
	}
	// POST /v1/events is unlimited, and not counted.
	e.do(t, request{method: http.MethodPost, path: "/fub/v1/events", body: `{"source":"idx","type":"Registration","person":{"emails":[{"value":"a@example.com"}]}}`}).want(t, http.StatusCreated)
	if u := e.sb.FUB().Usage(); u.Counted != 2 || u.Refused != 1 {
		t.Fatalf("usage = %+v, want 2 counted and 1 refused", u)
	}
	e.sb.FUB().Reset()
	if u := e.sb.FUB().Usage(); u != (sandbox.FUBUsage{}) {
		t.Fatalf("usage after reset = %+v", u)
	}
}

func TestKit_onCallReportsEachCallWithItsQueryBodyAndTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{FUB: sandbox.FUBOptions{GlobalLimit: 1}})
	var (
		mu    sync.Mutex
		calls []sandbox.Call
	)
	e.sb.FUB().OnCall(func(c sandbox.Call) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, c)
	})
	body := `{"source":"idx","type":"Registration","person":{"emails":[{"value":"a@example.com"}]}}`
	e.do(t, request{method: http.MethodGet, path: "/fub/v1/people?email=a%40example.com"}).want(t, http.StatusOK)
	e.do(t, request{method: http.MethodGet, path: "/fub/v1/people"}).want(t, http.StatusTooManyRequests) // refused: not reported
	e.do(t, request{method: http.MethodPost, path: "/fub/v1/events", body: body}).want(t, http.StatusCreated)
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 {
		t.Fatalf("%d calls reported, want 2 (the 429 never reached the API): %+v", len(calls), calls)
	}
	search, post := calls[0], calls[1]
	if search.Method != http.MethodGet || search.Path != "/v1/people" || search.Query.Get("email") != "a@example.com" || !search.Counted {
		t.Fatalf("search = %+v", search)
	}
	if post.Path != "/v1/events" || string(post.Body) != body || post.Counted || post.End.Before(post.Start) {
		t.Fatalf("event = %+v", post)
	}
	if len(e.sb.FUB().People()) != 1 {
		t.Fatal("the handler did not get the body the observer read")
	}
}

func TestFUB_checkDuplicateSaysWhetherAndHowAPersonMatches(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{FUB: sandbox.FUBOptions{AssignmentDelay: time.Hour}})
	e.do(t, request{method: http.MethodPost, path: "/fub/v1/events",
		body: `{"source":"idx","type":"Registration","person":{"emails":[{"value":"Ada@Example.com"}],"phones":[{"value":"(415) 555-0134"}]}}`}).want(t, http.StatusCreated)
	check := func(query string) (found bool, by string) {
		t.Helper()
		var v struct {
			Found     bool   `json:"found"`
			MatchedBy string `json:"matchedBy"`
		}
		r := e.do(t, request{method: http.MethodGet, path: "/fub/v1/people/checkDuplicate?" + query}).want(t, http.StatusOK)
		if err := json.Unmarshal(r.body, &v); err != nil {
			t.Fatal(err)
		}
		return v.Found, v.MatchedBy
	}
	// The person is still hidden by the assignment delay, and found.
	for query, want := range map[string]string{
		"email=ada%40example.com":                      "email",
		"phone=%2B14155550134":                         "phone",
		"email=other%40example.com&phone=4155550134":   "phone",
		"email=ada%40example.com&phone=%2B14155550000": "email",
		"email=other%40example.com":                    "",
	} {
		if found, by := check(query); found != (want != "") || by != want {
			t.Errorf("%s: found %v by %q, want by %q", query, found, by, want)
		}
	}
	e.do(t, request{method: http.MethodGet, path: "/fub/v1/people/checkDuplicate"}).want(t, http.StatusBadRequest)
	if u := e.sb.FUB().Usage(); u.Counted != 6 {
		t.Fatalf("usage = %+v: every check counts against the quota", u)
	}
}
