package vendorapi_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// startSandbox serves a sandbox over real HTTP and returns it and its URL.
func startSandbox(t *testing.T, o sandbox.Options) (*sandbox.Sandbox, string) {
	t.Helper()
	sb := sandbox.New(o)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close)
	return sb, srv.URL
}

// fubClient is a client of the sandbox's Follow Up Boss at base, as the
// Follow Up Boss adapter builds it.
func fubClient(base string, mutate ...func(*vendorapi.Config)) *vendorapi.Client {
	cfg := vendorapi.Config{
		Vendor: "followupboss", Area: "crm", BaseURL: base + "/fub", Timeout: 10 * time.Second,
		Auth:     vendorapi.Basic(sandbox.DefaultFUBAPIKey, ""),
		Header:   http.Header{"X-System": {sandbox.DefaultFUBSystem}, "X-System-Key": {sandbox.DefaultFUBSystemKey}},
		Classify: vendorapi.DefaultClassifier("errorMessage"),
	}
	for _, m := range mutate {
		m(&cfg)
	}
	return vendorapi.New(cfg)
}

// peoplePage is GET /v1/people's answer.
type peoplePage struct {
	People []struct {
		ID int64 `json:"id"`
	} `json:"people"`
}

// search is a person search, the call whose URL carries personal data.
func search(ctx context.Context, c *vendorapi.Client, email string) error {
	var page peoplePage
	_, err := c.Do(ctx, "search people by email", http.MethodGet, "/v1/people?"+url.Values{"email": {email}}.Encode(), nil, &page)
	return err
}

func TestClient_sendsJSONAndDecodesTheAnswer(t *testing.T) {
	t.Parallel()
	sb, base := startSandbox(t, sandbox.Options{})
	c := fubClient(base)
	var person struct {
		ID int64 `json:"id"`
	}
	ev := map[string]any{"source": "idx", "type": "Registration", "person": map[string]any{"emails": []map[string]string{{"value": "ada@example.com"}}}}
	status, err := c.Do(t.Context(), "send event", http.MethodPost, "/v1/events", ev, &person)
	if err != nil || status != http.StatusCreated || person.ID == 0 {
		t.Fatalf("POST /v1/events = %d, person %d, %v", status, person.ID, err)
	}
	var page peoplePage
	if _, err := c.Do(t.Context(), "search people by email", http.MethodGet, "/v1/people?email=ada%40example.com", nil, &page); err != nil ||
		len(page.People) != 1 || page.People[0].ID != person.ID {
		t.Fatalf("search = %+v, %v", page, err)
	}
	if n := len(sb.FUB().Events()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

func TestClient_answersAreClassifiedWithReasonCodes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status, retryAfter int
		class              bus.Class
		code               string
		throttle           bool
	}{
		{400, 0, bus.Permanent, "crm.http_400", false},
		{401, 0, bus.Permanent, "crm.http_401", false},
		{403, 0, bus.Permanent, "crm.http_403", false},
		{404, 0, bus.Permanent, "crm.http_404", false},
		{408, 0, bus.Transient, "crm.http_408", false},
		{422, 0, bus.Permanent, "crm.http_422", false},
		{429, 7, bus.Transient, "crm.rate_limited", true},
		{429, 0, bus.Transient, "crm.rate_limited", true},
		{500, 0, bus.Transient, "crm.http_500", false},
		{503, 3, bus.Transient, "crm.http_503", false},
	}
	policy := bus.DefaultPolicy()
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			t.Parallel()
			sb, base := startSandbox(t, sandbox.Options{})
			sb.FUB().InjectFault(sandbox.Fault{Status: tc.status, RetryAfter: tc.retryAfter, Body: `{"errorMessage":"what went wrong"}`})
			err := search(t.Context(), fubClient(base), "ada@example.com")
			class := policy.Classify(err)
			if class != tc.class || bus.ReasonCode(err, class) != tc.code {
				t.Fatalf("HTTP %d: %v, %q; want %v, %q (%v)", tc.status, class, bus.ReasonCode(err, class), tc.class, tc.code, err)
			}
			var ra *bus.RetryAfterError
			if throttled := errors.As(err, &ra) && ra.Throttle; throttled != tc.throttle {
				t.Fatalf("HTTP %d throttled = %v, want %v", tc.status, throttled, tc.throttle)
			}
			if want := time.Duration(tc.retryAfter) * time.Second; want > 0 && (ra == nil || ra.After != want) {
				t.Fatalf("HTTP %d: retry after %v, want %s", tc.status, ra, want)
			}
			var ve *vendorapi.Error
			if !errors.As(err, &ve) || ve.Status != tc.status || ve.Message != "what went wrong" || ve.Vendor != "followupboss" || ve.Op != "search people by email" {
				t.Fatalf("HTTP %d: %#v", tc.status, ve)
			}
			if got := err.Error(); !strings.HasPrefix(got, "followupboss search people by email: HTTP ") || strings.Contains(got, "ada") {
				t.Fatalf("error text %q", got)
			}
		})
	}
}

// personal data that a search URL carries, plain and percent-encoded.
var searchPII = []string{"ada@example.com", "ada%40example.com", "ada", "example.com", "/v1/people", "email="}

func assertNoURL(t *testing.T, err error) {
	t.Helper()
	for _, s := range searchPII {
		if strings.Contains(err.Error(), s) {
			t.Fatalf("error %q holds %q from the request URL", err, s)
		}
	}
}

func TestClient_noAnswerIsUnreachableAndNamesNoURL(t *testing.T) {
	t.Parallel()
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	err = search(t.Context(), fubClient(closed), "ada@example.com")
	class := bus.DefaultPolicy().Classify(err)
	if !errors.Is(err, vendorapi.ErrUnreachable) || class != bus.Transient || bus.ReasonCode(err, class) != "crm.unreachable" {
		t.Fatalf("err = %v (%v, %s), want a transient crm.unreachable", err, class, bus.ReasonCode(err, class))
	}
	if !strings.Contains(err.Error(), "connection refused") || !strings.HasPrefix(err.Error(), "followupboss search people by email: ") {
		t.Fatalf("err = %q, want the operation and the cause", err)
	}
	assertNoURL(t, err)
}

func TestClient_timeoutKeepsItsCauseAndNamesNoURL(t *testing.T) {
	t.Parallel()
	sb, base := startSandbox(t, sandbox.Options{})
	sb.Graph().SetLatency(time.Minute)
	c := vendorapi.New(vendorapi.Config{
		Vendor: "graph", Area: "graph", BaseURL: base + "/graph/v19.0",
		Auth: vendorapi.Bearer(sandbox.DefaultGraphAccessToken), Classify: vendorapi.GraphClassifier,
	})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Do(ctx, "read lead", http.MethodGet, "/1?fields=id&email=ada%40example.com", nil, nil)
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, vendorapi.ErrUnreachable) || bus.DefaultPolicy().Classify(err) != bus.Transient {
		t.Fatalf("err = %v, want a transient deadline", err)
	}
	assertNoURL(t, err)
}

// A vendor's message is kept to its first 300 bytes in an Error, cut on a
// character, never in half of one.
func TestClient_longMessageIsCutOnACharacter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body, want string }{
		{"short", "bad gateway", "bad gateway"},
		{"two_byte_characters", "x" + strings.Repeat("é", 200), "x" + strings.Repeat("é", 149) + "…"},
		{"ascii", strings.Repeat("a", 350), strings.Repeat("a", 300) + "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sb, base := startSandbox(t, sandbox.Options{})
			sb.FUB().InjectFault(sandbox.Fault{Status: http.StatusBadGateway, Body: tc.body})
			err := search(t.Context(), fubClient(base), "a@example.com")
			var ve *vendorapi.Error
			if !errors.As(err, &ve) || ve.Message != tc.want || !utf8.ValidString(ve.Message) {
				t.Fatalf("err = %v; want a *vendorapi.Error with the message %q", err, tc.want)
			}
		})
	}
}

func TestClient_boundsTheAnswer(t *testing.T) {
	t.Parallel()
	_, base := startSandbox(t, sandbox.Options{})
	c := fubClient(base, func(c *vendorapi.Config) { c.MaxAnswer = 8 })
	err := search(t.Context(), c, "nobody@example.com")
	class := bus.DefaultPolicy().Classify(err)
	if class != bus.Permanent || bus.ReasonCode(err, class) != "crm.answer_too_large" {
		t.Fatalf("err = %v (%v, %s), want a permanent crm.answer_too_large", err, class, bus.ReasonCode(err, class))
	}
}

func TestClient_undecodableAnswerIsABadAnswer(t *testing.T) {
	t.Parallel()
	_, base := startSandbox(t, sandbox.Options{})
	var wrong struct {
		People string `json:"people"`
	}
	_, err := fubClient(base).Do(t.Context(), "search people", http.MethodGet, "/v1/people?limit=1", nil, &wrong)
	class := bus.DefaultPolicy().Classify(err)
	if class != bus.Transient || bus.ReasonCode(err, class) != "crm.bad_answer" {
		t.Fatalf("err = %v (%v, %s), want a transient crm.bad_answer", err, class, bus.ReasonCode(err, class))
	}
}

// newHeaderServer answers every request 200 {} with header.
func newHeaderServer(t *testing.T, header http.Header) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, vs := range header {
			w.Header()[k] = vs
		}
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Eight callers at once, again and again, as crm-sync's handlers call the
// CRM: the client keeps its connections to the vendor open between calls
// instead of dialing (and against the real vendor, shaking hands with TLS)
// for most calls, as Go's default of 2 idle connections per host made it.
func TestClient_keepsAConnectionPerConcurrentCallerOpen(t *testing.T) {
	t.Parallel()
	sb := sandbox.New(sandbox.Options{})
	t.Cleanup(sb.Close)
	sb.FUB().SetLatency(5 * time.Millisecond) // the calls overlap
	srv := httptest.NewUnstartedServer(sb.Handler())
	var dialed atomic.Int64
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialed.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := fubClient(srv.URL)
	const callers, rounds = 8, 10
	for range rounds {
		var wg sync.WaitGroup
		for range callers {
			wg.Go(func() {
				if err := search(t.Context(), c, "nobody@example.com"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if n := dialed.Load(); n > callers {
		t.Fatalf("%d connections dialed for %d calls from %d callers at once: at most %d, one per caller, kept open", n, callers*rounds, callers, callers)
	}
}
