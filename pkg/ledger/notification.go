package ledger

import "time"

// Change is one entity the ledger says changed, as its webhook or its change
// feed names it: ids only, the entity is read afterwards.
type Change struct {
	// Company is the ledger's company (QuickBooks' realm id).
	Company string
	// Entity is the entity's type as the ledger names it: "Payment",
	// "Invoice", "SalesReceipt".
	Entity string
	ID     string
	// Operation is "Create", "Update", "Delete", "Merge", "Void" or
	// "Emailed".
	Operation string
	// At is when the ledger says the entity changed.
	At time.Time
	// EventID is the ledger's id of the notification, when it has one
	// (a CloudEvent's id).
	EventID string
}
