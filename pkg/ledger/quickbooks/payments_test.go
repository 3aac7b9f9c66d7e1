package quickbooks_test

import (
	"errors"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/ledger/ledgertest"
	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// TestQuickBooks_paymentsDocumentsAndChanges: a booked invoice paid in two
// parts reads back as two payments each applied to it, the invoice's
// balance after each, its linked payments, and the Change Data Capture of
// Payment and Invoice since before the second payment; a payment that does
// not exist is ledger.ErrNotFound.
func TestQuickBooks_paymentsDocumentsAndChanges(t *testing.T) {
	t.Parallel()
	e := ledgertest.NewQuickBooksEnv(t, sandbox.QuickBooksOptions{})
	ctx := natstest.Context(t, 30*time.Second)
	a := quickbooks.New(e.Config, e.Store)
	booking := ledgertest.NewBooking()
	booked, err := a.Book(ctx, booking)
	if err != nil {
		t.Fatal(err)
	}
	company, err := a.Company(ctx)
	if err != nil || company != realm {
		t.Fatalf("company %q, %v", company, err)
	}
	qb := e.Sandbox.QuickBooks()
	first, err := qb.RecordPayment(realm, booked.DocumentID, 100_000, "2026-03-01")
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Payment(ctx, realm, first.String("Id"))
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.Applied{Document: ledger.DocumentInvoice, DocumentID: booked.DocumentID, AmountMinor: 100_000}
	if p.ID != first.String("Id") || p.Date != "2026-03-01" || p.TotalMinor != 100_000 || len(p.Applied) != 1 || p.Applied[0] != want {
		t.Fatalf("payment %+v", p)
	}
	d, err := a.Document(ctx, realm, ledger.DocumentInvoice, booked.DocumentID)
	if err != nil || d.TotalMinor != booked.TotalMinor || d.BalanceMinor != booked.TotalMinor-100_000 || len(d.Payments) != 1 || d.Payments[0] != p.ID {
		t.Fatalf("document %+v, %v", d, err)
	}
	// The document names the booking that made it (its private note's
	// last line), which leads a payment back to it before its record.
	if d.BookingKey != booking.Key {
		t.Fatalf("document's booking key %q, want %q", d.BookingKey, booking.Key)
	}

	since := time.Now().Add(-time.Second)
	second, err := qb.RecordPayment(realm, booked.DocumentID, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	changes, err := a.ChangedSince(ctx, realm, []string{"Payment", "Invoice"}, since)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range changes {
		if c.Company != realm || c.At.IsZero() {
			t.Errorf("change %+v", c)
		}
		seen[c.Entity+" "+c.ID] = true
	}
	if !seen["Payment "+second.String("Id")] || !seen["Invoice "+booked.DocumentID] {
		t.Fatalf("changes since the second payment: %+v", changes)
	}
	if d, _ := a.Document(ctx, realm, ledger.DocumentInvoice, booked.DocumentID); d.BalanceMinor != 0 || len(d.Payments) != 2 {
		t.Fatalf("after the rest: %+v", d)
	}
	if _, err := a.Payment(ctx, realm, "999999"); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("a payment that does not exist: %v", err)
	}
}
