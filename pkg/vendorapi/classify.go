package vendorapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Answer is a vendor's non-2xx answer, as a Classifier sees it.
type Answer struct {
	Status int
	Header http.Header
	// Body is the answer's body, at most Config.MaxAnswer bytes.
	Body []byte
}

// Class is what the bus is to do with a failed call.
type Class int

// Classes of answer.
const (
	// Transient is retried on the bus schedule (or after RetryAfter when
	// it is longer).
	Transient Class = iota + 1
	// Permanent is not retried: a failure record, for a redrive once the
	// cause is fixed.
	Permanent
	// Throttled is a vendor quota that ran out: retried after RetryAfter
	// (the schedule's delay without one), as bus.Throttled, so that a
	// consumer registered with bus.PauseOnThrottle pauses, and the client's
	// Pacer stops every call until then.
	Throttled
)

// Verdict is what a Classifier makes of an answer.
type Verdict struct {
	Class Class
	// Reason is the reason code's last part, e.g. "http_400" or
	// "rate_limited"; empty means "http_<status>". The client prefixes the
	// area.
	Reason string
	// RetryAfter is what the vendor asked to wait; 0 when it did not say.
	RetryAfter time.Duration
	// Code is the vendor's own error code, when the answer has one.
	Code string
	// Message is the vendor's message, for the error's text.
	Message string
}

// Classifier maps a non-2xx answer to its verdict.
type Classifier func(Answer) Verdict

// DefaultClassifier is the mapping most vendors need: a 429 is Throttled
// ("rate_limited", with its Retry-After); a 408 or a 5xx is Transient; any
// other status, a 4xx (a wrong key or token included), is Permanent; the
// reason is "http_<status>". The message is the first of messageKeys found
// as a string in a JSON object body, else the body itself.
func DefaultClassifier(messageKeys ...string) Classifier {
	return func(a Answer) Verdict {
		v := StatusVerdict(a)
		v.Message = jsonMessage(a.Body, messageKeys)
		return v
	}
}

// StatusVerdict is the verdict from the status and Retry-After alone, the
// default mapping that vendors' classifiers fall back to.
func StatusVerdict(a Answer) Verdict {
	v := Verdict{Reason: fmt.Sprintf("http_%d", a.Status), RetryAfter: RetryAfter(a.Header)}
	switch {
	case a.Status == http.StatusTooManyRequests:
		v.Class, v.Reason = Throttled, "rate_limited"
	case a.Status == http.StatusRequestTimeout || a.Status >= 500:
		v.Class = Transient
	default:
		v.Class = Permanent
	}
	return v
}

// RetryAfter reads a Retry-After header, in seconds or as an HTTP date; 0
// when there is none, or it is in the past.
func RetryAfter(h http.Header) time.Duration {
	s := strings.TrimSpace(h.Get("Retry-After"))
	if s == "" {
		return 0
	}
	if n, err := strconv.Atoi(s); err == nil {
		return time.Duration(max(n, 0)) * time.Second
	}
	if t, err := http.ParseTime(s); err == nil {
		return max(time.Until(t), 0).Round(time.Second)
	}
	return 0
}

// jsonMessage returns the first of keys that holds a non-empty string in a
// JSON object body, or the body itself.
func jsonMessage(body []byte, keys []string) string {
	var fields map[string]json.RawMessage
	if len(keys) > 0 && json.Unmarshal(body, &fields) == nil {
		for _, k := range keys {
			var s string
			if json.Unmarshal(fields[k], &s) == nil && s != "" {
				return s
			}
		}
	}
	return strings.TrimSpace(string(body))
}
