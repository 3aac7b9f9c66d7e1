// Package tms is the vocabulary that transaction-management adapters
// (tms/dotloop, tms/skyslope) and the services that use them share: a
// transaction to open, a transaction and its participants as the TMS holds
// them, its details, webhook subscriptions, the capability flags of an
// adapter, and ErrUnsupported for what a TMS cannot do.
//
// Adapters return concrete types and implement TMS; the contract every
// adapter passes is tms/tmstest.
package tms

import (
	"context"
	"errors"
	"time"
)

// Area is the reason-code area of every TMS call: tms.http_400,
// tms.rate_limited, tms.unreachable.
const Area = "tms"

// ErrUnsupported is what an adapter answers for something its TMS cannot
// do; its Capabilities say so beforehand.
var ErrUnsupported = errors.New("tms: not supported by this TMS")

// ErrNotFound is a transaction, participant or subscription the TMS does
// not hold.
var ErrNotFound = errors.New("tms: not found")

// Capabilities say what an adapter can do beyond opening and reading a
// transaction. What it cannot do answers ErrUnsupported.
type Capabilities struct {
	// Webhooks: Subscribe, Subscriptions and Unsubscribe.
	Webhooks bool
	// UpdateParticipants: UpdateParticipant.
	UpdateParticipants bool
	// ListTransactions: Transactions, which finds a transaction opened by a
	// call whose answer was lost.
	ListTransactions bool
	// Participants: Participants reads a transaction's parties.
	Participants bool
	// Commission: a closing's Details carry its gross commission. Without
	// it, a closing says the commission is not available.
	Commission bool
	// UpdateProperty: UpdateProperty sets the property of a transaction
	// already open (one opened before its property was known).
	UpdateProperty bool
}

// Transaction types and client roles.
const (
	TypePurchase = "PURCHASE_OFFER"
	TypeListing  = "LISTING_FOR_SALE"
	RoleBuyer    = "BUYER"
	RoleSeller   = "SELLER"
)

// Party is a person on a transaction.
type Party struct {
	// ID is the TMS's participant id, once it has one.
	ID       string
	FullName string
	Email    string
	Phone    string
	Role     string
}

// Property is a transaction's property.
type Property struct {
	StreetNumber, StreetName, Unit, City, State, PostalCode, Country string
	MLSNumber                                                        string
}

// Open is a transaction to open.
type Open struct {
	// Profile is the TMS profile (the agent's) to open it in.
	Profile string
	Name    string
	// Type is TypePurchase or TypeListing; Status the TMS's initial status.
	Type   string
	Status string
	// TemplateID is the TMS template to apply; empty for none.
	TemplateID string
	Property   *Property
	// Parties are the client and, when known, the agent.
	Parties []Party
}

// Transaction is a transaction as the TMS holds it.
type Transaction struct {
	ID      string
	Profile string
	Name    string
	Type    string
	Status  string
	URL     string
	Created time.Time
	Updated time.Time
}

// Details are a transaction's named sections of fields, as the TMS holds
// them (Dotloop's "Financials" → "Purchase/Sale Price" → "$525,000.00").
type Details map[string]map[string]string

// Field returns the value at "Section.Field" ("" when absent).
func (d Details) Field(section, field string) string { return d[section][field] }

// Change is a transaction that changed, with its details, as a TMS without
// webhooks answers when asked what changed since a time.
type Change struct {
	Transaction Transaction
	Details     Details
}

// Subscription is a webhook subscription.
type Subscription struct {
	ID         string
	URL        string
	Events     []string
	SigningKey string
	ExternalID string
	Enabled    bool
}

// TMS is what every adapter implements.
type TMS interface {
	Name() string
	Capabilities() Capabilities
	// Open opens a transaction with its property and parties in one call.
	Open(ctx context.Context, o Open) (Transaction, error)
	// Transaction reads one transaction; ErrNotFound when it does not exist.
	Transaction(ctx context.Context, profile, id string) (Transaction, error)
	// Transactions lists a profile's transactions, newest first, at most
	// limit of them.
	Transactions(ctx context.Context, profile string, limit int) ([]Transaction, error)
	// Details reads a transaction's details.
	Details(ctx context.Context, profile, id string) (Details, error)
	// Participants reads a transaction's parties.
	Participants(ctx context.Context, profile, id string) ([]Party, error)
	// UpdateParticipant sets p's name, email and phone on participant p.ID.
	UpdateParticipant(ctx context.Context, profile, id string, p Party) (Party, error)
	// UpdateProperty sets the property of transaction id to p; setting the
	// same property again changes nothing.
	UpdateProperty(ctx context.Context, profile, id string, p Property) error
	Subscribe(ctx context.Context, s Subscription) (Subscription, error)
	Subscriptions(ctx context.Context) ([]Subscription, error)
	Unsubscribe(ctx context.Context, id string) error
}

// Notification is one TMS webhook: an event about a transaction.
type Notification struct {
	// EventID is the TMS's id of the event.
	EventID string
	// Event is the TMS's name of it, e.g. Dotloop's "LOOP_UPDATED".
	Event string
	// Profile and Transaction name the transaction; empty for an event
	// about something else.
	Profile     string
	Transaction string
	// SubscriptionExternalID is the external id the subscription was made with.
	SubscriptionExternalID string
}
