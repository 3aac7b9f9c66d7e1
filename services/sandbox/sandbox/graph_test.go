package sandbox_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// fixtureLeadID is the id of the lead in testdata/graph/add_lead.request.json.
const fixtureLeadID = "1234567890123456"

func readGraphFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "graph", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// matchGraph compares got with a testdata/graph fixture, as matchGolden does for FUB.
func matchGraph(t *testing.T, name string, got []byte) {
	t.Helper()
	var want, have any
	if err := json.Unmarshal(readGraphFixture(t, name), &want); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	if err := json.Unmarshal(got, &have); err != nil {
		t.Fatalf("response is not JSON (%v): %s", err, got)
	}
	if diff := golden("$", want, have); diff != "" {
		t.Fatalf("response does not match %s: %s\ngot: %s", name, diff, got)
	}
}

// graphGet is a Graph read of path (after /graph) with token as ?access_token.
func graphGet(path, token string) request {
	if token != "" {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + "access_token=" + url.QueryEscape(token)
	}
	return request{method: http.MethodGet, path: "/graph" + path, auth: authNone}
}

// addFixtureLead adds testdata/graph/add_lead.request.json through the knob.
func addFixtureLead(t *testing.T, e *env) {
	t.Helper()
	e.do(t, request{method: http.MethodPost, path: "/_sandbox/graph/leads", body: string(readGraphFixture(t, "add_lead.request.json")), auth: authNone}).
		want(t, http.StatusCreated)
}

type graphErr struct {
	Error struct {
		Message     string `json:"message"`
		Type        string `json:"type"`
		Code        int    `json:"code"`
		Subcode     int    `json:"error_subcode"`
		IsTransient bool   `json:"is_transient"`
		FBTraceID   string `json:"fbtrace_id"`
	} `json:"error"`
}

func (r response) graphError(t *testing.T) graphErr {
	t.Helper()
	var e graphErr
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Type == "" || e.Error.FBTraceID == "" {
		t.Fatalf("body %s is not Graph's error envelope (%v)", r.body, err)
	}
	return e
}

func TestGraph_readLeadMatchesGolden(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	addFixtureLead(t, e)

	tests := map[string]struct {
		path, fixture string
	}{
		"default_fields":   {"/v19.0/" + fixtureLeadID, "lead.response.json"},
		"selected_fields":  {"/v19.0/" + fixtureLeadID + "?fields=id,created_time,ad_id,form_id,campaign_id,field_data", "lead_fields.response.json"},
		"without_version":  {"/" + fixtureLeadID, "lead.response.json"},
		"other_version":    {"/v21.0/" + fixtureLeadID, "lead.response.json"},
		"fields_with_rank": {"/v19.0/" + fixtureLeadID + "?fields=field_data,campaign_id,form_id,ad_id,created_time", "lead_fields.response.json"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := e.do(t, graphGet(tc.path, sandbox.DefaultGraphAccessToken)).want(t, http.StatusOK)
			matchGraph(t, tc.fixture, r.body)
		})
	}
}

func TestGraph_errors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Graph: sandbox.GraphOptions{AccessTokens: []string{"tok-a", "tok-b"}, AppSecret: "s3cret"}})
	addFixtureLead(t, e)
	e.sb.Graph().ExpireAccessToken("tok-b")
	proof := func(secret, token string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte(token))
		return hex.EncodeToString(m.Sum(nil))
	}
	lead := "/v19.0/" + fixtureLeadID

	tests := map[string]struct {
		req             request
		status          int
		typ             string
		code, subcode   int
		fixture         string
		wantWWWAuthKind string
	}{
		"unknown_lead":         {req: graphGet("/v19.0/999", "tok-a"), status: 400, typ: "GraphMethodException", code: 100, subcode: 33, fixture: "lead_not_found.response.json"},
		"missing_token":        {req: graphGet(lead, ""), status: 400, typ: "OAuthException", code: 104, fixture: "missing_token.response.json", wantWWWAuthKind: "invalid_token"},
		"invalid_token":        {req: graphGet(lead, "nope"), status: 400, typ: "OAuthException", code: 190, fixture: "invalid_token.response.json", wantWWWAuthKind: "invalid_token"},
		"default_token_unset":  {req: graphGet(lead, sandbox.DefaultGraphAccessToken), status: 400, typ: "OAuthException", code: 190},
		"expired_token":        {req: graphGet(lead, "tok-b"), status: 400, typ: "OAuthException", code: 190, subcode: 463},
		"bad_appsecret_proof":  {req: graphGet(lead+"?appsecret_proof="+proof("wrong", "tok-a"), "tok-a"), status: 400, typ: "GraphMethodException", code: 100},
		"good_appsecret_proof": {req: graphGet(lead+"?appsecret_proof="+proof("s3cret", "tok-a"), "tok-a"), status: 200},
		"bearer_header": {req: request{method: http.MethodGet, path: "/graph" + lead, auth: authNone,
			header: map[string]string{"Authorization": "Bearer tok-a"}}, status: 200},
		"unknown_field":   {req: graphGet(lead+"?fields=id,email", "tok-a"), status: 400, typ: "GraphMethodException", code: 100},
		"bad_version":     {req: graphGet("/19/"+fixtureLeadID, "tok-a"), status: 400, typ: "OAuthException", code: 2500},
		"not_emulated":    {req: request{method: http.MethodPost, path: "/graph" + lead + "?access_token=tok-a", auth: authNone}, status: 400, typ: "GraphMethodException", code: 100},
		"nested_path":     {req: graphGet("/v19.0/"+fixtureLeadID+"/leads", "tok-a"), status: 400, typ: "GraphMethodException", code: 100},
		"token_in_header": {req: request{method: http.MethodGet, path: "/graph" + lead, auth: authNone, header: map[string]string{"Authorization": "OAuth tok-a"}}, status: 200},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := e.do(t, tc.req).want(t, tc.status)
			if tc.status == http.StatusOK {
				if !strings.Contains(string(r.body), `"field_data"`) {
					t.Fatalf("body %s is not the lead", r.body)
				}
				return
			}
			ge := r.graphError(t)
			if ge.Error.Type != tc.typ || ge.Error.Code != tc.code || ge.Error.Subcode != tc.subcode {
				t.Fatalf("error = %+v, want type %s code %d subcode %d", ge.Error, tc.typ, tc.code, tc.subcode)
			}
			if tc.fixture != "" {
				matchGraph(t, tc.fixture, r.body)
			}
			if www := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(www, `OAuth "Facebook Platform"`) ||
				(tc.wantWWWAuthKind != "" && !strings.Contains(www, tc.wantWWWAuthKind)) {
				t.Fatalf("WWW-Authenticate = %q", www)
			}
		})
	}
}

func TestGraph_faults(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	addFixtureLead(t, e)
	lead := "/v19.0/" + fixtureLeadID
	g := e.sb.Graph()

	g.InjectFault(sandbox.Fault{Count: 2})
	for range 2 {
		matchGraph(t, "server_error.response.json", e.do(t, graphGet(lead, sandbox.DefaultGraphAccessToken)).want(t, http.StatusInternalServerError).body)
	}
	e.do(t, graphGet(lead, sandbox.DefaultGraphAccessToken)).want(t, http.StatusOK)

	// A fault does not apply before authentication.
	g.InjectFault(sandbox.Fault{Status: http.StatusTooManyRequests, RetryAfter: 3})
	e.do(t, graphGet(lead, "")).want(t, http.StatusBadRequest)
	r := e.do(t, graphGet(lead, sandbox.DefaultGraphAccessToken)).want(t, http.StatusTooManyRequests)
	if ge := r.graphError(t); ge.Error.Code != 4 || !ge.Error.IsTransient || r.header.Get("Retry-After") != "3" {
		t.Fatalf("429 = %+v, Retry-After %q", ge.Error, r.header.Get("Retry-After"))
	}

	// Over HTTP, matching the path after /graph; a custom body is answered as is.
	e.do(t, request{method: http.MethodPost, path: "/_sandbox/graph/faults", auth: authNone,
		body: `{"path":"/v19.0/42","status":400,"body":"{\"error\":{\"message\":\"(#17) User request limit reached\",\"type\":\"OAuthException\",\"code\":17,\"is_transient\":true,\"fbtrace_id\":\"x\"}}"}`}).
		want(t, http.StatusNoContent)
	e.do(t, graphGet(lead, sandbox.DefaultGraphAccessToken)).want(t, http.StatusOK)
	if ge := e.do(t, graphGet("/v19.0/42", sandbox.DefaultGraphAccessToken)).want(t, http.StatusBadRequest).graphError(t); ge.Error.Code != 17 {
		t.Fatalf("custom fault = %+v", ge.Error)
	}
	g.InjectFault(sandbox.Fault{})
	e.do(t, request{method: http.MethodDelete, path: "/_sandbox/graph/faults", auth: authNone}).want(t, http.StatusNoContent)
	e.do(t, graphGet(lead, sandbox.DefaultGraphAccessToken)).want(t, http.StatusOK)
}

func TestGraph_latencyMeetsClientTimeout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	addFixtureLead(t, e)
	e.sb.Graph().SetLatency(time.Minute)
	client := &http.Client{Timeout: 50 * time.Millisecond}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/graph/v19.0/"+fixtureLeadID+"?access_token="+sandbox.DefaultGraphAccessToken, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("status %d, want a timeout", resp.StatusCode)
	}
	e.sb.Graph().SetLatency(0)
	e.do(t, graphGet("/v19.0/"+fixtureLeadID, sandbox.DefaultGraphAccessToken)).want(t, http.StatusOK)
}

func TestGraph_notificationMatchesGoldenAndSignature(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	addFixtureLead(t, e)
	g := e.sb.Graph()

	body := g.Notification(fixtureLeadID)
	matchGraph(t, "leadgen_notification.json", body)
	if want := readGraphFixture(t, "leadgen_notification.body.json"); string(body) != string(want) {
		t.Fatalf("body = %s, want %s", body, want)
	}
	want := strings.TrimSpace(string(readGraphFixture(t, "leadgen_notification.signature.txt")))
	if got := sandbox.SignFacebook(sandbox.DefaultGraphAppSecret, body); got != want {
		t.Fatalf("SignFacebook = %s, want %s (computed independently)", got, want)
	}

	// Over HTTP, for a demo to post by hand.
	r := e.do(t, request{method: http.MethodGet, path: "/_sandbox/graph/notification?leadgen_id=" + fixtureLeadID, auth: authNone}).want(t, http.StatusOK)
	if string(r.body) != string(body) || r.header.Get("X-Hub-Signature-256") != want {
		t.Fatalf("notification knob = %s %q", r.body, r.header.Get("X-Hub-Signature-256"))
	}

	// Several leads: one entry per Page; an unknown id still gets a change on the default Page.
	other, err := g.AddLead(sandbox.GraphLead{FormID: "77", Fields: []sandbox.GraphField{{Name: "email", Values: []string{"a@example.com"}}}})
	if err != nil {
		t.Fatal(err)
	}
	var n struct {
		Object string `json:"object"`
		Entry  []struct {
			ID      string `json:"id"`
			Changes []struct {
				Field string         `json:"field"`
				Value map[string]any `json:"value"`
			} `json:"changes"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(g.Notification(fixtureLeadID, other.ID, "555"), &n); err != nil {
		t.Fatal(err)
	}
	if n.Object != "page" || len(n.Entry) != 2 || n.Entry[0].ID != "1122334455667788" || n.Entry[1].ID != sandbox.DefaultGraphPageID ||
		len(n.Entry[1].Changes) != 2 || n.Entry[1].Changes[1].Value["leadgen_id"] != "555" {
		t.Fatalf("notification = %+v", n)
	}
	if _, ok := n.Entry[1].Changes[0].Value["ad_id"]; ok {
		t.Fatalf("an organic lead's change has ad_id: %v", n.Entry[1].Changes[0].Value)
	}
}

// callback is a lead-source receiver: it answers the queued statuses in turn (then 200) and
// records what it got.
type callback struct {
	srv *httptest.Server

	mu       sync.Mutex
	statuses []int
	got      []delivered
	arrived  chan struct{}
}

type delivered struct {
	body   []byte
	header http.Header
}

func newCallback(t *testing.T, statuses ...int) *callback {
	t.Helper()
	c := &callback{statuses: statuses, arrived: make(chan struct{}, 100)}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		c.got = append(c.got, delivered{b, r.Header.Clone()})
		status := http.StatusOK
		if len(c.statuses) > 0 {
			status, c.statuses = c.statuses[0], c.statuses[1:]
		}
		c.mu.Unlock()
		w.WriteHeader(status)
		c.arrived <- struct{}{}
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *callback) wait(t *testing.T, n int) []delivered {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for range n {
		select {
		case <-c.arrived:
		case <-deadline:
			t.Fatalf("timed out waiting for %d deliveries", n)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]delivered(nil), c.got...)
}

// waitDelivery waits until the last delivery is no longer pending.
func waitDelivery(t *testing.T, g *sandbox.Graph) sandbox.GraphDelivery {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ds := g.Deliveries()
		if len(ds) > 0 && ds[len(ds)-1].State != sandbox.GraphDeliveryPending {
			return ds[len(ds)-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries still pending: %+v", ds)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGraph_submitDeliversSignedNotificationWithRetries(t *testing.T) {
	t.Parallel()
	cb := newCallback(t, http.StatusInternalServerError, http.StatusServiceUnavailable)
	e := newEnv(t, sandbox.Options{Graph: sandbox.GraphOptions{
		AppSecret: "app-secret", CallbackURL: cb.srv.URL + "/webhooks/facebook",
		Delivery: sandbox.DeliveryOptions{Backoff: time.Millisecond},
	}})
	g := e.sb.Graph()
	t.Cleanup(g.Close)

	l, err := g.Submit(sandbox.GraphLead{Fields: []sandbox.GraphField{{Name: "full_name", Values: []string{"Jane Buyer"}}}})
	if err != nil {
		t.Fatal(err)
	}
	got := cb.wait(t, 3)
	d := waitDelivery(t, g)
	if d.State != sandbox.GraphDeliveryDelivered || d.Attempts != 3 || d.LastStatus != 200 || d.LeadIDs[0] != l.ID {
		t.Fatalf("delivery = %+v", d)
	}
	for _, a := range got {
		if string(a.body) != d.Body {
			t.Fatalf("attempts posted different bodies: %s vs %s", a.body, d.Body)
		}
		m := hmac.New(sha256.New, []byte("app-secret"))
		m.Write(a.body)
		if sig := a.header.Get("X-Hub-Signature-256"); sig != "sha256="+hex.EncodeToString(m.Sum(nil)) || sig != d.Signature {
			t.Fatalf("X-Hub-Signature-256 = %q", sig)
		}
		if !strings.HasPrefix(a.header.Get("X-Hub-Signature"), "sha1=") || a.header.Get("Content-Type") != "application/json" {
			t.Fatalf("headers = %v", a.header)
		}
	}
	if !strings.Contains(d.Body, `"leadgen_id":"`+l.ID+`"`) {
		t.Fatalf("body %s does not carry the lead", d.Body)
	}
}

func TestGraph_deliveryGivesUpAfterRetries(t *testing.T) {
	t.Parallel()
	cb := newCallback(t, 500, 500, 500)
	e := newEnv(t, sandbox.Options{Graph: sandbox.GraphOptions{
		CallbackURL: cb.srv.URL, Delivery: sandbox.DeliveryOptions{Retries: 2, Backoff: time.Millisecond},
	}})
	g := e.sb.Graph()
	t.Cleanup(g.Close)
	if _, err := g.Submit(sandbox.GraphLead{}); err != nil {
		t.Fatal(err)
	}
	cb.wait(t, 3)
	if d := waitDelivery(t, g); d.State != sandbox.GraphDeliveryFailed || d.Attempts != 3 || d.LastStatus != 500 {
		t.Fatalf("delivery = %+v", d)
	}
}

func TestGraph_pageSubmitsTestLead(t *testing.T) {
	t.Parallel()
	cb := newCallback(t)
	e := newEnv(t, sandbox.Options{})
	g := e.sb.Graph()
	t.Cleanup(g.Close)

	page := e.do(t, request{method: http.MethodGet, path: "/", auth: authNone}).want(t, http.StatusOK)
	for _, s := range []string{"Facebook Lead Ads", "Submit a test lead", `action="/_sandbox/graph/test-lead"`, "no callback URL is set"} {
		if !strings.Contains(string(page.body), s) {
			t.Fatalf("page lacks %q", s)
		}
	}
	e.do(t, request{method: http.MethodPut, path: "/_sandbox/graph/callback", body: `{"url":"ftp://x"}`, auth: authNone}).want(t, http.StatusBadRequest)
	e.do(t, request{method: http.MethodPut, path: "/_sandbox/graph/callback", body: `{"url":"` + cb.srv.URL + `"}`, auth: authNone}).want(t, http.StatusNoContent)

	form := url.Values{"full_name": {"Grace Hopper"}, "email": {"grace@example.com"}, "phone_number": {"+14155550100"}}
	r := e.do(t, request{method: http.MethodPost, path: "/_sandbox/graph/test-lead", body: form.Encode(), auth: authNone,
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
	r.want(t, http.StatusOK) // the client follows the 303 back to the page
	got := cb.wait(t, 1)
	leads := g.Leads()
	if len(leads) != 1 || leads[0].FormID != sandbox.DefaultGraphFormID || leads[0].Field("email")[0] != "grace@example.com" ||
		leads[0].Field("full_name")[0] != "Grace Hopper" || !strings.Contains(string(got[0].body), leads[0].ID) {
		t.Fatalf("leads = %+v, delivered %s", leads, got[0].body)
	}
	// The lead reads back over the API.
	rr := e.do(t, graphGet("/v19.0/"+leads[0].ID, sandbox.DefaultGraphAccessToken)).want(t, http.StatusOK)
	if !strings.Contains(string(rr.body), `"values":["+14155550100"]`) {
		t.Fatalf("read = %s", rr.body)
	}
	page = e.do(t, request{method: http.MethodGet, path: "/", auth: authNone}).want(t, http.StatusOK)
	if !strings.Contains(string(page.body), "grace@example.com") {
		t.Fatalf("page lacks the lead")
	}
}

func TestGraph_knobsAndState(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	g := e.sb.Graph()

	first, err := g.AddLead(sandbox.GraphLead{})
	if err != nil {
		t.Fatal(err)
	}
	if first.ID == "" || first.PageID != sandbox.DefaultGraphPageID || !first.CreatedTime.Equal(e.clock.Now()) {
		t.Fatalf("defaults = %+v", first)
	}
	if _, err := g.AddLead(sandbox.GraphLead{ID: first.ID}); err == nil {
		t.Fatal("a duplicate id was accepted")
	}
	for _, bad := range []sandbox.GraphLead{{ID: "1/2"}, {Fields: []sandbox.GraphField{{Name: " "}}}} {
		if _, err := g.AddLead(bad); err == nil {
			t.Fatalf("AddLead(%+v) was accepted", bad)
		}
	}
	e.do(t, request{method: http.MethodPost, path: "/_sandbox/graph/leads", body: `{"id":`, auth: authNone}).want(t, http.StatusBadRequest)

	var state struct {
		Leads       []sandbox.GraphLead     `json:"leads"`
		Deliveries  []sandbox.GraphDelivery `json:"deliveries"`
		CallbackURL string                  `json:"callbackUrl"`
	}
	if err := json.Unmarshal(e.do(t, request{method: http.MethodGet, path: "/_sandbox/graph/state", auth: authNone}).want(t, 200).body, &state); err != nil {
		t.Fatal(err)
	}
	if len(state.Leads) != 1 || state.Leads[0].ID != first.ID || state.Deliveries == nil {
		t.Fatalf("state = %+v", state)
	}

	// Submit without a callback URL adds the lead and delivers nothing.
	if _, err := g.Submit(sandbox.GraphLead{}); err != nil || len(g.Deliveries()) != 0 {
		t.Fatalf("submit without callback: %v, %+v", err, g.Deliveries())
	}

	g.ExpireAccessToken(sandbox.DefaultGraphAccessToken)
	e.do(t, request{method: http.MethodPost, path: "/_sandbox/graph/reset", auth: authNone}).want(t, http.StatusNoContent)
	if len(g.Leads()) != 0 {
		t.Fatalf("leads after reset: %+v", g.Leads())
	}
	again, _ := g.AddLead(sandbox.GraphLead{})
	if again.ID != first.ID {
		t.Fatalf("ids did not restart: %s then %s", first.ID, again.ID)
	}
	e.do(t, graphGet("/v19.0/"+again.ID, sandbox.DefaultGraphAccessToken)).want(t, http.StatusOK)
}

func TestGraph_closeStopsDeliveries(t *testing.T) {
	t.Parallel()
	cb := newCallback(t, 500, 500, 500, 500, 500, 500)
	e := newEnv(t, sandbox.Options{Graph: sandbox.GraphOptions{CallbackURL: cb.srv.URL, Delivery: sandbox.DeliveryOptions{Backoff: time.Hour}}})
	g := e.sb.Graph()
	if _, err := g.Submit(sandbox.GraphLead{}); err != nil {
		t.Fatal(err)
	}
	cb.wait(t, 1)
	g.Close()
	if d := g.Deliveries()[0]; d.State != sandbox.GraphDeliveryFailed || d.Attempts != 1 {
		t.Fatalf("delivery after close = %+v", d)
	}
	if _, err := g.Submit(sandbox.GraphLead{}); err != nil {
		t.Fatal(err)
	}
	if d := g.Deliveries()[1]; d.State != sandbox.GraphDeliveryFailed || d.Attempts != 0 {
		t.Fatalf("delivery submitted after close = %+v", d)
	}
}
