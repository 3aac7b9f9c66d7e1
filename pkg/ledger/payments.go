package ledger

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is wrapped by an error of a read of an entity the ledger does
// not hold (deleted, or never there).
var ErrNotFound = errors.New("ledger: no such entity")

// Payment is a customer's payment as the ledger holds it, with the part of
// it applied to each document.
type Payment struct {
	// Company is the ledger's company (QuickBooks' realm id).
	Company string
	ID      string
	// Date is the payment's date, YYYY-MM-DD.
	Date       string
	TotalMinor int64
	Currency   string
	// Applied are the documents it pays, one entry per document.
	Applied []Applied
}

// Applied is the part of a payment applied to one document.
type Applied struct {
	// Document is DocumentInvoice or DocumentSalesReceipt.
	Document    string
	DocumentID  string
	AmountMinor int64
}

// DocumentState is a booked document as the ledger holds it now.
type DocumentState struct {
	Document     string
	DocumentID   string
	TotalMinor   int64
	BalanceMinor int64
	// Payments are the ids of the payments applied to it, as far as the
	// ledger links them.
	Payments []string
	// BookingKey is the key of the Booking that made the document, as the
	// document records it (Booking.Key); empty for a document Brokerflow
	// did not book.
	BookingKey string
}

// Payments is what an adapter whose ledger reports payments implements
// besides Ledger: reading a payment and a document, and the ledger's change
// feed for when its webhooks are not set up.
type Payments interface {
	// Company is the ledger company Brokerflow is connected to.
	Company(ctx context.Context) (string, error)
	// Payment reads one payment of company.
	Payment(ctx context.Context, company, id string) (Payment, error)
	// Document reads one document (DocumentInvoice or DocumentSalesReceipt)
	// of company.
	Document(ctx context.Context, company, document, id string) (DocumentState, error)
	// ChangedSince lists the entities of company changed at or after since,
	// oldest first, as ids (the ledger's change feed).
	ChangedSince(ctx context.Context, company string, entities []string, since time.Time) ([]Change, error)
}
