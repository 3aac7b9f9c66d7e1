package sandbox_test

import (
	"net/http"
	"testing"

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
