// Package crmtest is the contract every CRM adapter passes: the same suite
// runs against each adapter (crm/followupboss, crm/liondesk), talking over
// real HTTP to the sandbox.
package crmtest

import (
	"context"
	"errors"
	"slices"
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
	// AddDetails adds id's email and phone to the contact when it lacks
	// them, never removing one; added reports whether anything changed.
	AddDetails(ctx context.Context, contactID string, id crm.Identity) (added bool, err error)
	// HasLead reports whether Record's activity for leadID is on the contact.
	HasLead(ctx context.Context, contactID, leadID string) (bool, error)
	// AddNote adds a note to the contact.
	AddNote(ctx context.Context, contactID, body string) error
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
	// Details are the emails and phones the contact holds, as the CRM holds
	// them.
	Details(t *testing.T, contactID string) (emails, phones []string)
	// Notes are the texts of the notes on the contact (LionDesk's include
	// the leads' notes).
	Notes(t *testing.T, contactID string) []string
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

	runContactTests(t, newCRM, ctx)

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

// runContactTests is the contract of AddDetails, HasLead and AddNote.
func runContactTests(t *testing.T, newCRM Factory, ctx func(*testing.T) context.Context) {
	t.Helper()
	t.Run("add_details_adds_what_is_missing_and_removes_nothing", func(t *testing.T) {
		t.Parallel()
		a, be := newCRM(t)
		rec, err := a.Record(ctx(t), Lead("ld_d1", "Pat", "Phone", "", "+14155550150"), "")
		if err != nil {
			t.Fatal(err)
		}
		// A later lead of the same person brings her email.
		added, err := a.AddDetails(ctx(t), rec.ContactID, crm.Identity{Email: "pat@example.com", Phone: "+14155550150"})
		if err != nil || !added {
			t.Fatalf("AddDetails = %v, %v; want added", added, err)
		}
		emails, phones := be.Details(t, rec.ContactID)
		if !slices.Equal(emails, []string{"pat@example.com"}) || !hasPhone(phones, "+14155550150") || len(phones) != 1 {
			t.Fatalf("after adding the email: emails %q, phones %q; want the email added and the one phone kept", emails, phones)
		}
		// The same details again change nothing.
		if added, err := a.AddDetails(ctx(t), rec.ContactID, crm.Identity{Email: "PAT@example.com", Phone: "+14155550150"}); err != nil || added {
			t.Fatalf("AddDetails of details the contact has = %v, %v; want nothing added", added, err)
		}
		// A second phone is added beside the first; the email stays.
		if added, err := a.AddDetails(ctx(t), rec.ContactID, crm.Identity{Phone: "+14155550151"}); err != nil || !added {
			t.Fatalf("AddDetails of a second phone = %v, %v; want added", added, err)
		}
		emails, phones = be.Details(t, rec.ContactID)
		if !slices.Equal(emails, []string{"pat@example.com"}) || !hasPhone(phones, "+14155550150") || !hasPhone(phones, "+14155550151") {
			t.Fatalf("after adding a second phone: emails %q, phones %q; want the email and both phones", emails, phones)
		}
		if n := be.Contacts(t); n != 1 {
			t.Fatalf("%d contacts, want 1", n)
		}
	})

	t.Run("has_lead_finds_the_leads_activity_on_its_contact_only", func(t *testing.T) {
		t.Parallel()
		a, _ := newCRM(t)
		first, err := a.Record(ctx(t), Lead("ld_h77", "Hedy", "Lamarr", "hedy@example.com", ""), "")
		if err != nil {
			t.Fatal(err)
		}
		other, err := a.Record(ctx(t), Lead("ld_h2", "Mary", "Jackson", "mary@example.com", ""), "")
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			contact, lead string
			want          bool
		}{
			{first.ContactID, "ld_h77", true},
			{first.ContactID, "ld_h7", false}, // a prefix of a recorded id is another lead
			{first.ContactID, "ld_h2", false}, // on another contact
			{other.ContactID, "ld_h2", true},
			{other.ContactID, "ld_h77", false},
		} {
			got, err := a.HasLead(ctx(t), tc.contact, tc.lead)
			if err != nil || got != tc.want {
				t.Errorf("HasLead(%s, %s) = %v, %v; want %v", tc.contact, tc.lead, got, err, tc.want)
			}
		}
		// A lead recorded later on a known contact is found there too.
		if _, err := a.Record(ctx(t), Lead("ld_h3", "Hedy", "Lamarr", "hedy@example.com", ""), first.ContactID); err != nil {
			t.Fatal(err)
		}
		if got, err := a.HasLead(ctx(t), first.ContactID, "ld_h3"); err != nil || !got {
			t.Fatalf("HasLead of a lead on a known contact = %v, %v; want true", got, err)
		}
	})

	t.Run("add_note_puts_the_text_on_the_contact", func(t *testing.T) {
		t.Parallel()
		a, be := newCRM(t)
		rec, err := a.Record(ctx(t), Lead("ld_n1", "Dorothy", "Vaughan", "dorothy@example.com", ""), "")
		if err != nil {
			t.Fatal(err)
		}
		const body = "Possibly the same person as contact 42 (same phone): an agent may merge them."
		if err := a.AddNote(ctx(t), rec.ContactID, body); err != nil {
			t.Fatal(err)
		}
		if notes := be.Notes(t, rec.ContactID); !slices.Contains(notes, body) {
			t.Fatalf("notes %q, want %q among them", notes, body)
		}
		if n := be.Contacts(t); n != 1 {
			t.Fatalf("%d contacts, want 1", n)
		}
	})

	t.Run("add_details_server_error_is_transient", func(t *testing.T) {
		t.Parallel()
		a, be := newCRM(t)
		rec, err := a.Record(ctx(t), Lead("ld_d5", "Eve", "Error", "", "+14155550160"), "")
		if err != nil {
			t.Fatal(err)
		}
		be.FailNext(t, 503, 1, 0)
		_, err = a.AddDetails(ctx(t), rec.ContactID, crm.Identity{Email: "eve@example.com"})
		if err == nil || bus.DefaultPolicy().Classify(err) != bus.Transient {
			t.Fatalf("AddDetails on a 503 = %v, want a transient error", err)
		}
		if added, err := a.AddDetails(ctx(t), rec.ContactID, crm.Identity{Email: "eve@example.com"}); err != nil || !added {
			t.Fatalf("AddDetails after the fault = %v, %v; want added", added, err)
		}
	})
}

// hasPhone reports whether phones holds want, however the CRM wrote it.
func hasPhone(phones []string, want string) bool {
	return slices.ContainsFunc(phones, func(p string) bool { return crm.SamePhone(p, want) })
}
