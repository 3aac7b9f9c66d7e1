package quickbooks_test

import (
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/ledger/ledgertest"
	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

const realm = sandbox.DefaultQuickBooksRealm

// TestQuickBooks_contract runs the ledger contract against the sandbox's
// QuickBooks Online.
func TestQuickBooks_contract(t *testing.T) {
	t.Parallel()
	ledgertest.Run(t, ledgertest.QuickBooks)
}

// TestQuickBooks_everyCallHasMinorVersion75AndEveryCreateARequestID: the
// calls of a booking, as the sandbox saw them.
func TestQuickBooks_everyCallHasMinorVersion75AndEveryCreateARequestID(t *testing.T) {
	t.Parallel()
	e := ledgertest.NewQuickBooksEnv(t, sandbox.QuickBooksOptions{})
	var mu sync.Mutex
	var calls []sandbox.Call
	e.Sandbox.QuickBooks().OnCall(func(c sandbox.Call) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, c)
	})
	b := ledgertest.NewBooking()
	b.PayoutMinor = 100_000
	if _, err := quickbooks.New(e.Config, e.Store).Book(natstest.Context(t, 30*time.Second), b); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	creates := map[string]string{}
	for _, c := range calls {
		if c.Query.Get("minorversion") != "75" {
			t.Errorf("%s %s?%s without minorversion=75", c.Method, c.Path, c.Query.Encode())
		}
		if c.Method == http.MethodPost {
			id := c.Query.Get("requestid")
			if id == "" || len(id) > 50 {
				t.Errorf("create %s with requestid %q", c.Path, id)
			}
			if other, dup := creates[id]; dup {
				t.Errorf("requestid %s on %s and %s", id, other, c.Path)
			}
			creates[id] = c.Path
		}
	}
	// Customer, class, vendor, two items, invoice, bill.
	if len(creates) != 7 {
		t.Fatalf("%d creates: %v", len(creates), creates)
	}
}

// TestQuickBooks_retryAfterAFailedDocumentBooksOnce: the invoice's create
// fails (the answer of a crash or a timeout); the booking's retry reuses
// the customer, class and items and makes one invoice.
func TestQuickBooks_retryAfterAFailedDocumentBooksOnce(t *testing.T) {
	t.Parallel()
	e := ledgertest.NewQuickBooksEnv(t, sandbox.QuickBooksOptions{})
	q := e.Sandbox.QuickBooks()
	q.InjectFault(sandbox.Fault{Method: http.MethodPost, Path: "/v3/company/" + realm + "/invoice", Status: http.StatusServiceUnavailable})
	ctx := natstest.Context(t, 30*time.Second)
	b := ledgertest.NewBooking()
	a := quickbooks.New(e.Config, e.Store)
	if _, err := a.Book(ctx, b); err == nil || bus.DefaultClassify(err) != bus.Transient {
		t.Fatalf("first Book: %v, want a transient error", err)
	}
	booked, err := a.Book(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	for entity, want := range map[string]int{sandbox.QBInvoice: 1, sandbox.QBCustomer: 1, sandbox.QBClass: 1, sandbox.QBItem: 2} {
		if n := len(q.Objects(realm, entity)); n != want {
			t.Errorf("%d %s, want %d", n, entity, want)
		}
	}
	if booked.DocumentID != q.Objects(realm, sandbox.QBInvoice)[0].String("Id") {
		t.Fatalf("booked %+v", booked)
	}
}

// TestQuickBooks_payerWithoutEmailIsFoundByNameAndKey: a payer without an
// email is recognized by the key kept on its customer; another payer of
// the same name gets their own.
func TestQuickBooks_payerWithoutEmailIsFoundByNameAndKey(t *testing.T) {
	t.Parallel()
	e := ledgertest.NewQuickBooksEnv(t, sandbox.QuickBooksOptions{})
	ctx := natstest.Context(t, 30*time.Second)
	a := quickbooks.New(e.Config, e.Store)
	book := func(payerKey string) ledger.Booked {
		t.Helper()
		b := ledgertest.NewBooking()
		b.Payer = ledger.Party{Key: payerKey, DisplayName: "Sam Smith"}
		out, err := a.Book(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	first, again, other := book("contact-1"), book("contact-1"), book("contact-2")
	if first.CustomerID != again.CustomerID || other.CustomerID == first.CustomerID {
		t.Fatalf("customers %s, %s, %s: want the first two equal and the third new", first.CustomerID, again.CustomerID, other.CustomerID)
	}
	cs := e.Sandbox.QuickBooks().Objects(realm, sandbox.QBCustomer)
	if len(cs) != 2 || cs[1].String("DisplayName") != "Sam Smith (contact-2)" {
		t.Fatalf("customers %v", cs)
	}
}

// TestQuickBooks_twoReplicasRefreshingAtOnceDoNotEndInInvalidGrant: with
// the sandbox refusing a rotated refresh token at once (no grace), two
// adapters on two connections meet the expired token together; one
// refreshes, the other uses its token (pkg/oauth's compare-and-swap claim).
func TestQuickBooks_twoReplicasRefreshingAtOnceDoNotEndInInvalidGrant(t *testing.T) {
	t.Parallel()
	e := ledgertest.NewQuickBooksEnv(t, sandbox.QuickBooksOptions{RotatedRefreshGrace: -1})
	q := e.Sandbox.QuickBooks()
	ctx := natstest.Context(t, 60*time.Second)
	q.ExpireAccessTokens()
	// A slow token endpoint: both replicas find the expired token before
	// either has stored a new one.
	q.InjectFault(sandbox.Fault{Path: "/oauth2/v1/tokens/bearer", Latency: 300 * time.Millisecond, Count: 2})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	// The replicas split the company's quota, as docs/ledger.md says.
	cfg := e.Config
	cfg.PerSecond, cfg.RateLimit = 5, 250
	for i := range errs {
		_, js := natstest.Connect(t, e.Server)
		a := quickbooks.New(cfg, oauth.NewStore(js, cfg.OAuthConfig()))
		wg.Go(func() { _, errs[i] = a.Book(ctx, ledgertest.NewBooking()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	if _, refreshes := q.TokenCounts(); refreshes != 1 || len(q.Objects(realm, sandbox.QBInvoice)) != 2 {
		t.Fatalf("%d refreshes and %d invoices, want 1 and 2", refreshes, len(q.Objects(realm, sandbox.QBInvoice)))
	}
}

// TestQuickBooks_closingsBookedBackToBackAreNotThrottled: three closings
// booked at once by one adapter stay within the sandbox's 10 a second.
func TestQuickBooks_closingsBookedBackToBackAreNotThrottled(t *testing.T) {
	t.Parallel()
	e := ledgertest.NewQuickBooksEnv(t, sandbox.QuickBooksOptions{})
	a := quickbooks.New(e.Config, e.Store)
	ctx := natstest.Context(t, 60*time.Second)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { _, errs[i] = a.Book(ctx, ledgertest.NewBooking()) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	// How many calls three bookings make depends on which of them finds
	// the customer and the items the others created (19 to 34 seen); more
	// than a second's 10 is what makes the pacing matter.
	if u := e.Sandbox.QuickBooks().Usage(); u.Refused != 0 || u.Counted <= 10 {
		t.Fatalf("usage %+v: want more than 10 calls, none refused", u)
	}
}

// TestQuickBooks_invalidGrantNamesTheCommand: the error of a refused
// refresh token.
func TestQuickBooks_invalidGrantNamesTheCommand(t *testing.T) {
	t.Parallel()
	e := ledgertest.NewQuickBooksEnv(t, sandbox.QuickBooksOptions{})
	e.Sandbox.QuickBooks().ExpireAccessTokens()
	e.Sandbox.QuickBooks().RevokeRefreshTokens()
	_, err := quickbooks.New(e.Config, e.Store).Book(natstest.Context(t, 30*time.Second), ledgertest.NewBooking())
	if !errors.Is(err, ledger.ErrReconnect) || !strings.Contains(err.Error(), "run `brokerflow connect quickbooks`") || bus.ReasonCode(err, bus.Permanent) != "ledger.oauth_invalid_grant" {
		t.Fatalf("error %v, code %q", err, bus.ReasonCode(err, bus.Permanent))
	}
}

// TestQuickBooks_incompleteBookingsSayWhatIsMissing: a booking the adapter
// cannot book is a permanent failure naming what is missing, and makes no
// call.
func TestQuickBooks_incompleteBookingsSayWhatIsMissing(t *testing.T) {
	t.Parallel()
	e := ledgertest.NewQuickBooksEnv(t, sandbox.QuickBooksOptions{})
	a := quickbooks.New(e.Config, e.Store)
	for name, tc := range map[string]struct {
		edit func(*ledger.Booking)
		want string
	}{
		"no_key":                   {func(b *ledger.Booking) { b.Key = "" }, "key"},
		"no_payer":                 {func(b *ledger.Booking) { b.Payer.DisplayName = "" }, "the payer's name"},
		"class_without_agent_name": {func(b *ledger.Booking) { b.Agent.Name, b.Agent.LedgerID = "", "57" }, "the agent's name"},
		"line_without_item":        {func(b *ledger.Booking) { b.Lines[1].Item = "" }, "line 2's item"},
		"unknown_document":         {func(b *ledger.Booking) { b.Document = "receipt" }, "document"},
		"unknown_agent_attachment": {func(b *ledger.Booking) { b.AgentAs = "tag" }, "agent_as"},
	} {
		t.Run(name, func(t *testing.T) {
			b := ledgertest.NewBooking()
			tc.edit(&b)
			_, err := a.Book(natstest.Context(t, 10*time.Second), b)
			if err == nil || bus.DefaultClassify(err) != bus.Permanent || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v: want permanent, naming %q", err, tc.want)
			}
		})
	}
	if u := e.Sandbox.QuickBooks().Usage(); u.Counted != 0 {
		t.Fatalf("%d calls for bookings that cannot be booked", u.Counted)
	}
}
