// Package ledgertest is the contract every ledger adapter passes: the same
// suite runs against each adapter (ledger/quickbooks), talking over real
// HTTP to the sandbox.
package ledgertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/ledger"
)

// Document is an Invoice, SalesReceipt or Bill as the backend holds it.
type Document struct {
	ID, Type string
	// Party is the Customer's (or for a Bill the Vendor's) id and name.
	PartyID, PartyName string
	// Class is the document's class id; Agent what names the agent
	// otherwise (a custom field).
	Class, Agent string
	Property     string
	Lines        []Line
	TotalMinor   int64
}

// Line is one line of a Document.
type Line struct {
	Item        string
	AmountMinor int64
}

// Party is a Customer or Vendor as the backend holds it.
type Party struct {
	ID, Name, Email string
}

// Backend is the ledger company behind an adapter, as a test sees it.
type Backend interface {
	// Documents are the Invoices and SalesReceipts; Bills the Bills.
	Documents(t *testing.T) []Document
	Bills(t *testing.T) []Document
	Customers(t *testing.T) []Party
	// TakeName makes another party (not the booking's) use name.
	TakeName(t *testing.T, name string)
	// ExpireToken makes the access token expired, as time does.
	ExpireToken(t *testing.T)
	// Revoke makes the refresh token refused (invalid_grant), as a user who
	// disconnects the app does.
	Revoke(t *testing.T)
	// Throttle makes the next call answer the ledger's throttle.
	Throttle(t *testing.T)
	// Refreshes is how many token refreshes the ledger granted.
	Refreshes(t *testing.T) int
}

// Factory returns an adapter on a fresh, empty company and its backend.
type Factory func(t *testing.T) (ledger.Ledger, Backend)

var seq atomic.Int64

// NewBooking is a closing of 12 Main St paid by Ada Lovelace to agent Grace
// Hopper: a $15,750.00 gross commission in three lines, booked as an
// invoice with the agent as a class. Its key is unique.
func NewBooking() ledger.Booking {
	n := seq.Add(1)
	return ledger.Booking{
		Key: fmt.Sprintf("dotloop:%d", 34000+n), Document: ledger.DocumentInvoice, AgentAs: ledger.AgentAsClass,
		Payer:    ledger.Party{Key: fmt.Sprintf("contact-%d", n), DisplayName: "Ada Lovelace", Email: fmt.Sprintf("ada%d@example.com", n), Phone: "+14155550134"},
		Agent:    ledger.Agent{ID: "agent-7", Name: "Grace Hopper", Email: "grace@brokerage.example"},
		Property: "12 Main St, Springfield, IL 62701", Date: "2026-12-01", Currency: "USD",
		Lines: []ledger.Line{
			{Kind: ledger.KindAgentShare, Item: "Commission income", Description: "Agent share", AmountMinor: 1_102_500},
			{Kind: ledger.KindBrokerageShare, Item: "Commission income", Description: "Brokerage share", AmountMinor: 422_500},
			{Kind: ledger.KindTransactionFee, Item: "Transaction fee", Description: "Transaction fee", AmountMinor: 50_000},
		},
		Memo: "Loop 34001 (dotloop)",
	}
}

func total(b ledger.Booking) int64 {
	var sum int64
	for _, l := range b.Lines {
		sum += l.AmountMinor
	}
	return sum
}

// Run runs the contract suite against the adapters newLedger makes.
func Run(t *testing.T, newLedger Factory) {
	t.Helper()
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}

	t.Run("book_twice_with_one_key_makes_one_document", func(t *testing.T) {
		t.Parallel()
		l, be := newLedger(t)
		b := NewBooking()
		first, err := l.Book(ctx(t), b)
		if err != nil {
			t.Fatal(err)
		}
		again, err := l.Book(ctx(t), b)
		if err != nil {
			t.Fatal(err)
		}
		if first.DocumentID == "" || again.DocumentID != first.DocumentID || again.CustomerID != first.CustomerID {
			t.Fatalf("booked %+v, then %+v", first, again)
		}
		docs := be.Documents(t)
		if len(docs) != 1 || len(be.Customers(t)) != 1 {
			t.Fatalf("%d documents and %d customers, want 1 and 1: %+v", len(docs), len(be.Customers(t)), docs)
		}
		d := docs[0]
		if d.ID != first.DocumentID || d.PartyID != first.CustomerID || d.PartyName != "Ada Lovelace" || d.Type != ledger.DocumentInvoice {
			t.Fatalf("document %+v, booked %+v", d, first)
		}
		if d.TotalMinor != total(b) || first.TotalMinor != total(b) || len(d.Lines) != len(b.Lines) {
			t.Fatalf("document %+v, want %d in %d lines", d, total(b), len(b.Lines))
		}
		for i, l := range b.Lines {
			if d.Lines[i].Item != l.Item || d.Lines[i].AmountMinor != l.AmountMinor {
				t.Fatalf("line %d = %+v, want %+v", i, d.Lines[i], l)
			}
		}
		if d.Class == "" || d.Class != first.AgentLedgerID || !strings.Contains(d.Property, "12 Main St") {
			t.Fatalf("agent class %q (booked %q), property %q", d.Class, first.AgentLedgerID, d.Property)
		}
	})

	t.Run("a_second_booking_of_the_same_payer_reuses_the_customer", func(t *testing.T) {
		t.Parallel()
		l, be := newLedger(t)
		a := NewBooking()
		b := NewBooking()
		b.Payer = a.Payer
		first, err := l.Book(ctx(t), a)
		if err != nil {
			t.Fatal(err)
		}
		second, err := l.Book(ctx(t), b)
		if err != nil {
			t.Fatal(err)
		}
		if second.CustomerID != first.CustomerID || second.DocumentID == first.DocumentID || len(be.Documents(t)) != 2 || len(be.Customers(t)) != 1 {
			t.Fatalf("booked %+v then %+v; %d customers", first, second, len(be.Customers(t)))
		}
	})

	t.Run("a_name_taken_by_another_party_gets_the_payer_key", func(t *testing.T) {
		t.Parallel()
		l, be := newLedger(t)
		b := NewBooking()
		be.TakeName(t, b.Payer.DisplayName)
		booked, err := l.Book(ctx(t), b)
		if err != nil {
			t.Fatal(err)
		}
		cs := be.Customers(t)
		i := slices.IndexFunc(cs, func(p Party) bool { return p.ID == booked.CustomerID })
		if i < 0 || cs[i].Email != b.Payer.Email || !strings.Contains(cs[i].Name, b.Payer.Key) {
			t.Fatalf("customer %s among %+v: want a new one, named with %q", booked.CustomerID, cs, b.Payer.Key)
		}
		if again, err := l.Book(ctx(t), b); err != nil || again.CustomerID != booked.CustomerID || len(be.Documents(t)) != 1 {
			t.Fatalf("again: %+v, %v; %d documents", again, err, len(be.Documents(t)))
		}
	})

	t.Run("payout_books_a_bill_to_the_agent_vendor", func(t *testing.T) {
		t.Parallel()
		l, be := newLedger(t)
		b := NewBooking()
		b.PayoutMinor = 1_102_500
		booked, err := l.Book(ctx(t), b)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Book(ctx(t), b); err != nil {
			t.Fatal(err)
		}
		bills := be.Bills(t)
		if booked.BillID == "" || booked.VendorID == "" || len(bills) != 1 {
			t.Fatalf("booked %+v; bills %+v", booked, bills)
		}
		if bills[0].ID != booked.BillID || bills[0].PartyID != booked.VendorID || bills[0].PartyName != b.Agent.Name || bills[0].TotalMinor != b.PayoutMinor {
			t.Fatalf("bill %+v, booked %+v", bills[0], booked)
		}
		if booked.AgentLedgerID == booked.VendorID {
			t.Fatalf("agent as class, yet the document names the vendor: %+v", booked)
		}
	})

	t.Run("no_payout_no_bill", func(t *testing.T) {
		t.Parallel()
		l, be := newLedger(t)
		booked, err := l.Book(ctx(t), NewBooking())
		if err != nil {
			t.Fatal(err)
		}
		if booked.BillID != "" || len(be.Bills(t)) != 0 {
			t.Fatalf("booked %+v with bills %+v", booked, be.Bills(t))
		}
	})

	t.Run("agent_as_vendor_on_a_sales_receipt", func(t *testing.T) {
		t.Parallel()
		l, be := newLedger(t)
		b := NewBooking()
		b.AgentAs, b.Document = ledger.AgentAsVendor, ledger.DocumentSalesReceipt
		booked, err := l.Book(ctx(t), b)
		if err != nil {
			t.Fatal(err)
		}
		docs := be.Documents(t)
		if len(docs) != 1 || docs[0].Type != ledger.DocumentSalesReceipt || booked.Document != ledger.DocumentSalesReceipt {
			t.Fatalf("documents %+v", docs)
		}
		if booked.VendorID == "" || booked.AgentLedgerID != booked.VendorID || docs[0].Class != "" || !strings.Contains(docs[0].Agent, b.Agent.Name) {
			t.Fatalf("booked %+v, document %+v: want the agent's vendor named, no class", booked, docs[0])
		}
	})

	t.Run("token_expired_mid_run_is_refreshed", func(t *testing.T) {
		t.Parallel()
		l, be := newLedger(t)
		if _, err := l.Book(ctx(t), NewBooking()); err != nil {
			t.Fatal(err)
		}
		be.ExpireToken(t)
		if _, err := l.Book(ctx(t), NewBooking()); err != nil {
			t.Fatalf("after the token expired: %v", err)
		}
		if n := be.Refreshes(t); n != 1 || len(be.Documents(t)) != 2 {
			t.Fatalf("%d refreshes, %d documents; want 1 and 2", n, len(be.Documents(t)))
		}
	})

	t.Run("throttle_is_throttled_with_retry_after", func(t *testing.T) {
		t.Parallel()
		l, be := newLedger(t)
		be.Throttle(t)
		_, err := l.Book(ctx(t), NewBooking())
		var ra *bus.RetryAfterError
		if !errors.As(err, &ra) || !ra.Throttle || ra.After < time.Minute {
			t.Fatalf("error %v (%T): want bus.Throttled with at least 60 s", err, err)
		}
		if code := bus.ReasonCode(err, bus.Transient); code != ledger.Area+".rate_limited" || bus.DefaultClassify(err) != bus.Transient {
			t.Fatalf("reason code %q, class %v", code, bus.DefaultClassify(err))
		}
	})

	t.Run("invalid_grant_says_to_reconnect", func(t *testing.T) {
		t.Parallel()
		l, be := newLedger(t)
		be.ExpireToken(t)
		be.Revoke(t)
		_, err := l.Book(ctx(t), NewBooking())
		if !errors.Is(err, ledger.ErrReconnect) || bus.DefaultClassify(err) != bus.Permanent || !strings.Contains(err.Error(), "brokerflow connect") {
			t.Fatalf("error %v (class %v): want ledger.ErrReconnect, permanent, naming the command", err, bus.DefaultClassify(err))
		}
		if len(be.Documents(t)) != 0 {
			t.Fatal("booked without a token")
		}
	})

	t.Run("incomplete_booking_is_permanent_and_books_nothing", func(t *testing.T) {
		t.Parallel()
		l, be := newLedger(t)
		b := NewBooking()
		b.Lines = nil
		_, err := l.Book(ctx(t), b)
		if err == nil || bus.DefaultClassify(err) != bus.Permanent || !strings.Contains(err.Error(), "lines") {
			t.Fatalf("error %v: want permanent, saying the lines are missing", err)
		}
		if len(be.Documents(t)) != 0 || len(be.Customers(t)) != 0 {
			t.Fatal("an incomplete booking created something")
		}
	})
}
