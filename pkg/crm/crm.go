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
	"time"

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
