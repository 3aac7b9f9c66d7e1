package sandbox_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// newClock is a settable clock for the sandbox, so windows and delays pass without sleeping.
func newClock() *sandbox.Clock { return sandbox.NewClock(time.Date(2026, 3, 2, 15, 4, 5, 0, time.UTC)) }

// env is one sandbox behind a real HTTP server.
type env struct {
	sb    *sandbox.Sandbox
	srv   *httptest.Server
	clock *sandbox.Clock
}

func newEnv(t *testing.T, o sandbox.Options) *env {
	t.Helper()
	c := newClock()
	o.Now = c.Now
	sb := sandbox.New(o)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	return &env{sb: sb, srv: srv, clock: c}
}

// request describes one call; the zero value of auth is the default key of a registered system.
type request struct {
	method, path string
	body         string
	auth         authMode
	header       map[string]string
}

type authMode int

const (
	authRegistered authMode = iota
	authUnregistered
	authNone
)

type response struct {
	status int
	header http.Header
	body   []byte
}

func (e *env) do(t *testing.T, r request) response {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(t.Context(), r.method, e.srv.URL+r.path, body)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	switch r.auth {
	case authRegistered:
		req.SetBasicAuth(sandbox.DefaultFUBAPIKey, "")
		req.Header.Set("X-System", sandbox.DefaultFUBSystem)
		req.Header.Set("X-System-Key", sandbox.DefaultFUBSystemKey)
	case authUnregistered:
		req.SetBasicAuth(sandbox.DefaultFUBAPIKey, "")
	case authNone:
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body of %s %s: %v", r.method, r.path, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// want fails the test unless the answer has the status.
func (r response) want(t *testing.T, status int) response {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d, want %d; body: %s", r.status, status, r.body)
	}
	return r
}

func (r response) person(t *testing.T) sandbox.FUBPerson {
	t.Helper()
	var p sandbox.FUBPerson
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decode person %s: %v", r.body, err)
	}
	return p
}

type peoplePage struct {
	Metadata struct {
		Collection string  `json:"collection"`
		Offset     int     `json:"offset"`
		Limit      int     `json:"limit"`
		Total      int     `json:"total"`
		Next       *string `json:"next"`
		NextLink   *string `json:"nextLink"`
	} `json:"_metadata"`
	People []sandbox.FUBPerson `json:"people"`
}

func (r response) page(t *testing.T) peoplePage {
	t.Helper()
	var p peoplePage
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("decode people page %s: %v", r.body, err)
	}
	return p
}

func (r response) errorMessage(t *testing.T) string {
	t.Helper()
	var e struct {
		ErrorMessage string `json:"errorMessage"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.ErrorMessage == "" {
		t.Fatalf("body %s is not FUB's {\"errorMessage\":...} (%v)", r.body, err)
	}
	return e.ErrorMessage
}

// event returns a POST /v1/events body for a person.
func event(typ, person string) string {
	return fmt.Sprintf(`{"source":"example.com","system":"brokerflow","type":%q,"message":"hello","person":%s}`, typ, person)
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fub", name))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

// matchGolden compares got with the fixture structurally: JSON values must be equal, except that
// "<id>" matches any positive integer, "<timestamp>" any RFC 3339 time and "<string>" any
// non-empty string.
func matchGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	var want, have any
	if err := json.Unmarshal(readFixture(t, name), &want); err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	if err := json.Unmarshal(got, &have); err != nil {
		t.Fatalf("response is not JSON (%v): %s", err, got)
	}
	if diff := golden("$", want, have); diff != "" {
		var pretty bytes.Buffer
		_ = json.Indent(&pretty, got, "", "  ")
		t.Fatalf("response does not match %s: %s\ngot:\n%s", name, diff, pretty.String())
	}
}

func golden(path string, want, have any) string {
	switch w := want.(type) {
	case string:
		switch w {
		case "<id>":
			if n, ok := have.(float64); !ok || n <= 0 || n != float64(int64(n)) {
				return fmt.Sprintf("%s = %v, want a positive integer id", path, have)
			}
			return ""
		case "<timestamp>":
			s, ok := have.(string)
			if _, err := time.Parse(time.RFC3339, s); !ok || err != nil {
				return fmt.Sprintf("%s = %v, want an RFC 3339 time", path, have)
			}
			return ""
		case "<string>":
			if s, ok := have.(string); !ok || s == "" {
				return fmt.Sprintf("%s = %v, want a non-empty string", path, have)
			}
			return ""
		}
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s = %v, want an object", path, have)
		}
		for k := range h {
			if _, ok := w[k]; !ok {
				return fmt.Sprintf("%s.%s is not in the fixture", path, k)
			}
		}
		for k, wv := range w {
			hv, ok := h[k]
			if !ok {
				return fmt.Sprintf("%s.%s is missing", path, k)
			}
			if d := golden(path+"."+k, wv, hv); d != "" {
				return d
			}
		}
		return ""
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return fmt.Sprintf("%s = %v, want %d items", path, have, len(w))
		}
		for i := range w {
			if d := golden(fmt.Sprintf("%s[%d]", path, i), w[i], h[i]); d != "" {
				return d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(want, have) {
		return fmt.Sprintf("%s = %#v, want %#v", path, have, want)
	}
	return ""
}
