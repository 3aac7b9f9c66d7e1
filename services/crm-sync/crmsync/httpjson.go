package crmsync

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/brokerflow/brokerflow/pkg/bus"
)

// maxAnswer bounds every CRM answer an adapter reads.
const maxAnswer = 1 << 20

// jsonAPI is the HTTP JSON plumbing the CRM adapters share: it builds a
// request, authenticates it, reads the answer, and turns a non-2xx answer
// into an *APIError classified for the bus policy (see classify).
type jsonAPI struct {
	// crm names the CRM in errors, e.g. "followupboss".
	crm    string
	base   string
	client *http.Client
	// authorize sets the credentials and vendor headers on every request.
	authorize func(*http.Request)
	// errorKeys are the fields of the vendor's error body that hold its
	// message, tried in order; without one the raw body is the message.
	errorKeys []string
}

// do sends one request with in (when not nil) as its JSON body and decodes
// a 2xx body into out (when not nil). It returns the status, or an error
// classified for the bus policy: no answer wraps ErrUnreachable; a non-2xx
// answer is an *APIError.
func (a *jsonAPI) do(ctx context.Context, op, method, path string, in, out any) (int, error) {
	var body io.Reader = http.NoBody
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("%s %s: %w", a.crm, op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return 0, fmt.Errorf("%s %s: %w", a.crm, op, err)
	}
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.authorize != nil {
		a.authorize(req)
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return 0, bus.WithCode("crm.unreachable", fmt.Errorf("%s %s: %w: %w", a.crm, op, ErrUnreachable, err))
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return 0, fmt.Errorf("%s %s: read answer: %w", a.crm, op, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, classify(&APIError{
			CRM: a.crm, Op: op, Status: resp.StatusCode,
			Message: truncate(a.errorMessage(raw), 300), RetryAfter: retryAfter(resp.Header),
		})
	}
	if out != nil && resp.StatusCode != http.StatusNoContent && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", a.crm, op, err)
		}
	}
	return resp.StatusCode, nil
}

// errorMessage returns the vendor's message from an error body, or the
// body itself.
func (a *jsonAPI) errorMessage(raw []byte) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) == nil {
		for _, k := range a.errorKeys {
			var s string
			if json.Unmarshal(fields[k], &s) == nil && s != "" {
				return s
			}
		}
	}
	return strings.TrimSpace(string(raw))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
