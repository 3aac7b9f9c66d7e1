package crmtest

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// TestLead is one lead of a test person: the values that identify them.
type TestLead struct{ ID, First, Last, Email, Phone string }

// Contact is a contact as either sandbox CRM holds it, with its lead
// activities (Follow Up Boss events, LionDesk notes other than link notes)
// and the link notes crm-sync leaves on two contacts of one person.
type Contact struct {
	ID         string
	Emails     []string
	Phones     []string
	Activities int
	LinkNotes  int
}

// LinkNotePrefix starts the note crm-sync leaves on two contacts that one
// lead showed to be one person.
const LinkNotePrefix = "Brokerflow: one lead brought"

// Contacts returns the contacts of the sandbox's crm ("followupboss" or
// "liondesk").
func Contacts(sb *sandbox.Sandbox, crm string) []Contact {
	var out []Contact
	at := map[string]int{}
	add := func(id int64, emails, phones []string) {
		at[strconv.FormatInt(id, 10)] = len(out)
		out = append(out, Contact{ID: strconv.FormatInt(id, 10), Emails: emails, Phones: phones})
	}
	of := func(id int64) *Contact { return &out[at[strconv.FormatInt(id, 10)]] }
	if crm == "liondesk" {
		ld := sb.LionDesk()
		for _, ct := range ld.Contacts() {
			add(ct.ID, nonEmpty(ct.Email), nonEmpty(ct.MobilePhone, ct.HomePhone, ct.OfficePhone))
		}
		for _, n := range ld.Notes() {
			if strings.HasPrefix(n.Content, LinkNotePrefix) {
				of(n.ContactID).LinkNotes++
			} else {
				of(n.ContactID).Activities++
			}
		}
		return out
	}
	fub := sb.FUB()
	for _, p := range fub.People() {
		var emails, phones []string
		for _, e := range p.Emails {
			emails = append(emails, e.Value)
		}
		for _, ph := range p.Phones {
			phones = append(phones, ph.Value)
		}
		add(p.ID, emails, phones)
	}
	for _, e := range fub.Events() {
		of(e.PersonID).Activities++
	}
	for _, n := range fub.Notes() {
		if strings.HasPrefix(n.Body, LinkNotePrefix) {
			of(n.PersonID).LinkNotes++
		}
	}
	return out
}

// Refused counts the calls the sandbox's crm refused with 429.
func Refused(sb *sandbox.Sandbox, crm string) int {
	if crm == "liondesk" {
		return sb.LionDesk().Usage().Refused
	}
	return sb.FUB().Usage().Refused
}

// AssertOnePerPerson checks a CRM's contacts after leads: every person
// (the leads that share an email or a phone) has exactly one contact that
// holds every email and phone their leads brought, or, when linked is
// allowed, two contacts that each carry one link note; and every lead is
// exactly one activity.
func AssertOnePerPerson(t *testing.T, contacts []Contact, leads []TestLead, linked bool) {
	t.Helper()
	people := map[string][]string{} // a person's values, by the first one seen
	personOf := map[string]string{}
	for _, l := range leads {
		var p string
		for _, v := range nonEmpty(l.Email, l.Phone) {
			if personOf[v] != "" {
				p = personOf[v]
			}
		}
		for _, v := range nonEmpty(l.Email, l.Phone) {
			if p == "" {
				p = v
			}
			if personOf[v] == "" {
				personOf[v] = p
				people[p] = append(people[p], v)
			}
		}
	}
	holds := func(ct Contact, v string) bool { return slices.Contains(ct.Emails, v) || slices.Contains(ct.Phones, v) }
	for p, values := range people {
		var mine []Contact
		for _, ct := range contacts {
			if slices.ContainsFunc(values, func(v string) bool { return holds(ct, v) }) {
				mine = append(mine, ct)
			}
		}
		switch {
		case len(mine) == 1:
			for _, v := range values {
				if !holds(mine[0], v) {
					t.Errorf("person %s: contact %s lacks %s, which a lead brought", p, mine[0].ID, v)
				}
			}
		case len(mine) == 2 && linked && mine[0].LinkNotes == 1 && mine[1].LinkNotes == 1:
		default:
			t.Errorf("person %s has %d contacts: %+v", p, len(mine), mine)
		}
	}
	activities := 0
	for _, ct := range contacts {
		activities += ct.Activities
	}
	if activities != len(leads) {
		t.Errorf("%d activities for %d leads", activities, len(leads))
	}
}

func nonEmpty(values ...string) []string {
	var out []string
	for _, v := range values {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
