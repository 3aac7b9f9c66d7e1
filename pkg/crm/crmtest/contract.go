// Package crmtest is the contract every CRM adapter passes: the same suite
// runs against each adapter (crm/followupboss, crm/liondesk), talking over
// real HTTP to the sandbox.
package crmtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// Adapter is what the contract exercises: what a service needs to put leads
// into a CRM.
type Adapter interface {
	// Name is the CRM's name in events, e.g. "followupboss".
	Name() string
	// Find looks the person up by email, then by phone.
	Find(ctx context.Context, id crm.Identity) (crm.Match, bool, error)
	// Record puts the lead into the CRM: as activity on contactID when the
	// person is known, otherwise creating the person.
	Record(ctx context.Context, lead *leadv1.Lead, contactID string) (crm.Recorded, error)
}

// Backend is the CRM account behind an adapter, as a test sees it.
type Backend interface {
	// Contacts is the number of contacts the account holds.
	Contacts(t *testing.T) int
	// Activities is the number of activities recorded on the account's
	// contacts: Follow Up Boss's events, LionDesk's notes.
	Activities(t *testing.T) int
	// FailNext makes the next n calls answer status; retryAfter > 0 sets
	// Retry-After (seconds).
	FailNext(t *testing.T, status, n, retryAfter int)
}

// Factory returns an adapter on a fresh, empty account and its backend.
type Factory func(t *testing.T) (Adapter, Backend)

// Lead returns a canonical lead as the normalizer publishes it.
func Lead(id, first, last, email, phone string) *leadv1.Lead {
	return &leadv1.Lead{
		LeadId:     id,
		LeadSource: "idx",
		Contact:    &leadv1.Contact{FirstName: first, LastName: last, FullName: first + " " + last, Email: email, MobilePhone: phone},
		Inquiry: &leadv1.Inquiry{
			Type:    leadv1.InquiryType_INQUIRY_TYPE_BUY,
			Message: "Is 12 Main St still available?",
			Property: &leadv1.Property{
				UnparsedAddress: "12 Main St", City: "Springfield", StateOrProvince: "IL", PostalCode: "62701", ListingId: "MLS123",
			},
		},
	}
}

// Run runs the contract suite against the adapters newCRM makes.
func Run(t *testing.T, newCRM Factory) {
	t.Helper()
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}
	policy := bus.DefaultPolicy()

	t.Run("find_absent_person", func(t *testing.T) {
		t.Parallel()
		a, _ := newCRM(t)
		if _, found, err := a.Find(ctx(t), crm.Identity{Email: "nobody@example.com", Phone: "+14155550100"}); err != nil || found {
			t.Fatalf("Find = found %v, err %v; want not found", found, err)
		}
	})

	t.Run("record_creates_then_find_by_email_and_phone", func(t *testing.T) {
		t.Parallel()
		a, be := newCRM(t)
		rec, err := a.Record(ctx(t), Lead("ld_1", "Ada", "Lovelace", "ada@example.com", "+14155550134"), "")
		if err != nil {
			t.Fatal(err)
		}
		if !rec.Created || rec.ContactID == "" || rec.Ignored {
			t.Fatalf("Record = %+v, want a created contact", rec)
		}
		if n := be.Contacts(t); n != 1 {
			t.Fatalf("%d contacts, want 1", n)
		}
		m, found, err := a.Find(ctx(t), crm.Identity{Email: "ada@example.com"})
		if err != nil || !found || m.ContactID != rec.ContactID || m.By != "email" {
			t.Fatalf("Find by email = %+v %v %v", m, found, err)
		}
		m, found, err = a.Find(ctx(t), crm.Identity{Email: "other@example.com", Phone: "+14155550134"})
		if err != nil || !found || m.ContactID != rec.ContactID || m.By != "phone" {
			t.Fatalf("Find by phone = %+v %v %v", m, found, err)
		}
	})

	t.Run("record_on_known_contact_adds_no_contact", func(t *testing.T) {
		t.Parallel()
		a, be := newCRM(t)
		first, err := a.Record(ctx(t), Lead("ld_2", "Grace", "Hopper", "grace@example.org", ""), "")
		if err != nil {
			t.Fatal(err)
		}
		again, err := a.Record(ctx(t), Lead("ld_3", "Grace", "Hopper", "grace@example.org", ""), first.ContactID)
		if err != nil {
			t.Fatal(err)
		}
		if again.Created || again.ContactID != first.ContactID {
			t.Fatalf("second Record = %+v, want the existing contact %s", again, first.ContactID)
		}
		if n := be.Contacts(t); n != 1 {
			t.Fatalf("%d contacts, want 1", n)
		}
	})

	t.Run("record_on_known_contact_adds_an_activity_and_no_contact", func(t *testing.T) {
		t.Parallel()
		a, be := newCRM(t)
		first, err := a.Record(ctx(t), Lead("ld_4", "Katherine", "Johnson", "katherine@example.net", "+14155550177"), "")
		if err != nil {
			t.Fatal(err)
		}
		contacts, activities := be.Contacts(t), be.Activities(t)
		if contacts != 1 || activities < 1 {
			t.Fatalf("after a new lead: %d contacts and %d activities, want 1 and at least 1", contacts, activities)
		}
		m, found, err := a.Find(ctx(t), crm.IdentityOf(Lead("ld_5", "Katherine", "Johnson", "katherine@example.net", "+14155550177")))
		if err != nil || !found || m.ContactID != first.ContactID {
			t.Fatalf("Find = %+v %v %v, want contact %s", m, found, err, first.ContactID)
		}
		again, err := a.Record(ctx(t), Lead("ld_5", "Katherine", "Johnson", "katherine@example.net", "+14155550177"), m.ContactID)
		if err != nil {
			t.Fatal(err)
		}
		if again.Created || again.Ignored || again.ContactID != first.ContactID {
			t.Fatalf("second Record = %+v, want the existing contact %s", again, first.ContactID)
		}
		if n := be.Contacts(t); n != contacts {
			t.Fatalf("%d contacts after a lead on a known contact, want %d", n, contacts)
		}
		if n := be.Activities(t); n != activities+1 {
			t.Fatalf("%d activities after a lead on a known contact, want %d", n, activities+1)
		}
	})

	errorCases := []struct {
		name       string
		status     int
		retryAfter int
		want       bus.Class
		code       string
	}{
		{"server_error_is_transient", 500, 0, bus.Transient, "crm.http_500"},
		{"bad_request_is_permanent", 400, 0, bus.Permanent, "crm.http_400"},
		{"forbidden_is_permanent", 403, 0, bus.Permanent, "crm.http_403"},
		{"rate_limited_is_throttled_with_retry_after", 429, 2, bus.Transient, "crm.rate_limited"},
	}
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, be := newCRM(t)
			be.FailNext(t, tc.status, 1, tc.retryAfter)
			_, err := a.Record(ctx(t), Lead("ld_e", "Eve", "Error", "eve@example.com", ""), "")
			if err == nil {
				t.Fatalf("HTTP %d must be an error", tc.status)
			}
			got := policy.Classify(err)
			if got != tc.want || bus.ReasonCode(err, got) != tc.code {
				t.Fatalf("HTTP %d classified %v %s, want %v %s (%v)", tc.status, got, bus.ReasonCode(err, got), tc.want, tc.code, err)
			}
			var apiErr *crm.APIError
			if !errors.As(err, &apiErr) || apiErr.Status != tc.status || apiErr.Vendor != a.Name() {
				t.Fatalf("HTTP %d: %v is not the CRM's *crm.APIError", tc.status, err)
			}
			// A 429 is the account's quota: bus.Throttled, which pauses a
			// consumer registered with bus.PauseOnThrottle.
			var ra *bus.RetryAfterError
			if throttled := errors.As(err, &ra) && ra.Throttle; throttled != (tc.status == 429) {
				t.Fatalf("HTTP %d: throttled %v", tc.status, throttled)
			}
			if tc.retryAfter > 0 {
				if d := policy.Delay(1, err); d < time.Duration(tc.retryAfter)*time.Second {
					t.Fatalf("delay %s ignores Retry-After %ds", d, tc.retryAfter)
				}
			}
			// The fault is spent: the same call now succeeds (after a 429, once
			// its Retry-After has passed: the adapter paces itself).
			if _, err := a.Record(ctx(t), Lead("ld_e", "Eve", "Error", "eve@example.com", ""), ""); err != nil {
				t.Fatalf("after the fault: %v", err)
			}
		})
	}
}
