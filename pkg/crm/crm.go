// Package crm is the vocabulary that CRM adapters (crm/followupboss,
// crm/liondesk) and the services that use them share: how a person is
// searched for (Identity), what a search and a recorded lead come to (Match,
// Recorded), a contact as the CRM holds it (Person), what a CRM webhook says
// (Notification, ChangeKind), and the errors a CRM call returns.
//
// Adapters return concrete types; each service declares the interface it
// consumes. The contract every adapter passes is crm/crmtest.
package crm

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// Area is the reason-code area of every CRM call: crm.http_400,
// crm.rate_limited, crm.unreachable.
const Area = "crm"

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

// SourceOf is the lead source name the CRM records for a lead: its
// crm_source, or its lead_source for a lead published before crm_source
// existed.
func SourceOf(l *leadv1.Lead) string {
	if s := strings.TrimSpace(l.GetCrmSource()); s != "" {
		return s
	}
	return l.GetLeadSource()
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
	// Person is the contact as the CRM answered the call, when it answers
	// with one (Follow Up Boss's POST /v1/events does); nil otherwise.
	Person *Person
}

// Person is a contact as the CRM holds it. Emails and phones are as the CRM
// holds them (phones are not necessarily E.164).
type Person struct {
	ID        string
	FirstName string
	LastName  string
	Stage     string
	// Source is the contact's lead source in the CRM.
	Source  string
	Emails  []string
	Phones  []string
	Updated time.Time
	// AssignedUserID is the CRM user (agent) the contact is assigned to;
	// empty when unassigned or unknown.
	AssignedUserID string
}

// ChangeKind is what a CRM webhook says happened to its contacts.
type ChangeKind int

// Kinds of change. ChangeOther is any event that cannot change a contact's
// stage, name, emails or phones.
const (
	ChangeOther ChangeKind = iota
	ChangeCreated
	ChangeUpdated
	ChangeStage
	// ChangePolled is no webhook: a poll of the CRM's changed contacts
	// saw the contact as it is now. A contact seen for the first time is
	// learnt, as on ChangeCreated.
	ChangePolled
)

// Notification is one CRM webhook: an event about some contacts.
type Notification struct {
	// EventID is the CRM's id of the event (Follow Up Boss's eventId).
	EventID string
	// Event is the CRM's name of the event, e.g. "peopleStageUpdated".
	Event string
	Kind  ChangeKind
	// Created is when the CRM says the event happened; zero when it does not.
	Created    time.Time
	ContactIDs []string
}

// APIError is a CRM's non-2xx answer (Vendor is the CRM's name). Adapters
// return it wrapped with its bus class and reason code; match it with
// errors.As.
type APIError = vendorapi.Error

// ErrUnreachable is wrapped by a CRM call that got no answer.
var ErrUnreachable = vendorapi.ErrUnreachable

// ErrContactNotFound is a contact the CRM does not show. It is transient:
// Follow Up Boss hides a new person until agent assignment completes.
var ErrContactNotFound = errors.New("contact not found in the CRM")

// ErrPartlyDone is wrapped by an adapter's error when part of the call's
// effect happened before it failed: LionDesk's contact was created, its
// note was not.
var ErrPartlyDone = errors.New("partly done")

// NotDone reports whether err certainly means that the call had no effect:
// the CRM refused the request with a 4xx (a 429 included: the request was
// not processed), and the adapter did not mark the error partly done. A
// timeout, a reset or a 5xx may have had its effect: the caller must find
// out before calling again.
func NotDone(err error) bool {
	if err == nil || errors.Is(err, ErrPartlyDone) {
		return false
	}
	var e *APIError
	return errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && e.Status != http.StatusRequestTimeout
}

// FindByEmailThenPhone is every adapter's search: by email first, then by
// phone. search returns the id of the first contact found, or "".
func FindByEmailThenPhone(ctx context.Context, id Identity, search func(ctx context.Context, by, value string) (string, error)) (Match, bool, error) {
	for _, q := range []struct{ by, value string }{{"email", id.Email}, {"phone", id.Phone}} {
		if q.value == "" {
			continue
		}
		found, err := search(ctx, q.by, q.value)
		if err != nil {
			return Match{}, false, err
		}
		if found != "" {
			return Match{ContactID: found, By: q.by}, true, nil
		}
	}
	return Match{}, false, nil
}

// LeadMarker is the text an adapter writes into the activity that carries a
// lead (a Follow Up Boss event, a LionDesk note), so that HasLead can find it
// later: "(Brokerflow lead <id>)". The closing parenthesis keeps lead ld_7
// from matching ld_77.
func LeadMarker(leadID string) string { return "(Brokerflow lead " + leadID + ")" }

// Missing returns the email and phone of id that p does not hold yet: ""
// for each that p already has or that id lacks. Emails compare
// case-insensitively; phones by SamePhone, since a CRM may hold them as typed.
func Missing(p Person, id Identity) (email, phone string) {
	if e := strings.TrimSpace(id.Email); e != "" && !slices.ContainsFunc(p.Emails, func(have string) bool { return strings.EqualFold(strings.TrimSpace(have), e) }) {
		email = e
	}
	if ph := strings.TrimSpace(id.Phone); ph != "" && !slices.ContainsFunc(p.Phones, func(have string) bool { return SamePhone(have, ph) }) {
		phone = ph
	}
	return email, phone
}

// SamePhone reports whether a and b are one number written two ways: their
// digits agree, on the last ten when both have at least ten (so that
// "+1 (415) 555-0134" is "415-555-0134", and "+44 20 7946 0958" is
// "020 7946 0958").
func SamePhone(a, b string) bool {
	da, db := digits(a), digits(b)
	if da == "" || db == "" {
		return false
	}
	if len(da) >= 10 && len(db) >= 10 {
		return da[len(da)-10:] == db[len(db)-10:]
	}
	return da == db
}

func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// ContactNumber reads a contact id that the vendor (named in the error)
// numbers with positive integers. Anything else is a permanent error.
func ContactNumber(vendor, id string) (int64, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return 0, bus.Permanentf("%s: %q is not a contact id", vendor, id)
	}
	return n, nil
}
