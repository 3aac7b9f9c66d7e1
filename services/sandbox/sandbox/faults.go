package sandbox

// Fault makes the next Count requests that match Method and Path fail with Status.
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
