package liondesk_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/crm/liondesk"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// liondeskBackend is the sandbox's LionDesk account.
type liondeskBackend struct{ ld *sandbox.LionDesk }

func (b liondeskBackend) Contacts(*testing.T) int { return len(b.ld.Contacts()) }

func (b liondeskBackend) Activities(*testing.T) int { return len(b.ld.Notes()) }

func (b liondeskBackend) FailNext(_ *testing.T, status, n, retryAfter int) {
	b.ld.InjectFault(sandbox.Fault{Status: status, Count: n, RetryAfter: retryAfter})
}

func (b liondeskBackend) Details(t *testing.T, contactID string) (emails, phones []string) {
	t.Helper()
	for _, c := range b.ld.Contacts() {
		if strconv.FormatInt(c.ID, 10) == contactID {
			return nonEmpty(c.Email), nonEmpty(c.MobilePhone, c.HomePhone, c.OfficePhone)
		}
	}
	t.Fatalf("no contact %s", contactID)
	return nil, nil
}

func (b liondeskBackend) Notes(_ *testing.T, contactID string) []string {
	var out []string
	for _, n := range b.ld.Notes() {
		if strconv.FormatInt(n.ContactID, 10) == contactID {
			out = append(out, n.Content)
		}
	}
	return out
}

func nonEmpty(vs ...string) []string {
	var out []string
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func TestLionDesk_contract(t *testing.T) {
	t.Parallel()
	crmtest.Run(t, func(t *testing.T) (crmtest.Adapter, crmtest.Backend) {
		ld, cfg := crmtest.LionDesk(t)
		return liondesk.New(cfg), liondeskBackend{ld: ld}
	})
}

// fullLead is a lead with every field the note must carry.
func fullLead() *leadv1.Lead {
	l := crmtest.Lead("ld_full", "Ada", "Lovelace", "ada@example.com", "+14155550134")
	l.Contact.HomePhone = "+14155550199"
	l.ReceivedAt = timestamppb.New(time.Date(2026, 3, 2, 15, 4, 5, 0, time.UTC))
	l.Inquiry.Property.ListPrice = &commonv1.Money{AmountMinor: 44900000, CurrencyCode: "USD"}
	l.Inquiry.Property.Url = "https://example.com/listing/MLS123"
	l.Campaign = &leadv1.Campaign{UtmSource: "google", UtmMedium: "cpc", UtmCampaign: "spring", LandingPageUrl: "https://example.com/lp"}
	l.Agent = &leadv1.Agent{Name: "Jane Agent", Email: "jane@broker.example", MemberId: "M42"}
	return l
}

func TestLionDesk_recordsTheContactThenTheInquiryAsANote(t *testing.T) {
	t.Parallel()
	ld, cfg := crmtest.LionDesk(t)
	a := liondesk.New(cfg)
	rec, err := a.Record(t.Context(), fullLead(), "")
	if err != nil {
		t.Fatal(err)
	}
	contacts, notes, sources := ld.Contacts(), ld.Notes(), ld.Sources()
	if len(contacts) != 1 || len(notes) != 1 || len(sources) != 1 {
		t.Fatalf("%d contacts, %d notes, %d sources; want 1 of each", len(contacts), len(notes), len(sources))
	}
	c := contacts[0]
	if rec.ContactID != "1" || !rec.Created || c.FirstName != "Ada" || c.LastName != "Lovelace" || c.Email != "ada@example.com" ||
		c.MobilePhone != "+14155550134" || c.HomePhone != "+14155550199" || c.SourceID == nil || *c.SourceID != sources[0].ID || sources[0].Name != "idx" {
		t.Fatalf("Record = %+v; contact %+v, sources %+v", rec, c, sources)
	}
	if notes[0].ContactID != c.ID {
		t.Fatalf("note on contact %d, want %d", notes[0].ContactID, c.ID)
	}
	want := strings.Join([]string{
		"New lead from idx (Brokerflow lead ld_full)",
		"Inquiry: buy",
		"Message: Is 12 Main St still available?",
		"Property: 12 Main St, Springfield, IL 62701",
		"MLS number: MLS123",
		"Price: 449000.00 USD",
		"Listing: https://example.com/listing/MLS123",
		"Campaign: utm_source=google, utm_medium=cpc, utm_campaign=spring",
		"Landing page: https://example.com/lp",
		"Agent requested: Jane Agent <jane@broker.example> (member id M42)",
		"Received: 2026-03-02T15:04:05Z",
	}, "\n")
	if notes[0].Content != want {
		t.Fatalf("note:\n%s\nwant:\n%s", notes[0].Content, want)
	}
}

func TestLionDesk_noteOfASparseLead(t *testing.T) {
	t.Parallel()
	l := &leadv1.Lead{LeadId: "ld_min", Contact: &leadv1.Contact{FullName: "Cher", RawPhone: "555 CALL ME"}}
	if got, want := liondesk.NoteText(l), "New lead from an unknown source (Brokerflow lead ld_min)\nPhone as sent: 555 CALL ME"; got != want {
		t.Fatalf("note %q, want %q", got, want)
	}
	ld, cfg := crmtest.LionDesk(t)
	if _, err := liondesk.New(cfg).Record(t.Context(), l, ""); err != nil {
		t.Fatal(err)
	}
	if c := ld.Contacts()[0]; c.FirstName != "Cher" || c.SourceID != nil || len(ld.Sources()) != 0 {
		t.Fatalf("contact %+v, sources %+v; want the full name and no source", c, ld.Sources())
	}
}

func TestLionDesk_reusesContactSources(t *testing.T) {
	t.Parallel()
	ld, cfg := crmtest.LionDesk(t)
	// The account already has the source, spelt differently, twice.
	for range 2 {
		if _, err := liondesk.New(cfg).Record(t.Context(), &leadv1.Lead{LeadId: "ld_seed", LeadSource: "IDX", Contact: &leadv1.Contact{Email: "seed@example.com"}}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(ld.Sources()); n != 1 {
		t.Fatalf("%d sources after two adapters met the same name, want 1", n)
	}
	ld.Reset()
	a := liondesk.New(cfg)
	for _, id := range []string{"ld_a", "ld_b", "ld_c"} {
		if _, err := a.Record(t.Context(), crmtest.Lead(id, "A", "B", id+"@example.com", ""), ""); err != nil {
			t.Fatal(err)
		}
	}
	if s := ld.Sources(); len(s) != 1 || s[0].Name != "idx" {
		t.Fatalf("sources %+v, want one idx", s)
	}
	for _, c := range ld.Contacts() {
		if c.SourceID == nil || *c.SourceID != 1 {
			t.Fatalf("contact %+v, want source 1", c)
		}
	}
}

func TestLionDesk_findsTheOldestOfDuplicates(t *testing.T) {
	t.Parallel()
	_, cfg := crmtest.LionDesk(t)
	a := liondesk.New(cfg)
	// LionDesk does not deduplicate: two creates make two contacts.
	var ids []string
	for range 2 {
		rec, err := a.Record(t.Context(), crmtest.Lead("ld_dup", "Ada", "Lovelace", "ada@example.com", "+14155550134"), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, rec.ContactID)
	}
	if ids[0] == ids[1] {
		t.Fatalf("two creates made one contact %s", ids[0])
	}
	for _, id := range []crm.Identity{{Email: "ADA@example.com"}, {Phone: "+1 (415) 555-0134"}} {
		m, found, err := a.Find(t.Context(), id)
		if err != nil || !found || m.ContactID != ids[0] {
			t.Fatalf("Find(%+v) = %+v %v %v, want the oldest %s", id, m, found, err, ids[0])
		}
	}
}

func TestLionDesk_noteFailureThenRetryMakesNoSecondContact(t *testing.T) {
	t.Parallel()
	ld, cfg := crmtest.LionDesk(t)
	a := liondesk.New(cfg)
	l := crmtest.Lead("ld_retry", "Ada", "Lovelace", "ada@example.com", "")
	// Source 1 and contact 1 will be made; the note on contact 1 fails once.
	ld.InjectFault(sandbox.Fault{Method: "POST", Path: "/contacts/1/notes", Status: 503})
	_, err := a.Record(t.Context(), l, "")
	if err == nil || bus.DefaultPolicy().Classify(err) != bus.Transient {
		t.Fatalf("Record = %v, want a transient error", err)
	}
	// crm-sync retries: it searches first, as HandleLead does.
	m, found, err := a.Find(t.Context(), crm.IdentityOf(l))
	if err != nil || !found {
		t.Fatalf("Find after the failed note = %+v %v %v", m, found, err)
	}
	rec, err := a.Record(t.Context(), l, m.ContactID)
	if err != nil || rec.Created || rec.ContactID != "1" {
		t.Fatalf("retry = %+v %v", rec, err)
	}
	if c, n := len(ld.Contacts()), len(ld.Notes()); c != 1 || n != 1 {
		t.Fatalf("%d contacts and %d notes, want 1 and 1", c, n)
	}
}

func TestLionDesk_errors(t *testing.T) {
	t.Parallel()
	t.Run("wrong_token_is_permanent", func(t *testing.T) {
		t.Parallel()
		_, cfg := crmtest.LionDesk(t)
		cfg.AccessToken = "expired"
		_, _, err := liondesk.New(cfg).Find(t.Context(), crm.Identity{Email: "a@example.com"})
		var apiErr *crm.APIError
		if !errors.As(err, &apiErr) || apiErr.Status != 401 || bus.DefaultPolicy().Classify(err) != bus.Permanent {
			t.Fatalf("err = %v, want a permanent 401", err)
		}
	})
	t.Run("message_from_the_body", func(t *testing.T) {
		t.Parallel()
		ld, cfg := crmtest.LionDesk(t)
		ld.InjectFault(sandbox.Fault{Status: 422, Body: `{"code":422,"message":"email is invalid"}`})
		_, _, err := liondesk.New(cfg).Find(t.Context(), crm.Identity{Email: "a@example.com"})
		var apiErr *crm.APIError
		if !errors.As(err, &apiErr) || apiErr.Message != "email is invalid" || apiErr.Vendor != "liondesk" || apiErr.Op != "search contacts by email" {
			t.Fatalf("err = %#v", err)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		t.Parallel()
		_, cfg := crmtest.LionDesk(t)
		cfg.BaseURL = "http://127.0.0.1:1/liondesk"
		_, _, err := liondesk.New(cfg).Find(t.Context(), crm.Identity{Email: "a@example.com"})
		if !errors.Is(err, crm.ErrUnreachable) || bus.DefaultPolicy().Classify(err) != bus.Transient {
			t.Fatalf("err = %v, want a transient ErrUnreachable", err)
		}
	})
	t.Run("contact_id_not_numeric", func(t *testing.T) {
		t.Parallel()
		ld, cfg := crmtest.LionDesk(t)
		if _, err := liondesk.New(cfg).Record(t.Context(), fullLead(), "../sources"); err == nil || len(ld.Notes()) != 0 {
			t.Fatalf("Record on contact %q = %v", "../sources", err)
		}
	})
}
