package sandbox_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// acme is a made-up vendor, to show what a new one takes: its state, its handlers, and a kit
// told its auth rule, its error shape, its rate-limit headers and its webhook signature.
// Everything else (the mount, the gate, faults, state view, reset, page, webhook retries) is
// the kit's.
type acme struct {
	*sandbox.Kit

	mu      sync.Mutex
	widgets []string
}

const acmeToken, acmeSecret = "acme-token", "acme-webhook-secret"

func newAcme(now func() time.Time) *acme {
	a := &acme{}
	a.Kit = sandbox.NewKit(sandbox.KitOptions{
		Name: "acme", Title: "Acme (a test vendor)", Now: now,
		Auth: func(w http.ResponseWriter, r *http.Request) (string, bool) {
			if t := sandbox.BearerToken(r); t == acmeToken || t == "second-token" {
				return t, true
			}
			a.Unauthorized(w, `Bearer realm="acme"`, "no such token")
			return "", false
		},
		ErrorBody: func(status int, msg string) any { return acmeError{Status: status, Error: msg} },
		RateLimit: &sandbox.RateLimit{Limit: 3, Headers: sandbox.RateHeaders{Limit: "Acme-Quota", Remaining: "Acme-Quota-Left", Window: "Acme-Quota-Seconds"}},
		Webhooks:  sandbox.WebhookOptions{SignatureHeader: "Acme-Signature", Sign: acmeSign, Delivery: sandbox.DeliveryOptions{Backoff: time.Millisecond}},
		State:     func() any { return map[string][]string{"widgets": a.list()} },
		Tables: func() []sandbox.PageTable {
			table := sandbox.PageTable{Title: "Widgets", Columns: []string{"name"}}
			for _, w := range a.list() {
				table.Rows = append(table.Rows, []string{w})
			}
			return []sandbox.PageTable{table}
		},
		Reset: func() { a.mu.Lock(); a.widgets = nil; a.mu.Unlock() },
	})
	a.HandleFunc("POST /widgets", func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.widgets = append(a.widgets, r.URL.Query().Get("name"))
		a.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	})
	return a
}

func (a *acme) list() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.widgets)
}

type acmeError struct {
	Status int    `json:"status"`
	Error  string `json:"error"`
}

func acmeSign(body []byte) string {
	m := hmac.New(sha256.New, []byte(acmeSecret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// newAcmeEnv serves acme beside the built-in vendors, on one clock.
func newAcmeEnv(t *testing.T) (*env, *acme) {
	t.Helper()
	c := newClock()
	a := newAcme(c.Now)
	sb := sandbox.New(sandbox.Options{Now: c.Now, Vendors: []*sandbox.Kit{a.Kit}})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close)
	return &env{sb: sb, srv: srv, clock: c}, a
}

func acmeCall(token, method, path string) request {
	return request{method: method, path: "/acme" + path, auth: authNone, header: map[string]string{"Authorization": "Bearer " + token}}
}

func (r response) acmeError(t *testing.T) acmeError {
	t.Helper()
	var e acmeError
	if err := json.Unmarshal(r.body, &e); err != nil || e.Status != r.status || e.Error == "" {
		t.Fatalf("body %s is not acme's {\"status\":%d,\"error\":...} (%v)", r.body, r.status, err)
	}
	return e
}

// quota returns acme's rate-limit headers, and fails if the default X-RateLimit-* ones are sent.
func (r response) quota(t *testing.T) string {
	t.Helper()
	if r.header.Get("X-RateLimit-Limit") != "" || r.header.Get("X-RateLimit-Remaining") != "" {
		t.Fatalf("headers %v: the kit sent the default rate-limit headers, not the vendor's", r.header)
	}
	return r.header.Get("Acme-Quota-Left") + "/" + r.header.Get("Acme-Quota") + " per " + r.header.Get("Acme-Quota-Seconds") + "s"
}

func TestKit_auth(t *testing.T) {
	t.Parallel()
	e, a := newAcmeEnv(t)
	for _, token := range []string{"", "wrong", strings.ToUpper(acmeToken)} {
		got := e.do(t, acmeCall(token, http.MethodPost, "/widgets?name=x")).want(t, http.StatusUnauthorized)
		if got.acmeError(t).Error != "no such token" || got.header.Get("WWW-Authenticate") != `Bearer realm="acme"` || got.header.Get("Acme-Quota") != "" {
			t.Fatalf("401 %s %v, want acme's refusal with its challenge and no quota headers", got.body, got.header)
		}
	}
	if len(a.list()) != 0 {
		t.Fatalf("refused calls made widgets %v", a.list())
	}
	e.do(t, acmeCall(acmeToken, http.MethodPost, "/widgets?name=x")).want(t, http.StatusCreated)
	// A path acme does not emulate is behind the gate too, and answers in acme's shape.
	e.do(t, acmeCall("", http.MethodGet, "/gadgets")).want(t, http.StatusUnauthorized)
	if got := e.do(t, acmeCall(acmeToken, http.MethodGet, "/gadgets")).want(t, http.StatusNotFound); !strings.Contains(got.acmeError(t).Error, "GET /gadgets is not emulated") {
		t.Fatalf("404 body %s", got.body)
	}
}

func TestKit_rateLimitWithTheVendorsHeaders(t *testing.T) {
	t.Parallel()
	e, a := newAcmeEnv(t)
	for _, want := range []string{"2/3 per 10s", "1/3 per 10s", "0/3 per 10s"} {
		if got := e.do(t, acmeCall(acmeToken, http.MethodPost, "/widgets")).want(t, http.StatusCreated).quota(t); got != want {
			t.Fatalf("quota %s, want %s", got, want)
		}
		e.clock.Advance(2 * time.Second)
	}
	over := e.do(t, acmeCall(acmeToken, http.MethodPost, "/widgets")).want(t, http.StatusTooManyRequests)
	over.acmeError(t)
	// The first call leaves the window 10 s after it was made: 4 s from now.
	if over.header.Get("Retry-After") != "4" || over.quota(t) != "0/3 per 10s" {
		t.Fatalf("429 headers %v, want Retry-After 4 and the quota headers", over.header)
	}
	if n := len(a.list()); n != 3 {
		t.Fatalf("%d widgets, want 3: a refused call is not processed", n)
	}
	if u := a.Usage(); u != (sandbox.Usage{Counted: 3, Refused: 1}) {
		t.Fatalf("usage %+v", u)
	}
	e.do(t, acmeCall("second-token", http.MethodPost, "/widgets")).want(t, http.StatusCreated) // per account
	e.clock.Advance(4 * time.Second)
	e.do(t, acmeCall(acmeToken, http.MethodPost, "/widgets")).want(t, http.StatusCreated)
}

func TestKit_faults(t *testing.T) {
	t.Parallel()
	post := acmeCall(acmeToken, http.MethodPost, "/widgets")
	t.Run("status", func(t *testing.T) {
		t.Parallel()
		e, a := newAcmeEnv(t)
		a.InjectFault(sandbox.Fault{Method: http.MethodPost, Path: "/widgets", Status: http.StatusServiceUnavailable, Count: 2})
		e.do(t, acmeCall(acmeToken, http.MethodGet, "/gadgets")).want(t, http.StatusNotFound) // does not match
		for range 2 {
			got := e.do(t, post).want(t, http.StatusServiceUnavailable)
			if got.acmeError(t).Error != "sandbox: injected fault (503 Service Unavailable)" || got.quota(t) != "2/3 per 10s" {
				t.Fatalf("fault %s %v, want acme's body and the quota headers, not counted", got.body, got.header)
			}
		}
		e.do(t, post).want(t, http.StatusCreated)
		if n := len(a.list()); n != 1 {
			t.Fatalf("%d widgets, want 1: faulted calls are not processed", n)
		}
	})
	t.Run("too_many_requests_with_retry_after", func(t *testing.T) {
		t.Parallel()
		e, a := newAcmeEnv(t)
		a.InjectFault(sandbox.Fault{Status: http.StatusTooManyRequests, RetryAfter: 30})
		if got := e.do(t, post).want(t, http.StatusTooManyRequests); got.header.Get("Retry-After") != "30" || got.acmeError(t).Status != 429 {
			t.Fatalf("429 %s %v, want Retry-After 30", got.body, got.header)
		}
		e.do(t, post).want(t, http.StatusCreated)
	})
	t.Run("latency", func(t *testing.T) {
		t.Parallel()
		e, a := newAcmeEnv(t)
		a.InjectFault(sandbox.Fault{Latency: 150 * time.Millisecond})
		start := time.Now()
		e.do(t, post).want(t, http.StatusCreated) // delayed, then processed and counted
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Fatalf("answered after %v, want at least the fault's 150ms", d)
		}
		if n := len(a.list()); n != 1 {
			t.Fatalf("%d widgets after a latency fault, want 1", n)
		}
		// A client that gives up first gets nothing; the kit's latency works the same.
		a.SetLatency(time.Minute)
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/acme/widgets", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+acmeToken)
		if resp, err := (&http.Client{Timeout: 50 * time.Millisecond}).Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("status %d, want a client timeout", resp.StatusCode)
		}
		a.SetLatency(0)
		e.do(t, post).want(t, http.StatusCreated)
	})
	t.Run("token_expiry", func(t *testing.T) {
		t.Parallel()
		e, a := newAcmeEnv(t)
		a.InjectFault(sandbox.Fault{ExpireToken: true})
		for range 2 { // the faulted call, and every later one with that token
			got := e.do(t, post).want(t, http.StatusUnauthorized)
			if got.acmeError(t).Error == "" || got.header.Get("Acme-Quota") != "" {
				t.Fatalf("expired token: %s %v", got.body, got.header)
			}
		}
		if !a.TokenExpired(acmeToken) || a.TokenExpired("second-token") {
			t.Fatal("the fault expired the wrong token")
		}
		e.do(t, acmeCall("second-token", http.MethodPost, "/widgets")).want(t, http.StatusCreated)
		a.Reset()
		e.do(t, post).want(t, http.StatusCreated)
	})
	t.Run("over_http", func(t *testing.T) {
		t.Parallel()
		e, a := newAcmeEnv(t)
		knob := func(body string, want int) {
			t.Helper()
			e.do(t, request{method: http.MethodPost, path: "/_sandbox/acme/faults", body: body, auth: authNone}).want(t, want)
		}
		knob(`{"path":"/widgets","status":502}`, http.StatusNoContent)
		e.do(t, post).want(t, http.StatusBadGateway)
		knob(`{"latency":"100ms"}`, http.StatusNoContent)
		start := time.Now()
		e.do(t, post).want(t, http.StatusCreated)
		if d := time.Since(start); d < 100*time.Millisecond {
			t.Fatalf("answered after %v, want at least 100ms", d)
		}
		knob(`{"expireToken":true}`, http.StatusNoContent)
		e.do(t, post).want(t, http.StatusUnauthorized)
		knob(`{"status":42}`, http.StatusBadRequest)
		knob(`{"latency":"soon"}`, http.StatusBadRequest)
		knob(`{"latency":"-1s"}`, http.StatusBadRequest)
		knob(`{"status":500,"count":5}`, http.StatusNoContent)
		e.do(t, request{method: http.MethodDelete, path: "/_sandbox/acme/faults", auth: authNone}).want(t, http.StatusNoContent)
		e.do(t, acmeCall("second-token", http.MethodPost, "/widgets")).want(t, http.StatusCreated)
		e.do(t, request{method: http.MethodPost, path: "/_sandbox/acme/reset", auth: authNone}).want(t, http.StatusNoContent)
		if len(a.list()) != 0 || a.TokenExpired(acmeToken) {
			t.Fatal("the reset knob left state or an expired token")
		}
		e.do(t, post).want(t, http.StatusCreated)
	})
}

func TestKit_stateViewAndPage(t *testing.T) {
	t.Parallel()
	e, _ := newAcmeEnv(t)
	e.do(t, acmeCall(acmeToken, http.MethodPost, "/widgets?name=sprocket")).want(t, http.StatusCreated)
	got := e.do(t, request{method: http.MethodGet, path: "/_sandbox/acme/state", auth: authNone}).want(t, http.StatusOK)
	if string(got.body) != `{"widgets":["sprocket"]}` {
		t.Fatalf("state %s", got.body)
	}
	page := string(e.do(t, request{method: http.MethodGet, path: "/", auth: authNone}).want(t, http.StatusOK).body)
	for _, want := range []string{"<h2>Acme (a test vendor)</h2>", "GET /_sandbox/acme/state", "<td>sprocket</td>", "Follow Up Boss", "LionDesk"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The built-in vendors still answer beside it.
	e.do(t, ld(http.MethodGet, pathContacts, "")).want(t, http.StatusOK)
}

func TestKit_webhooksAreSignedRetriedAndStopAtClose(t *testing.T) {
	t.Parallel()
	_, a := newAcmeEnv(t)
	cb := newCallback(t, http.StatusInternalServerError)
	var mu sync.Mutex
	d := a.NewDelivery(cb.srv.URL, []byte(`{"widget":"sprocket"}`))
	a.Send(&d, &mu)
	got := cb.wait(t, 2)
	for _, x := range got {
		if x.header.Get("Acme-Signature") != acmeSign(x.body) || x.header.Get("Content-Type") != "application/json" || string(x.body) != `{"widget":"sprocket"}` {
			t.Fatalf("delivery %s %v", x.body, x.header)
		}
	}
	eventually(t, "the delivery recorded", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return d.State == sandbox.DeliveryDelivered
	})
	mu.Lock()
	if d.Attempts != 2 || d.LastStatus != 200 || d.Signature != acmeSign([]byte(d.Body)) {
		t.Fatalf("delivery %+v", d)
	}
	mu.Unlock()

	a.Close()
	after := a.NewDelivery(cb.srv.URL, []byte(`{}`))
	a.Send(&after, &mu)
	mu.Lock()
	defer mu.Unlock()
	if after.State != sandbox.DeliveryFailed || after.Attempts != 0 {
		t.Fatalf("a delivery sent after Close: %+v", after)
	}
}
