package followupboss_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// A PUT replaces the person's phones: every phone Follow Up Boss holds goes
// back with its type, and the new one is added after them.
func TestFollowUpBoss_AddDetailsSendsBackEveryEntry(t *testing.T) {
	t.Parallel()
	fub, cfg := crmtest.FollowUpBoss(t)
	a := followupboss.New(cfg)
	rec, err := a.Record(t.Context(), crmtest.Lead("ld_p1", "Ada", "Lovelace", "ada@example.com", "+14155550134"), "")
	if err != nil {
		t.Fatal(err)
	}
	id := mustID(t, rec.ContactID)
	phones := []sandbox.FUBValue{{Value: "(415) 555-0134", Type: "mobile"}, {Value: "(212) 555-0199", Type: "work"}}
	if _, err := fub.UpdatePerson(id, sandbox.FUBPersonUpdate{Phones: &phones}); err != nil {
		t.Fatal(err)
	}
	// The lead's phone is held, written differently: nothing to add.
	if added, err := a.AddDetails(t.Context(), rec.ContactID, crm.Identity{Email: "ada@example.com", Phone: "+14155550134"}); err != nil || added {
		t.Fatalf("AddDetails of held details = %v, %v; want nothing added", added, err)
	}
	if added, err := a.AddDetails(t.Context(), rec.ContactID, crm.Identity{Phone: "+16175550100"}); err != nil || !added {
		t.Fatalf("AddDetails = %v, %v; want added", added, err)
	}
	p := fub.People()[0]
	got := fmt.Sprint(p.Phones)
	want := fmt.Sprint([]sandbox.FUBValue{{Value: "(415) 555-0134", Type: "mobile", IsPrimary: true}, {Value: "(212) 555-0199", Type: "work"}, {Value: "+16175550100"}})
	if got != want || len(p.Emails) != 1 || p.Emails[0].Value != "ada@example.com" {
		t.Fatalf("phones %s, emails %v; want %s and the email kept", got, p.Emails, want)
	}
}

// A person Follow Up Boss still hides (agent assignment) is
// crm.ErrContactNotFound, which the bus retries.
func TestFollowUpBoss_AddDetailsOfAHiddenPerson(t *testing.T) {
	t.Parallel()
	fub, cfg := crmtest.FollowUpBoss(t)
	fub.SetAssignmentDelay(time.Hour)
	a := followupboss.New(cfg)
	rec, err := a.Record(t.Context(), crmtest.Lead("ld_p2", "Ada", "Lovelace", "", "+14155550134"), "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.AddDetails(t.Context(), rec.ContactID, crm.Identity{Email: "ada@example.com"})
	if !errors.Is(err, crm.ErrContactNotFound) {
		t.Fatalf("AddDetails of a hidden person = %v, want crm.ErrContactNotFound", err)
	}
	if err := a.AddNote(t.Context(), rec.ContactID, "note"); !errors.Is(err, crm.ErrContactNotFound) {
		t.Fatalf("AddNote on a hidden person = %v, want crm.ErrContactNotFound", err)
	}
}

// HasLead pages through a person's events, newest first, down to the oldest.
func TestFollowUpBoss_HasLeadPagesThroughEvents(t *testing.T) {
	t.Parallel()
	_, cfg := crmtest.FollowUpBoss(t)
	a := followupboss.New(cfg)
	first, err := a.Record(t.Context(), crmtest.Lead("ld_old", "Ada", "Lovelace", "ada@example.com", ""), "")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 120 {
		if _, err := a.Record(t.Context(), crmtest.Lead(fmt.Sprintf("ld_new_%d", i), "Ada", "Lovelace", "ada@example.com", ""), first.ContactID); err != nil {
			t.Fatal(err)
		}
	}
	if found, err := a.HasLead(t.Context(), first.ContactID, "ld_old"); err != nil || !found {
		t.Fatalf("HasLead of the oldest of 121 events = %v, %v; want true", found, err)
	}
	if found, err := a.HasLead(t.Context(), first.ContactID, "ld_never"); err != nil || found {
		t.Fatalf("HasLead of a lead never sent = %v, %v; want false", found, err)
	}
}

// GET /v1/events is paced to its own, tighter limit: many HasLead calls
// meet no 429 although the global quota would allow them all at once.
func TestFollowUpBoss_HasLeadIsPacedToTheEventsLimit(t *testing.T) {
	t.Parallel()
	sb, base := crmtest.Sandbox(t, sandbox.Options{FUB: sandbox.FUBOptions{Window: time.Second, EventsLimit: 4}})
	cfg := crmtest.FollowUpBossConfig(base)
	cfg.RateWindow, cfg.EventsRateLimit = time.Second, 4
	a := followupboss.New(cfg)
	rec, err := a.Record(t.Context(), crmtest.Lead("ld_q", "Ada", "Lovelace", "ada@example.com", ""), "")
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if found, err := a.HasLead(t.Context(), rec.ContactID, "ld_q"); err != nil || !found {
			t.Fatalf("HasLead = %v, %v", found, err)
		}
	}
	if u := sb.FUB().Usage(); u.Refused != 0 || u.Counted != 10 {
		t.Fatalf("usage %+v, want 10 calls counted and none refused", u)
	}
}

func mustID(t *testing.T, s string) int64 {
	t.Helper()
	var id int64
	if _, err := fmt.Sscan(s, &id); err != nil {
		t.Fatalf("contact id %q: %v", s, err)
	}
	return id
}

// The CRM source, not the sources file's name, is the event's and the new
// person's source.
func TestFollowUpBoss_sendsTheCRMSource(t *testing.T) {
	t.Parallel()
	fub, cfg := crmtest.FollowUpBoss(t)
	l := crmtest.Lead("ld_src", "John", "Smith", "john.smith@example.com", "")
	l.LeadSource, l.CrmSource = "idx-vendor", "MyAwesomeWebsite.com"
	if _, err := followupboss.New(cfg).Record(t.Context(), l, ""); err != nil {
		t.Fatal(err)
	}
	if ev, p := fub.Events()[0], fub.People()[0]; ev.Source != "MyAwesomeWebsite.com" || p.Source != "MyAwesomeWebsite.com" {
		t.Fatalf("event source %q, person source %q; want MyAwesomeWebsite.com", ev.Source, p.Source)
	}
}
