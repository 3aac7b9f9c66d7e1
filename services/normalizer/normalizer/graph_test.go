package normalizer_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/services/normalizer/normalizer"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// graphEnv is a sandbox behind a real HTTP server and a GraphClient pointed at it.
type graphEnv struct {
	graph  *sandbox.Graph
	srv    *httptest.Server
	client *normalizer.GraphClient
}

func newGraphEnv(t *testing.T, cfg normalizer.GraphConfig) *graphEnv {
	t.Helper()
	sb := sandbox.New(sandbox.Options{})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	if cfg.BaseURL == "" {
		cfg.BaseURL = srv.URL + "/graph/v19.0"
	}
	if cfg.AccessToken == "" && cfg.AccessTokenFile == "" {
		cfg.AccessToken = sandbox.DefaultGraphAccessToken
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &graphEnv{graph: sb.Graph(), srv: srv, client: normalizer.NewGraphClient(cfg, srv.Client())}
}

func (e *graphEnv) addLead(t *testing.T, l sandbox.GraphLead) sandbox.GraphLead {
	t.Helper()
	l, err := e.graph.AddLead(l)
	if err != nil {
		t.Fatalf("add lead: %v", err)
	}
	return l
}

func TestGraphClient_readLead(t *testing.T) {
	t.Parallel()
	e := newGraphEnv(t, normalizer.GraphConfig{})
	created := time.Date(2026, 11, 26, 20, 0, 0, 0, time.UTC)
	paid := e.addLead(t, sandbox.GraphLead{
		CreatedTime: created, FormID: "44", AdID: "22", CampaignID: "55",
		Fields: []sandbox.GraphField{
			{Name: "email", Values: []string{"jane@example.com"}},
			{Name: "full_name", Values: []string{"Jane Buyer"}},
			{Name: "phone_number", Values: []string{"+14155550134"}},
			{Name: "neighborhoods", Values: []string{"Noe Valley", "Bernal Heights"}},
			{Name: "comments", Values: []string{}},
		},
	})
	organic := e.addLead(t, sandbox.GraphLead{CreatedTime: created, FormID: "44",
		Fields: []sandbox.GraphField{{Name: "email", Values: []string{"o@example.com"}}}})

	tests := map[string]struct {
		id   string
		want map[string]any
	}{
		"paid": {paid.ID, map[string]any{
			"id": paid.ID, "created_time": "2026-11-26T20:00:00+0000", "ad_id": "22", "form_id": "44", "campaign_id": "55",
			"fields": map[string]any{
				"email": "jane@example.com", "full_name": "Jane Buyer", "phone_number": "+14155550134", "neighborhoods": "Noe Valley",
			},
			"all_fields": map[string]any{
				"email": []any{"jane@example.com"}, "full_name": []any{"Jane Buyer"}, "phone_number": []any{"+14155550134"},
				"neighborhoods": []any{"Noe Valley", "Bernal Heights"}, "comments": []any{},
			},
		}},
		"organic_has_no_ad_fields": {organic.ID, map[string]any{
			"id": organic.ID, "created_time": "2026-11-26T20:00:00+0000", "form_id": "44",
			"fields":     map[string]any{"email": "o@example.com"},
			"all_fields": map[string]any{"email": []any{"o@example.com"}},
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := e.client.ReadLead(t.Context(), tc.id)
			if err != nil {
				t.Fatalf("ReadLead: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ReadLead = %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

func TestGraphClient_errorsAreClassified(t *testing.T) {
	t.Parallel()
	policy := bus.DefaultPolicy()

	tests := map[string]struct {
		cfg      normalizer.GraphConfig
		setup    func(*sandbox.Graph)
		id       string
		want     bus.Class
		code     int // the *GraphError's code, when one is expected
		noAnswer bool
	}{
		"unknown_lead":  {id: "999", want: bus.Permanent, code: 100},
		"invalid_token": {cfg: normalizer.GraphConfig{AccessToken: "not-a-token"}, want: bus.Permanent, code: 190},
		"expired_token": {setup: func(g *sandbox.Graph) { g.ExpireAccessToken(sandbox.DefaultGraphAccessToken) }, want: bus.Permanent, code: 190},
		"server_error":  {setup: func(g *sandbox.Graph) { g.InjectFault(sandbox.Fault{Status: 503}) }, want: bus.Transient, code: 2},
		"too_many_requests": {setup: func(g *sandbox.Graph) {
			g.InjectFault(sandbox.Fault{Status: http.StatusTooManyRequests})
		}, want: bus.Transient, code: 4},
		"rate_limit_as_400": {setup: func(g *sandbox.Graph) {
			g.InjectFault(sandbox.Fault{Status: 400, Body: `{"error":{"message":"(#17) User request limit reached","type":"OAuthException","code":17,"fbtrace_id":"x"}}`})
		}, want: bus.Transient, code: 17},
		"transient_4xx": {setup: func(g *sandbox.Graph) {
			g.InjectFault(sandbox.Fault{Status: 400, Body: `{"error":{"message":"try again","type":"OAuthException","code":1,"is_transient":true,"fbtrace_id":"x"}}`})
		}, want: bus.Transient, code: 1},
		"forbidden": {setup: func(g *sandbox.Graph) {
			g.InjectFault(sandbox.Fault{Status: 403, Body: `{"error":{"message":"(#10) Permission denied","type":"OAuthException","code":10,"fbtrace_id":"x"}}`})
		}, want: bus.Permanent, code: 10},
		"not_json_500": {setup: func(g *sandbox.Graph) { g.InjectFault(sandbox.Fault{Status: 502, Body: "bad gateway"}) }, want: bus.Transient},
		"timeout": {cfg: normalizer.GraphConfig{Timeout: 50 * time.Millisecond},
			setup: func(g *sandbox.Graph) { g.SetLatency(time.Minute) }, want: bus.Transient, noAnswer: true},
		"empty_id": {id: " ", want: bus.Permanent},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newGraphEnv(t, tc.cfg)
			l := e.addLead(t, sandbox.GraphLead{Fields: []sandbox.GraphField{{Name: "email", Values: []string{"a@example.com"}}}})
			if tc.setup != nil {
				tc.setup(e.graph)
			}
			id := graphIDOr(tc.id, l.ID)
			_, err := e.client.ReadLead(t.Context(), id)
			if err == nil {
				t.Fatal("ReadLead succeeded")
			}
			if got := policy.Classify(err); got != tc.want {
				t.Fatalf("class = %v, want %v: %v", got, tc.want, err)
			}
			var gerr *normalizer.GraphError
			switch {
			case tc.code != 0 && (!errors.As(err, &gerr) || gerr.Code != tc.code):
				t.Fatalf("error %v is not a *GraphError with code %d", err, tc.code)
			case tc.noAnswer && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("error %v is not a deadline", err)
			}
			if strings.Contains(err.Error(), "sandbox-graph-token") || strings.Contains(err.Error(), "not-a-token") {
				t.Fatalf("error leaks the token: %v", err)
			}
		})
	}
}

// TestGraphClient_longErrorBodyIsCutOnACharacter: an error body that is not
// Graph's envelope keeps its first 200 bytes as the message, never half a
// character.
func TestGraphClient_longErrorBodyIsCutOnACharacter(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, body, want string }{
		{"short", "bad gateway", "bad gateway"},
		{"two_byte_characters", "x" + strings.Repeat("é", 150), "x" + strings.Repeat("é", 99) + "…"},
		{"ascii", strings.Repeat("a", 250), strings.Repeat("a", 200) + "…"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newGraphEnv(t, normalizer.GraphConfig{})
			e.graph.InjectFault(sandbox.Fault{Status: http.StatusBadGateway, Body: tc.body})
			_, err := e.client.ReadLead(t.Context(), "1")
			var gerr *normalizer.GraphError
			if !errors.As(err, &gerr) || gerr.Message != tc.want || !utf8.ValidString(gerr.Message) {
				t.Fatalf("ReadLead = %v; want a GraphError with the message %q", err, tc.want)
			}
		})
	}
}

func TestGraphClient_unreachableIsTransientAndRedacted(t *testing.T) {
	t.Parallel()
	e := newGraphEnv(t, normalizer.GraphConfig{AccessToken: "secret token/+="})
	e.srv.Close()
	_, err := e.client.ReadLead(t.Context(), "1")
	if err == nil || bus.DefaultPolicy().Classify(err) != bus.Transient {
		t.Fatalf("ReadLead = %v, want a transient error", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks the token: %v", err)
	}
}

func TestGraphClient_tokenFromFile(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("# the Page token\nwrong-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newGraphEnv(t, normalizer.GraphConfig{AccessTokenFile: file})
	l := e.addLead(t, sandbox.GraphLead{})
	if _, err := e.client.ReadLead(t.Context(), l.ID); bus.DefaultPolicy().Classify(err) != bus.Permanent {
		t.Fatalf("with a wrong token in the file: %v", err)
	}
	// A rotated token is read on the next call.
	if err := os.WriteFile(file, []byte(sandbox.DefaultGraphAccessToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.ReadLead(t.Context(), l.ID); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if _, err := e.client.ReadLead(t.Context(), l.ID); err == nil || bus.DefaultPolicy().Classify(err) != bus.Transient {
		t.Fatalf("without the file: %v", err)
	}
}

func TestGraphConfig_validate(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ok := normalizer.GraphConfig{BaseURL: "https://graph.facebook.com/v19.0", AccessToken: "tok", Timeout: time.Second}
	tests := map[string]struct {
		mutate func(*normalizer.GraphConfig)
		want   string // in the error; empty means valid
	}{
		"valid":           {func(*normalizer.GraphConfig) {}, ""},
		"token_from_file": {func(c *normalizer.GraphConfig) { c.AccessToken, c.AccessTokenFile = "", file }, ""},
		"no_token":        {func(c *normalizer.GraphConfig) { c.AccessToken = "" }, "NORMALIZER_GRAPH_ACCESS_TOKEN"},
		"missing_file":    {func(c *normalizer.GraphConfig) { c.AccessToken, c.AccessTokenFile = "", file+".nope" }, "NORMALIZER_GRAPH_ACCESS_TOKEN_FILE"},
		"relative_url":    {func(c *normalizer.GraphConfig) { c.BaseURL = "graph.facebook.com" }, "NORMALIZER_GRAPH_BASE_URL"},
		"zero_timeout":    {func(c *normalizer.GraphConfig) { c.Timeout = 0 }, "NORMALIZER_GRAPH_TIMEOUT"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.mutate(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate = %v", err)
			case tc.want != "" && (err == nil || !errors.Is(err, normalizer.ErrConfig) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate = %v, want an ErrConfig naming %s", err, tc.want)
			}
		})
	}
}

func graphIDOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
