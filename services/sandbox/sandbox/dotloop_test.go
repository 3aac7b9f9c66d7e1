package sandbox_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// dl sends one Dotloop API call with token (none when empty).
func (e *env) dl(t *testing.T, method, path, token, body string) response {
	t.Helper()
	return e.do(t, request{method: method, path: path, body: body, auth: authNone, header: map[string]string{"Authorization": "Bearer " + token}})
}

// oauthToken posts a grant to Dotloop's token endpoint with the default client, in the query.
func (e *env) oauthToken(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	return e.tokenGrant(t, "/dotloop/oauth/token?"+form.Encode(), nil, sandbox.DefaultDotloopClientID, sandbox.DefaultDotloopClientSecret)
}

func TestDotloop_loopItMatchesTheReference(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	tok := e.sb.Dotloop().IssueTokens().AccessToken
	req, err := os.ReadFile("testdata/dotloop/loop_it_request.json")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/dotloop/loop_it_response.json")
	if err != nil {
		t.Fatal(err)
	}
	got := e.dl(t, http.MethodPost, "/dotloop/public/v2/loop-it?profile_id=4711", tok, string(req)).want(t, http.StatusCreated)
	var a, b map[string]any
	if err := json.Unmarshal(got.body, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(golden, &b); err != nil {
		t.Fatal(err)
	}
	if !jsonEqual(a, b) {
		t.Fatalf("Loop-It answered\n%s\nwant\n%s", got.body, golden)
	}
	loops := e.sb.Dotloop().Loops()
	if len(loops) != 1 || len(loops[0].Participants) != 2 || loops[0].Participants[0].Role != "BUYER" ||
		loops[0].Detail["Property Address"]["Street Name"] != "Waterview Dr" || loops[0].TemplateID != 1424 {
		t.Fatalf("loops = %+v", loops)
	}
	// The detail and the participants read back what Loop-It set.
	detail := e.dl(t, http.MethodGet, "/dotloop/public/v2/profile/4711/loop/34308/detail", tok, "").want(t, http.StatusOK)
	if !strings.Contains(string(detail.body), `"Postal Code":"94114"`) {
		t.Fatalf("detail = %s", detail.body)
	}
	e.dl(t, http.MethodGet, "/dotloop/public/v2/profile/4711/loop/34308/participant", tok, "").want(t, http.StatusOK)
	e.dl(t, http.MethodGet, "/dotloop/public/v2/profile/9999/loop/34308", tok, "").want(t, http.StatusNotFound)
}

// jsonEqual compares two decoded JSON values, ignoring the created and updated times.
func jsonEqual(a, b map[string]any) bool {
	da, db := a["data"].(map[string]any), b["data"].(map[string]any)
	for _, k := range []string{"created", "updated"} {
		if da[k] == nil || db[k] == nil {
			return false
		}
		delete(da, k)
		delete(db, k)
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestDotloop_oauthRotatesAndExpires(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	// The authorization-code flow: authorize redirects with a code and the state.
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"response_type": {"code"}, "client_id": {sandbox.DefaultDotloopClientID}, "redirect_uri": {"http://127.0.0.1:5555/cb"}, "state": {"s1"}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/dotloop/oauth/authorize?"+q.Encode(), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("state") != "s1" || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %s", resp.StatusCode, loc)
	}
	status, tok := e.oauthToken(t, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {"http://127.0.0.1:5555/cb"}})
	if status != http.StatusOK || tok["expires_in"].(float64) < 43000 {
		t.Fatalf("code grant: %d %v", status, tok)
	}
	access, refresh := tok["access_token"].(string), tok["refresh_token"].(string)
	e.dl(t, http.MethodGet, "/dotloop/public/v2/profile", access, "").want(t, http.StatusOK)

	// The knob expires the access token now.
	e.do(t, request{method: http.MethodPost, path: "/_sandbox/dotloop/tokens/expire", auth: authNone}).want(t, http.StatusNoContent)
	e.dl(t, http.MethodGet, "/dotloop/public/v2/profile", access, "").want(t, http.StatusUnauthorized)

	// A refresh rotates: the new pair works, the old refresh token is spent.
	status, next := e.oauthToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if status != http.StatusOK || next["refresh_token"] == refresh {
		t.Fatalf("refresh: %d %v", status, next)
	}
	e.dl(t, http.MethodGet, "/dotloop/public/v2/profile", next["access_token"].(string), "").want(t, http.StatusOK)
	status, again := e.oauthToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if status != http.StatusBadRequest || again["error"] != "invalid_grant" {
		t.Fatalf("second refresh with a spent token: %d %v", status, again)
	}
}

func TestDotloop_rateLimitHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Dotloop: sandbox.DotloopOptions{Limit: 2}})
	tok := e.sb.Dotloop().IssueTokens().AccessToken
	r := e.dl(t, http.MethodGet, "/dotloop/public/v2/profile", tok, "").want(t, http.StatusOK)
	if r.header.Get("X-RateLimit-Limit") != "2" || r.header.Get("X-RateLimit-Remaining") != "1" {
		t.Fatalf("headers %v", r.header)
	}
	e.dl(t, http.MethodGet, "/dotloop/public/v2/profile", tok, "").want(t, http.StatusOK)
	r = e.dl(t, http.MethodGet, "/dotloop/public/v2/profile", tok, "").want(t, http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" {
		t.Fatalf("429 without Retry-After: %v", r.header)
	}
	e.clock.Advance(time.Minute)
	e.dl(t, http.MethodGet, "/dotloop/public/v2/profile", tok, "").want(t, http.StatusOK)
}

func TestDotloop_soldSendsASignedLoopUpdated(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Dotloop: sandbox.DotloopOptions{Delivery: sandbox.DeliveryOptions{Backoff: 5 * time.Millisecond}}})
	var mu sync.Mutex
	var got []struct {
		body      []byte
		sig, ts   string
		userAgent string
	}
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, struct {
			body      []byte
			sig, ts   string
			userAgent string
		}{b, r.Header.Get("X-DOTLOOP-SIGNATURE"), r.Header.Get("X-DOTLOOP-TIMESTAMP"), r.Header.Get("User-Agent")})
		mu.Unlock()
	}))
	t.Cleanup(rc.Close)
	t.Cleanup(e.sb.Close)
	tok := e.sb.Dotloop().IssueTokens().AccessToken
	e.dl(t, http.MethodPost, "/dotloop/public/v2/subscription", tok,
		`{"url":"`+rc.URL+`/hook","eventTypes":["LOOP_UPDATED"],"signingKey":"k1","enabled":true,"externalId":"bf"}`).want(t, http.StatusCreated)
	e.dl(t, http.MethodPost, "/dotloop/public/v2/loop-it?profile_id=4711", tok, `{"name":"Ada","transactionType":"PURCHASE_OFFER","status":"PRE_OFFER"}`).want(t, http.StatusCreated)

	form := url.Values{"status": {"SOLD"}, "price": {"525000"}, "commission": {"15750"}, "close_date": {"2026-12-01"}}
	r := e.do(t, request{method: http.MethodPost, path: "/_sandbox/dotloop/loops/34308/status", auth: authNone,
		body: "", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
	r.want(t, http.StatusBadRequest) // no status
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/_sandbox/dotloop/loops/34308/status", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("status knob: %d", resp.StatusCode)
	}
	eventually(t, "one delivery", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 })
	mu.Lock()
	d := got[0]
	mu.Unlock()
	var ev sandbox.DotloopEvent
	if err := json.Unmarshal(d.body, &ev); err != nil {
		t.Fatal(err)
	}
	ts, _ := strconv.ParseInt(d.ts, 10, 64)
	if ev.EventType != "LOOP_UPDATED" || ev.Event.LoopID != 34308 || ev.Event.ProfileID != 4711 || ts != ev.Timestamp ||
		d.sig != sandbox.SignDotloop("k1", ts, d.body, false) || d.sig == sandbox.SignDotloop("k1", ts, d.body, true) {
		t.Fatalf("delivery %+v %s", d, d.body)
	}
	detail := e.dl(t, http.MethodGet, "/dotloop/public/v2/profile/4711/loop/34308/detail", tok, "").want(t, http.StatusOK)
	for _, want := range []string{`"Purchase/Sale Price":"$525,000.00"`, `"Sale Commission Total":"$15,750.00"`, `"Closing Date":"2026-12-01"`} {
		if !strings.Contains(string(detail.body), want) {
			t.Fatalf("detail %s lacks %s", detail.body, want)
		}
	}
	st := e.do(t, request{method: http.MethodGet, path: "/_sandbox/dotloop/state", auth: authNone}).want(t, http.StatusOK)
	if !strings.Contains(string(st.body), `"status":"SOLD"`) || strings.Contains(string(st.body), "k1") {
		t.Fatalf("state %s", st.body)
	}
}

// TestDotloop_pageButtonsMoveALoop: the page shows each loop with its
// buttons, and a button's form moves the loop and returns to the page.
func TestDotloop_pageButtonsMoveALoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	t.Cleanup(e.sb.Close)
	tok := e.sb.Dotloop().IssueTokens().AccessToken
	e.dl(t, http.MethodPost, "/dotloop/public/v2/loop-it", tok, `{"name":"Ada","transactionType":"LISTING_FOR_SALE","status":"PRE_LISTING"}`).want(t, http.StatusCreated)
	page := e.do(t, request{method: http.MethodGet, path: "/", auth: authNone}).want(t, http.StatusOK)
	for _, want := range []string{"/_sandbox/dotloop/loops/34308/status", "Under contract", "Sold ($525,000, $15,750 commission)"} {
		if !strings.Contains(string(page.body), want) {
			t.Fatalf("page lacks %q", want)
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/_sandbox/dotloop/loops/34308/status", strings.NewReader("status=UNDER_CONTRACT"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || e.sb.Dotloop().Loops()[0].Status != sandbox.DotloopUnderContract {
		t.Fatalf("button: %d, loop %+v", resp.StatusCode, e.sb.Dotloop().Loops()[0])
	}
}
