package crmsync

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// CRM is what crm-sync needs from a CRM. Every adapter (Follow Up Boss,
// LionDesk) implements it and passes the same contract suite (package
// crmtest).
type CRM interface {
	// Name is the CRM's name in events, e.g. "followupboss".
	Name() string
	// Find looks the person up by email, then by phone.
	Find(ctx context.Context, id Identity) (Match, bool, error)
	// Record puts the lead into the CRM: as activity on contactID when the
	// person is known, otherwise creating the person.
	Record(ctx context.Context, lead *leadv1.Lead, contactID string) (Recorded, error)
}

// Identity is how a person is searched for: a lower-cased email and an
// E.164 phone, either may be empty.
type Identity struct {
	Email string
	Phone string
}

// IdentityOf returns the identity of a canonical lead.
func IdentityOf(l *leadv1.Lead) Identity {
	return Identity{Email: l.GetContact().GetEmail(), Phone: l.GetContact().GetMobilePhone()}
}

// Match is a person found in the CRM.
type Match struct {
	ContactID string
	// By is "email" or "phone".
	By string
}

// Recorded is what the CRM did with a lead.
type Recorded struct {
	ContactID string
	Created   bool
	// Ignored is true when the CRM accepted the lead but made no contact.
	Ignored bool
}

// APIError is a CRM's non-2xx answer.
type APIError struct {
	CRM        string
	Op         string
	Status     int
	Message    string
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.CRM, e.Op, e.Status, e.Message)
}

// ErrUnreachable marks a CRM call that got no HTTP answer.
var ErrUnreachable = errors.New("crm unreachable")

// classify wraps an API error for the bus policy: a 429 carries its
// Retry-After, other 4xx are permanent, 5xx and the rest are transient. Each
// carries the reason code crm.http_<status> (crm.rate_limited for a 429).
func classify(e *APIError) error {
	code := fmt.Sprintf("crm.http_%d", e.Status)
	switch {
	case e.Status == http.StatusTooManyRequests:
		after := e.RetryAfter
		if after <= 0 {
			after = time.Second
		}
		// The quota is the account's: crm-sync's consumers pause on it.
		return bus.WithCode("crm.rate_limited", bus.Throttled(e, after))
	case e.Status == http.StatusRequestTimeout:
		return bus.WithCode(code, e)
	case e.Status >= 400 && e.Status < 500:
		return bus.WithCode(code, bus.AsPermanent(e))
	default:
		return bus.WithCode(code, e)
	}
}

// retryAfter reads a Retry-After header in seconds (HTTP dates are not used
// by the CRMs here).
func retryAfter(h http.Header) time.Duration {
	if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// findByEmailThenPhone is every adapter's search: by email first, then by
// phone. search returns the id of the first contact found, or 0.
func findByEmailThenPhone(ctx context.Context, id Identity, search func(ctx context.Context, by, value string) (int64, error)) (Match, bool, error) {
	for _, q := range []struct{ by, value string }{{"email", id.Email}, {"phone", id.Phone}} {
		if q.value == "" {
			continue
		}
		found, err := search(ctx, q.by, q.value)
		if err != nil {
			return Match{}, false, err
		}
		if found != 0 {
			return Match{ContactID: strconv.FormatInt(found, 10), By: q.by}, true, nil
		}
	}
	return Match{}, false, nil
}
