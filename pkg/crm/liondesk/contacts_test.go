package liondesk_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/crm/liondesk"
)

// A LionDesk contact holds one email and three phones: a value with no free
// field is kept in a note, once.
func TestLionDesk_AddDetailsKeepsWhatDoesNotFitInANote(t *testing.T) {
	t.Parallel()
	ld, cfg := crmtest.LionDesk(t)
	a := liondesk.New(cfg)
	lead := crmtest.Lead("ld_f", "Ada", "Lovelace", "ada@example.com", "+14155550134")
	lead.Contact.HomePhone = "+14155550135"
	rec, err := a.Record(t.Context(), lead, "")
	if err != nil {
		t.Fatal(err)
	}
	if added, err := a.AddDetails(t.Context(), rec.ContactID, crm.Identity{Phone: "+14155550136"}); err != nil || !added {
		t.Fatalf("AddDetails of a third phone = %v, %v; want added", added, err)
	}
	notesBefore := len(ld.Notes())
	extra := crm.Identity{Email: "ada.l@example.org", Phone: "+14155550137"}
	if added, err := a.AddDetails(t.Context(), rec.ContactID, extra); err != nil || !added {
		t.Fatalf("AddDetails of values with no free field = %v, %v; want added", added, err)
	}
	c := ld.Contacts()[0]
	if c.Email != "ada@example.com" || c.MobilePhone != "+14155550134" || c.HomePhone != "+14155550135" || c.OfficePhone != "+14155550136" {
		t.Fatalf("contact %+v: its fields changed", c)
	}
	notes := ld.Notes()
	if len(notes) != notesBefore+2 || notes[notesBefore].Content != liondesk.AlsoReachable("ada.l@example.org") ||
		notes[notesBefore+1].Content != liondesk.AlsoReachable("+14155550137") || strconv.FormatInt(notes[notesBefore].ContactID, 10) != rec.ContactID {
		t.Fatalf("notes %+v; want one note for each value with no free field", notes[notesBefore:])
	}
	// Already noted: nothing more.
	if added, err := a.AddDetails(t.Context(), rec.ContactID, extra); err != nil || added {
		t.Fatalf("AddDetails again = %v, %v; want nothing added", added, err)
	}
	if n := len(ld.Notes()); n != notesBefore+2 {
		t.Fatalf("%d notes after the same details again, want %d", n, notesBefore+2)
	}
}

// The CRM source, not the sources file's name, is the contact's source and
// heads the note.
func TestLionDesk_usesTheCRMSource(t *testing.T) {
	t.Parallel()
	ld, cfg := crmtest.LionDesk(t)
	l := crmtest.Lead("ld_src", "John", "Smith", "john.smith@example.com", "")
	l.LeadSource, l.CrmSource = "idx-vendor", "MyAwesomeWebsite.com"
	if _, err := liondesk.New(cfg).Record(t.Context(), l, ""); err != nil {
		t.Fatal(err)
	}
	srcs, c, notes := ld.Sources(), ld.Contacts()[0], ld.Notes()
	if len(srcs) != 1 || srcs[0].Name != "MyAwesomeWebsite.com" || c.SourceID == nil || *c.SourceID != srcs[0].ID {
		t.Fatalf("sources %+v, contact source %v; want the contact's source MyAwesomeWebsite.com", srcs, c.SourceID)
	}
	if want := "New lead from MyAwesomeWebsite.com (Brokerflow lead ld_src)"; len(notes) != 1 || !strings.HasPrefix(notes[0].Content, want) {
		t.Fatalf("notes %+v, want one starting %q", notes, want)
	}
}
