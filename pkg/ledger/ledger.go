// Package ledger is the vocabulary that accounting adapters (ledger/quickbooks)
// and ledger-sync share: a closing's commission to book, what was booked, and
// the errors an adapter answers.
//
// An adapter books one closing in one call. It finds or creates the paying
// party, the agent and the items itself, and makes every create idempotent
// by the booking's key, so that a retry of Book after a crash, a timeout or
// on another replica returns what the first call booked and creates nothing.
// The contract every adapter passes is ledger/ledgertest.
package ledger

import (
	"context"
	"errors"
)

// Area is the reason-code area of every ledger call: ledger.http_400,
// ledger.rate_limited, ledger.unreachable.
const Area = "ledger"

// ErrUnsupported is what an adapter answers for something its ledger cannot
// do.
var ErrUnsupported = errors.New("ledger: not supported by this ledger")

// ErrReconnect is wrapped by an error that needs a person to connect the
// ledger again (QuickBooks' invalid_grant): retrying cannot help.
var ErrReconnect = errors.New("ledger: the connection must be made again")

// Document types.
const (
	DocumentInvoice      = "invoice"
	DocumentSalesReceipt = "sales_receipt"
)

// How the agent is attached to the document.
const (
	AgentAsClass  = "class"
	AgentAsVendor = "vendor"
)

// Component kinds: the parts of a gross commission.
const (
	KindAgentShare     = "agent_share"
	KindBrokerageShare = "brokerage_share"
	KindTransactionFee = "transaction_fee"
	KindFranchiseFee   = "franchise_fee"
	KindReferralFee    = "referral_fee"
)

// Party is the paying party (a QuickBooks Customer): the client, or the
// title or escrow company.
type Party struct {
	// Key identifies the party in Brokerflow (the CRM contact id, or the
	// company's configured id); it disambiguates two parties of one name.
	Key         string
	DisplayName string
	Email       string
	Phone       string
}

// Agent is the agent of the closing as the agent directory knows them.
type Agent struct {
	// ID is the agent's id in the agent directory.
	ID    string
	Name  string
	Email string
	// LedgerID is the agent's id in the ledger when the directory has it
	// (a QuickBooks Vendor id); empty to find or create one.
	LedgerID string
}

// Line is one line of the document: one component of the commission.
type Line struct {
	Kind string
	// Item is the name of the ledger's item for the component, e.g.
	// "Commission income" or "Franchise fee".
	Item        string
	Description string
	AmountMinor int64
}

// Booking is one closing's commission to book.
type Booking struct {
	// Key is what makes the booking idempotent: the TMS and its transaction
	// id. Every create derives its idempotency key from Key and its role.
	Key string
	// Document is DocumentInvoice or DocumentSalesReceipt.
	Document string
	// AgentAs is AgentAsClass or AgentAsVendor.
	AgentAs  string
	Payer    Party
	Agent    Agent
	Property string
	// Date is the closing's date, YYYY-MM-DD.
	Date     string
	Currency string
	// Lines add up to the document's total.
	Lines []Line
	// Memo is free text for a person: the transaction, its TMS and the lead.
	Memo string
	// PayoutMinor, when above zero, books a Bill to the agent's Vendor for
	// their payout.
	PayoutMinor int64
}

// Booked is what a booking left in the ledger.
type Booked struct {
	// CompanyID is the ledger's company (QuickBooks' realm id).
	CompanyID      string
	Document       string
	DocumentID     string
	DocumentNumber string
	CustomerID     string
	// AgentLedgerID is the Class or Vendor the document names.
	AgentLedgerID string
	VendorID      string
	BillID        string
	TotalMinor    int64
}

// Ledger is what every adapter implements.
type Ledger interface {
	Name() string
	// Book books b, or returns what an earlier call with the same b.Key
	// booked.
	Book(ctx context.Context, b Booking) (Booked, error)
}
