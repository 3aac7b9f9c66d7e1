package vendorapi_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// rotatingToken is a RefreshingTokenSource that holds one token and
// renews it to the next of its list, as an OAuth refresh-token grant would.
type rotatingToken struct {
	mu      sync.Mutex
	tokens  []string
	refused []string
	err     error
}

func (r *rotatingToken) Token(context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tokens[0], nil
}

func (r *rotatingToken) Refresh(_ context.Context, refused string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refused = append(r.refused, refused)
	if r.err != nil {
		return r.err
	}
	if len(r.tokens) > 1 {
		r.tokens = r.tokens[1:]
	}
	return nil
}

func (r *rotatingToken) refreshes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.refused...)
}

// liondeskClient is a client of the sandbox's LionDesk, with OAuth from src.
func liondeskClient(base string, src vendorapi.TokenSource) *vendorapi.Client {
	return vendorapi.New(vendorapi.Config{
		Vendor: "liondesk", Area: "crm", BaseURL: base + "/liondesk", Timeout: 10 * time.Second,
		Auth: vendorapi.OAuth(src), Classify: vendorapi.DefaultClassifier("message", "error"),
	})
}

func listContacts(ctx context.Context, c *vendorapi.Client) error {
	_, err := c.Do(ctx, "list contacts", http.MethodGet, "/contacts?limit=1", nil, nil)
	return err
}

func TestOAuth_aRefusedTokenIsRefreshedOnceAndTheCallSentAgain(t *testing.T) {
	t.Parallel()
	_, base := startSandbox(t, sandbox.Options{})
	src := &rotatingToken{tokens: []string{"expired-token", sandbox.DefaultLionDeskToken}}
	if err := listContacts(t.Context(), liondeskClient(base, src)); err != nil {
		t.Fatalf("after a refresh: %v", err)
	}
	if got := src.refreshes(); len(got) != 1 || got[0] != "expired-token" {
		t.Fatalf("refreshes with %q, want one with the refused token", got)
	}
	// The renewed token is used from then on: no further refresh.
	if err := listContacts(t.Context(), liondeskClient(base, src)); err != nil || len(src.refreshes()) != 1 {
		t.Fatalf("second call: %v, %d refreshes", err, len(src.refreshes()))
	}
}

func TestOAuth_aTokenRefusedAfterItsRefreshIsThe401(t *testing.T) {
	t.Parallel()
	_, base := startSandbox(t, sandbox.Options{})
	src := &rotatingToken{tokens: []string{"expired-token", "revoked-token"}}
	err := listContacts(t.Context(), liondeskClient(base, src))
	class := bus.DefaultPolicy().Classify(err)
	var ve *vendorapi.Error
	if !errors.As(err, &ve) || ve.Status != http.StatusUnauthorized || class != bus.Permanent || bus.ReasonCode(err, class) != "crm.http_401" {
		t.Fatalf("err = %v, want a permanent crm.http_401", err)
	}
	if n := len(src.refreshes()); n != 1 {
		t.Fatalf("%d refreshes, want exactly 1", n)
	}
}

func TestOAuth_aFailedRefreshIsAnAuthError(t *testing.T) {
	t.Parallel()
	_, base := startSandbox(t, sandbox.Options{})
	tests := map[string]struct {
		err   error
		class bus.Class
	}{
		"unreachable_token_endpoint": {errors.New("token endpoint: connection refused"), bus.Transient},
		"invalid_grant":              {bus.AsPermanent(errors.New("invalid_grant")), bus.Permanent},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := &rotatingToken{tokens: []string{"expired-token"}, err: tc.err}
			err := listContacts(t.Context(), liondeskClient(base, src))
			class := bus.DefaultPolicy().Classify(err)
			if !errors.Is(err, tc.err) || class != tc.class || bus.ReasonCode(err, class) != "crm.auth" {
				t.Fatalf("err = %v (%v, %s), want %v crm.auth", err, class, bus.ReasonCode(err, class), tc.class)
			}
		})
	}
}

func TestBearer_aStaticTokenIsNotRefreshed(t *testing.T) {
	t.Parallel()
	_, base := startSandbox(t, sandbox.Options{})
	c := vendorapi.New(vendorapi.Config{Vendor: "liondesk", Area: "crm", BaseURL: base + "/liondesk", Auth: vendorapi.Bearer("expired-token")})
	if err := listContacts(t.Context(), c); bus.DefaultPolicy().Classify(err) != bus.Permanent {
		t.Fatalf("err = %v, want a permanent 401", err)
	}
	ok := vendorapi.New(vendorapi.Config{Vendor: "liondesk", Area: "crm", BaseURL: base + "/liondesk", Auth: vendorapi.Bearer(sandbox.DefaultLionDeskToken)})
	if err := listContacts(t.Context(), ok); err != nil {
		t.Fatal(err)
	}
}

func TestSigned_signsTheBodyItSends(t *testing.T) {
	t.Parallel()
	key := []byte("webhook-signing-key")
	mac := func(body []byte) string {
		m := hmac.New(sha256.New, key)
		m.Write(body)
		return hex.EncodeToString(m.Sum(nil))
	}
	// A receiver that checks the signature, as an alert webhook's would.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !hmac.Equal([]byte(r.Header.Get("X-Signature")), []byte(mac(body))) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	c := vendorapi.New(vendorapi.Config{Vendor: "alerts", Area: "alert", BaseURL: srv.URL,
		Auth: vendorapi.Signed("X-Signature", func(_ *http.Request, body []byte) (string, error) { return mac(body), nil })})
	if status, err := c.Do(t.Context(), "send alert", http.MethodPost, "/hook", map[string]string{"text": "lead failed"}, nil); err != nil || status != http.StatusNoContent {
		t.Fatalf("signed call = %d, %v", status, err)
	}
}
