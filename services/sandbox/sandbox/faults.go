package sandbox

import (
	"fmt"
	"net/http"
	"time"
)

// Fault makes the next Count calls that match Method and Path fail: after Latency, with Status,
// or with the vendor's expired-token error. A fault with only a Latency delays the calls, which
// then go on as usual. A failing call is not processed and not counted against the rate limit.
type Fault struct {
	// Method is the HTTP method to match; empty matches any.
	Method string `json:"method,omitempty"`
	// Path is the exact request path after the vendor prefix (for FUB "/v1/events"); empty
	// matches any.
	Path string `json:"path,omitempty"`
	// Status is the HTTP status to answer with.
	Status int `json:"status"`
	// Count is how many requests fail; 0 means 1.
	Count int `json:"count,omitempty"`
	// RetryAfter, when positive, is sent as the Retry-After header in seconds (for 429s).
	RetryAfter int `json:"retryAfter,omitempty"`
	// Body replaces the vendor's default error body.
	Body string `json:"body,omitempty"`
	// Latency, when positive, delays the answer (or until the client gives up). Over HTTP it
	// is a Go duration string: "latency":"1.5s".
	Latency time.Duration `json:"-"`
	// ExpireToken expires the call's token: this call and every later one with it answer the
	// vendor's expired-token error (401 unless the vendor says otherwise) until Reset. Status
	// is then ignored.
	ExpireToken bool `json:"expireToken,omitempty"`
}

// faultQueue holds the pending faults of one vendor, first injected first used.
// It is not safe for concurrent use; its owner holds a lock.
type faultQueue struct{ pending []Fault }

func (q *faultQueue) add(f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	q.pending = append(q.pending, f)
}

// take consumes one use of the first pending fault that matches the request.
func (q *faultQueue) take(method, path string) (Fault, bool) {
	for i := range q.pending {
		f := &q.pending[i]
		if (f.Method == "" || f.Method == method) && (f.Path == "" || f.Path == path) {
			out := *f
			f.Count--
			if f.Count == 0 {
				q.pending = append(q.pending[:i], q.pending[i+1:]...)
			}
			return out, true
		}
	}
	return Fault{}, false
}

func (q *faultQueue) clear() { q.pending = nil }

// faultKnob serves a POST of a Fault as JSON to a vendor's InjectFault.
func faultKnob(inject func(Fault)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Fault
			Latency string `json:"latency"`
		}
		if err := decodeJSON(r, &in); err != nil {
			writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
			return
		}
		ft := in.Fault
		if ft.Status != 0 && (ft.Status < 100 || ft.Status > 599) {
			writeJSON(w, http.StatusBadRequest, knobError{fmt.Sprintf("status %d is not an HTTP status", ft.Status)})
			return
		}
		if in.Latency != "" {
			d, err := time.ParseDuration(in.Latency)
			if err != nil || d < 0 {
				writeJSON(w, http.StatusBadRequest, knobError{fmt.Sprintf("latency %q is not a non-negative Go duration such as \"1.5s\"", in.Latency)})
				return
			}
			ft.Latency = d
		}
		inject(ft)
		w.WriteHeader(http.StatusNoContent)
	}
}
