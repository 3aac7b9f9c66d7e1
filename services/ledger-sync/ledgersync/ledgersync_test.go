package ledgersync_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/agents"
	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/commission"
	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/ledger/ledgertest"
	"github.com/brokerflow/brokerflow/pkg/logging/logtest"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/pkg/tms/tmstest"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	ledgerv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ledger/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
	tmsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
	"github.com/brokerflow/brokerflow/services/ledger-sync/ledgersync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// standard is the plan of the tests' agent: 70/30 with an $18,000 cap,
// then 100%; a $395 transaction fee and a 6% franchise fee.
var standard = commission.Plan{
	ID: "standard", Default: true, AgentSplitBP: 7000, PostCapAgentSplitBP: 10000, CapMinor: 1_800_000,
	YearStartMonth: 1, YearStartDay: 1, TransactionFeeMinor: 39_500, FranchiseFeeBP: 600, Referral: commission.ReferralOffTheTop,
}

type env struct {
	js    jetstream.JetStream
	sb    *sandbox.Sandbox
	qb    ledgertest.QuickBooksBackend
	api   *dotloop.Dotloop
	pub   *bus.Publisher
	hooks *bus.TestHooks
	logs  *logtest.Buffer
	seq   int
	qbURL string
	reg   *prometheus.Registry
}

// setup runs replicas of ledger-sync against the sandbox's Dotloop and
// QuickBooks Online, both connected as `brokerflow connect` leaves them.
func setup(t *testing.T, replicas int, change func(*ledgersync.Config)) *env {
	t.Helper()
	return setupWindow(t, replicas, time.Hour, change)
}

// setupWindow is setup with the streams' duplicate window.
func setupWindow(t *testing.T, replicas int, window time.Duration, change func(*ledgersync.Config)) *env {
	t.Helper()
	sb := sandbox.New(sandbox.Options{})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close)
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	bcfg := service.ConsumeConfig{RetrySchedule: []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond, 320 * time.Millisecond}}
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: window, AckWait: time.Second, ConsumeConfig: bcfg}.Topology())
	dir, err := agents.New(agents.Agent{ID: "ada", Name: "Ada Agent", Email: "ada.agent@brokerage.example", DotloopProfileID: strconv.Itoa(sandbox.DefaultDotloopProfileID), CommissionPlan: "standard", Default: true})
	if err != nil {
		t.Fatal(err)
	}
	plans, err := commission.New(standard)
	if err != nil {
		t.Fatal(err)
	}
	cfg := ledgersync.Config{
		Ledger: ledgersync.LedgerQuickBooks, QuickBooks: ledgertest.QuickBooksConfig(srv.URL),
		TMS: dotloop.Name, Dotloop: tmstest.DotloopConfig(srv.URL),
		PriceField: "Financials:Purchase/Sale Price", CommissionField: "Financials:Sale Commission Total",
		CloseDateField: "Contract Dates:Closing Date", ReferralField: "Referral:Referral Fee", ReferralSourceField: "Referral:Referral Source",
		PropertySection: "Property Address", Currency: "USD",
		Document: ledger.DocumentInvoice, AgentAs: ledger.AgentAsClass, Payer: ledgersync.PayerClient,
		Concurrency: 2, ShutdownTimeout: 5 * time.Second, Bus: bcfg, Agents: dir, Plans: plans,
	}
	// The adapter's defaults, as the environment gives them.
	cfg.QuickBooks.RateLimit, cfg.QuickBooks.RateWindow, cfg.QuickBooks.PerSecond = 500, time.Minute, 10
	cfg.QuickBooks.IncomeAccount, cfg.QuickBooks.ExpenseAccount = "Services", "Commissions & fees"
	if change != nil {
		change(&cfg)
	}
	dlStore := oauth.NewStore(js, cfg.Dotloop.OAuthConfig())
	tmstest.Connect(t, sb.Dotloop(), dlStore)
	ledgertest.ConnectQuickBooks(t, sb.QuickBooks(), sandbox.DefaultQuickBooksRealm, oauth.NewStore(js, cfg.QuickBooks.OAuthConfig()))
	hooks, logs := &bus.TestHooks{}, &logtest.Buffer{}
	var out io.Writer = logs
	if os.Getenv("LEDGERSYNC_TEST_LOG") != "" {
		out = io.MultiWriter(logs, os.Stderr)
	}
	logger := slog.New(slog.NewTextHandler(out, nil))
	reg := prometheus.NewRegistry()
	for i := range replicas {
		nc, _ := natstest.Connect(t, ns)
		d := service.Deps{NATS: nc, Hooks: hooks, Logger: logger}
		if i == 0 {
			d.Registerer = reg // the first replica's metrics
		}
		s, err := ledgersync.New(cfg, d)
		if err != nil {
			t.Fatal(err)
		}
		natstest.Run(t, s.Run)
	}
	natstest.WaitConsumer(t, js, bus.StreamTMS, "ledger-sync")
	natstest.WaitConsumer(t, js, bus.StreamWebhooks, bus.LedgerSyncPayments.Durable)
	return &env{
		js: js, sb: sb, qb: ledgertest.QuickBooksBackend{Q: sb.QuickBooks(), Realm: sandbox.DefaultQuickBooksRealm},
		api: dotloop.New(cfg.Dotloop, dlStore), pub: bus.NewPublisher(js, "tms-sync", nil), hooks: hooks, logs: logs, qbURL: srv.URL, reg: reg,
	}
}

// soldLoop opens a loop for client in the sandbox's Dotloop, with a
// property, and marks it sold with f.
func (e *env) soldLoop(t *testing.T, client string, f sandbox.DotloopFinancials) tms.Transaction {
	t.Helper()
	ctx := natstest.Context(t, 10*time.Second)
	tx, err := e.api.Open(ctx, tms.Open{
		Profile: strconv.Itoa(sandbox.DefaultDotloopProfileID), Name: client, Type: tms.TypePurchase, Status: "PRE_OFFER",
		Property: &tms.Property{StreetNumber: "2100", StreetName: "Waterview Dr", City: "San Francisco", State: "CA", PostalCode: "94114", Country: "US"},
		Parties: []tms.Party{
			{FullName: client, Email: strings.ToLower(strings.ReplaceAll(client, " ", ".")) + "@example.org", Role: tms.RoleBuyer},
			{FullName: "Ada Agent", Email: "ada.agent@brokerage.example", Role: "BUYING_AGENT"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	id, _ := strconv.ParseInt(tx.ID, 10, 64)
	if err := e.sb.Dotloop().SetLoopStatus(id, sandbox.DotloopSold, f); err != nil {
		t.Fatal(err)
	}
	tx.Status = sandbox.DotloopSold
	return tx
}

// close publishes tx's tms.transaction.closed as tms-sync does, with the
// gross commission (in dollars) the event says; hash tells two closings'
// facts apart.
func (e *env) close(t *testing.T, tx tms.Transaction, grossDollars int64, hash string) {
	t.Helper()
	e.seq++
	ev := &tmsv1.TransactionClosed{
		TransactionId: tx.ID, Tms: dotloop.Name, ProfileId: tx.Profile, Status: sandbox.DotloopSold,
		SalePrice: &commonv1.Money{AmountMinor: 52_500_000, CurrencyCode: "USD"}, CloseDate: "2026-12-01", FactsHash: hash,
		ClosedAt:    timestamppb.Now(),
		Commission:  &tmsv1.Commission{Gross: &commonv1.Money{AmountMinor: grossDollars * 100, CurrencyCode: "USD"}, AgentId: "ada", Side: "buy"},
		Correlation: &commonv1.Correlation{LeadId: "ld_" + tx.ID, ContactId: "c" + tx.ID, TransactionId: tx.ID},
	}
	id := fmt.Sprintf("tms.transaction.closed:dotloop:%s:%s", tx.ID, hash)
	if _, err := e.pub.Publish(natstest.Context(t, 10*time.Second), "tms.transaction.closed", id, ev); err != nil {
		t.Fatal(err)
	}
}

func (e *env) settle(t *testing.T) {
	t.Helper()
	natstest.WaitSettled(t, e.js, bus.StreamTMS, "ledger-sync")
}

func (e *env) booked(t *testing.T) []*ledgerv1.CommissionBooked {
	return natstest.Messages(t, e.js, bus.StreamLedger, ledgersync.SubjectBooked, func() *ledgerv1.CommissionBooked { return &ledgerv1.CommissionBooked{} })
}

func (e *env) failures(t *testing.T) []*opsv1.Failure {
	return natstest.Messages(t, e.js, bus.StreamOps, bus.FailureSubject(bus.ServiceLedgerSync), func() *opsv1.Failure { return &opsv1.Failure{} })
}

// yearToDate is the agent's plan-year total as ledger-sync keeps it.
func (e *env) yearToDate(t *testing.T, agent, year string) (total int64, counted int) {
	t.Helper()
	kv, err := e.js.KeyValue(natstest.Context(t, 5*time.Second), "idempotency")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(natstest.Context(t, 5*time.Second), ledgersync.YearToDateKey(agent, year))
	if err != nil {
		t.Fatalf("the year to date of %s: %v", agent, err)
	}
	var y struct {
		TotalMinor int64                      `json:"total_minor"`
		Counted    map[string]json.RawMessage `json:"counted"`
	}
	if err := json.Unmarshal(entry.Value(), &y); err != nil {
		t.Fatal(err)
	}
	return y.TotalMinor, len(y.Counted)
}

// The split of a $15,750.00 gross by the standard plan from a year to date
// of 0: franchise 6% = 945.00, brokerage 30% of 14,805.00 = 4,441.50, the
// transaction fee 395.00, the agent the remaining 9,968.50.
var wantLines = []ledgertest.Line{
	{Item: "Commission income", AmountMinor: 444_150}, {Item: "Agent commission", AmountMinor: 996_850},
	{Item: "Franchise fee", AmountMinor: 94_500}, {Item: "Transaction fee", AmountMinor: 39_500},
}

// checkOneInvoice checks the company holds exactly one document: tx's,
// with the split's lines, the client as the customer, the agent's Class
// and the property.
func (e *env) checkOneInvoice(t *testing.T) ledgertest.Document {
	t.Helper()
	docs := e.qb.Documents(t)
	if len(docs) != 1 {
		t.Fatalf("%d documents in QuickBooks, want exactly 1: %+v", len(docs), docs)
	}
	d := docs[0]
	if d.Type != ledger.DocumentInvoice || d.TotalMinor != 1_575_000 || d.PartyName != "Grace Hopper" || d.Class == "" ||
		d.Property != "2100 Waterview Dr, San Francisco, CA 94114" || fmt.Sprint(d.Lines) != fmt.Sprint(wantLines) {
		t.Fatalf("document = %+v\nwant lines %+v", d, wantLines)
	}
	var className string
	for _, c := range e.qb.Q.Objects(e.qb.Realm, sandbox.QBClass) {
		if c.String("Id") == d.Class {
			className = c.String("Name")
		}
	}
	if className != "Ada Agent" {
		t.Fatalf("the document's class is %q, want the agent", className)
	}
	return d
}

// TestLedgerSync_booksAClosingOnceWithItsSplit: a closing becomes one
// Invoice in QuickBooks with a line per component of the plan's split, the
// agent's Class and the property, one ledger.commission.booked, and the
// agent's plan-year total counts it.
func TestLedgerSync_booksAClosingOnceWithItsSplit(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	tx := e.soldLoop(t, "Grace Hopper", sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"})
	e.close(t, tx, 15750, "h1")
	natstest.Eventually(t, 30*time.Second, "ledger.commission.booked", func() bool { return len(e.booked(t)) == 1 })
	e.settle(t)
	d := e.checkOneInvoice(t)
	b := e.booked(t)[0]
	if b.GetTransactionId() != tx.ID || b.GetLedger() != "quickbooks" || b.GetCompanyId() != sandbox.DefaultQuickBooksRealm ||
		b.GetDocumentId() != d.ID || b.GetDocumentType() != ledger.DocumentInvoice || b.GetAgentId() != "ada" || b.GetAgentLedgerId() != d.Class ||
		b.GetGross().GetAmountMinor() != 1_575_000 || b.GetAgentShare().GetAmountMinor() != 996_850 || b.GetBrokerageNet().GetAmountMinor() != 483_650 ||
		b.GetPlanId() != "standard" || b.GetAgentYearToDateBefore().GetAmountMinor() != 0 || b.GetAgentYearToDateAfter().GetAmountMinor() != 444_150 ||
		len(b.GetComponents()) != 4 || b.GetFactsHash() != "h1" || b.GetCorrelation().GetLeadId() != "ld_"+tx.ID {
		t.Fatalf("booked = %v", b)
	}
	if total, n := e.yearToDate(t, "ada", "2026-01-01"); total != 444_150 || n != 1 {
		t.Fatalf("year to date %d over %d closings, want 444150 over 1", total, n)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
}

// TestLedgerSync_salesReceiptToTheVendorWithABill: the other document, the
// agent as a Vendor, the title company as the payer, and the agent's payout
// as a Bill.
func TestLedgerSync_salesReceiptToTheVendorWithABill(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, func(c *ledgersync.Config) {
		c.Document, c.AgentAs, c.Payer, c.Bill = ledger.DocumentSalesReceipt, ledger.AgentAsVendor, "Golden Gate Title", true
	})
	tx := e.soldLoop(t, "Grace Hopper", sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"})
	e.close(t, tx, 15750, "h1")
	natstest.Eventually(t, 30*time.Second, "ledger.commission.booked", func() bool { return len(e.booked(t)) == 1 })
	e.settle(t)
	docs, bills := e.qb.Documents(t), e.qb.Bills(t)
	if len(docs) != 1 || len(bills) != 1 {
		t.Fatalf("%d documents and %d bills, want 1 and 1", len(docs), len(bills))
	}
	d, bill := docs[0], bills[0]
	if d.Type != ledger.DocumentSalesReceipt || d.PartyName != "Golden Gate Title" || d.Agent != "Ada Agent" || d.TotalMinor != 1_575_000 {
		t.Fatalf("sales receipt = %+v", d)
	}
	if bill.PartyName != "Ada Agent" || bill.TotalMinor != 996_850 {
		t.Fatalf("bill = %+v, want the agent's share 9,968.50 to Ada Agent", bill)
	}
	if b := e.booked(t)[0]; b.GetBillId() != bill.ID || b.GetAgentLedgerId() != bill.PartyID {
		t.Fatalf("booked = %v", b)
	}
}

// TestLedgerSync_exactlyOnce: whatever happens to the message, one
// Invoice, one event, and the closing counted once in the agent's year to
// date: redelivered after its ack was lost; ledger-sync killed after the
// year to date was counted; killed after the ledger call (the harmful
// point); the same closing announced twice (two message ids).
func TestLedgerSync_exactlyOnce(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		arm  func(e *env)
		// twice publishes the closing again under another message id.
		twice bool
		// replayed says the ledger is called again (and answers with the
		// first call's document): only after a crash between the call and
		// its record. Otherwise the transaction's record says it is booked.
		replayed bool
	}{
		{name: "redelivered", arm: func(e *env) { e.hooks.SkipNextAcksOf("ledger-sync", 1) }},
		{name: "crash_after_year_to_date", arm: func(e *env) { e.hooks.CrashAt(ledgersync.CrashAfterYearToDate, 1) }},
		{name: "crash_after_ledger_call", arm: func(e *env) { e.hooks.CrashAt(ledgersync.CrashAfterLedgerCall, 1) }, replayed: true},
		{name: "announced_twice", arm: func(*env) {}, twice: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, 1, nil)
			c.arm(e)
			tx := e.soldLoop(t, "Grace Hopper", sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"})
			e.close(t, tx, 15750, "h1")
			if c.twice {
				e.close(t, tx, 15750, "h1-again")
			}
			natstest.Eventually(t, 30*time.Second, "ledger.commission.booked", func() bool { return len(e.booked(t)) == 1 })
			e.settle(t)
			e.checkOneInvoice(t)
			for _, p := range []bus.CrashPoint{ledgersync.CrashAfterYearToDate, ledgersync.CrashAfterLedgerCall} {
				if n := e.hooks.Armed("", p); n != 0 {
					t.Fatalf("the crash at %s did not happen", p)
				}
			}
			if n := len(e.booked(t)); n != 1 {
				t.Fatalf("%d ledger.commission.booked, want 1", n)
			}
			if r := e.qb.Q.Replayed(); (r > 0) != c.replayed {
				t.Fatalf("QuickBooks replayed %d creates; want replays: %v", r, c.replayed)
			}
			if total, n := e.yearToDate(t, "ada", "2026-01-01"); total != 444_150 || n != 1 {
				t.Fatalf("year to date %d over %d closings, want 444150 over 1", total, n)
			}
			if f := e.failures(t); len(f) != 0 {
				t.Fatalf("failures %v", f)
			}
		})
	}
}

// TestLedgerSync_twoReplicasAndTheCap: two replicas book five closings of
// one agent, each announced twice, while the access token expires; every
// closing is booked once, and the agent's year to date adds up their
// brokerage shares, crossing the cap once.
func TestLedgerSync_twoReplicasAndTheCap(t *testing.T) {
	t.Parallel()
	// Each replica keeps to half the company's throttle (docs/ledger.md).
	e := setup(t, 2, func(c *ledgersync.Config) { c.QuickBooks.RateLimit, c.QuickBooks.PerSecond = 250, 5 })
	const n = 5
	var txs []tms.Transaction
	for i := range n {
		txs = append(txs, e.soldLoop(t, fmt.Sprintf("Client %c", 'A'+i), sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"}))
	}
	for i, tx := range txs {
		e.close(t, tx, 15750, "h1")
		if i == n/2 {
			e.qb.ExpireToken(t)
		}
	}
	for _, tx := range txs {
		e.close(t, tx, 15750, "h1-again")
	}
	natstest.Eventually(t, 60*time.Second, "every closing booked", func() bool { return len(e.qb.Documents(t)) == n })
	e.settle(t)
	if b := e.booked(t); len(b) != n {
		t.Fatalf("%d ledger.commission.booked, want %d", len(b), n)
	}
	if docs := e.qb.Documents(t); len(docs) != n {
		t.Fatalf("%d documents, want %d", len(docs), n)
	}
	if e.qb.Refreshes(t) == 0 {
		t.Fatal("the expired access token was never refreshed")
	}
	// 4,441.50 a closing: four fit under the $18,000 cap (17,766.00), the
	// fifth adds the 234.00 left.
	total, counted := e.yearToDate(t, "ada", "2026-01-01")
	if total != 1_800_000 || counted != n {
		t.Fatalf("year to date %d over %d closings, want the cap 1800000 over %d", total, counted, n)
	}
	var crossed int
	for _, b := range e.booked(t) {
		before, after := b.GetAgentYearToDateBefore().GetAmountMinor(), b.GetAgentYearToDateAfter().GetAmountMinor()
		if before < 1_800_000 && after == 1_800_000 && after-before < 444_150 {
			crossed++
		}
	}
	if crossed != 1 {
		t.Fatalf("%d closings crossed the cap, want 1", crossed)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
}

// TestLedgerSync_theTMSWins: a closing event whose gross differs from the
// TMS's is booked with the TMS's, and the difference is logged.
func TestLedgerSync_theTMSWins(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	tx := e.soldLoop(t, "Grace Hopper", sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"})
	e.close(t, tx, 9999, "h1")
	natstest.Eventually(t, 30*time.Second, "ledger.commission.booked", func() bool { return len(e.booked(t)) == 1 })
	e.settle(t)
	e.checkOneInvoice(t)
	if l := e.logs.String(); !strings.Contains(l, "the closing event and the TMS disagree") || !strings.Contains(l, "gross_commission=\"9999.00 (event) → 15750.00 (TMS)\"") {
		t.Fatalf("the difference is not logged:\n%s", l)
	}
}

// TestLedgerSync_correctionIsAFailureNotABooking: the same transaction
// closed again with another commission is not booked again: a failure
// record shows what was booked and what the TMS now says.
func TestLedgerSync_correctionIsAFailureNotABooking(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	tx := e.soldLoop(t, "Grace Hopper", sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"})
	e.close(t, tx, 15750, "h1")
	natstest.Eventually(t, 30*time.Second, "ledger.commission.booked", func() bool { return len(e.booked(t)) == 1 })
	id, _ := strconv.ParseInt(tx.ID, 10, 64)
	if err := e.sb.Dotloop().SetLoopStatus(id, sandbox.DotloopSold, sandbox.DotloopFinancials{Price: 525000, Commission: 16000, CloseDate: "2026-12-01"}); err != nil {
		t.Fatal(err)
	}
	e.close(t, tx, 16000, "h2")
	natstest.Eventually(t, 30*time.Second, "a failure record", func() bool { return len(e.failures(t)) == 1 })
	e.settle(t)
	f := e.failures(t)[0]
	if f.GetReasonCode() != "ledger.correction" || f.GetClass() != opsv1.ErrorClass_ERROR_CLASS_PERMANENT ||
		!strings.Contains(f.GetReason(), "gross 15750.00") || !strings.Contains(f.GetReason(), "gross 16000.00") || !strings.Contains(f.GetReason(), "booked as invoice") {
		t.Fatalf("failure = %v", f)
	}
	e.checkOneInvoice(t)
	if n := len(e.booked(t)); n != 1 {
		t.Fatalf("%d ledger.commission.booked, want 1", n)
	}
	if total, n := e.yearToDate(t, "ada", "2026-01-01"); total != 444_150 || n != 1 {
		t.Fatalf("year to date %d over %d closings", total, n)
	}
}

// TestLedgerSync_permanentFailures: what cannot be booked is a failure
// record that says why, and nothing is booked.
func TestLedgerSync_permanentFailures(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		fin      sandbox.DotloopFinancials
		before   func(e *env)
		after    func(t *testing.T, e *env, tx tms.Transaction)
		code     string
		contains string
	}{
		{name: "no_commission", fin: sandbox.DotloopFinancials{Price: 525000, CloseDate: "2026-12-01"}, code: "ledger.closing_incomplete", contains: "gross commission (Financials:Sale Commission Total)"},
		{
			name: "reconnect", fin: sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"},
			before: func(e *env) { e.qb.ExpireToken(nil); e.qb.Revoke(nil) }, code: "ledger.reconnect", contains: "brokerflow connect quickbooks",
		},
		{
			name: "no_longer_sold", fin: sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"},
			after: func(t *testing.T, e *env, tx tms.Transaction) {
				id, _ := strconv.ParseInt(tx.ID, 10, 64)
				if err := e.sb.Dotloop().SetLoopStatus(id, sandbox.DotloopUnderContract, sandbox.DotloopFinancials{}); err != nil {
					t.Fatal(err)
				}
			},
			code: "ledger.not_closed", contains: "not SOLD",
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, 1, nil)
			if c.before != nil {
				c.before(e)
			}
			tx := e.soldLoop(t, "Grace Hopper", c.fin)
			if c.after != nil {
				c.after(t, e, tx)
			}
			e.close(t, tx, 15750, "h1")
			natstest.Eventually(t, 30*time.Second, "a failure record", func() bool { return len(e.failures(t)) == 1 })
			e.settle(t)
			f := e.failures(t)[0]
			if f.GetReasonCode() != c.code || !strings.Contains(f.GetReason(), c.contains) || f.GetClass() != opsv1.ErrorClass_ERROR_CLASS_PERMANENT {
				t.Fatalf("failure = %v; want %s saying %q", f, c.code, c.contains)
			}
			if docs, b := e.qb.Documents(t), e.booked(t); len(docs) != 0 || len(b) != 0 {
				t.Fatalf("%d documents and %d bookings, want none", len(docs), len(b))
			}
		})
	}
}

// TestLedgerSync_throttlePausesTheConsumer: QuickBooks' XML throttle fault
// pauses the consumer, and the closing is booked after it, once.
func TestLedgerSync_throttlePausesTheConsumer(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	e.qb.Q.InjectFault(sandbox.Fault{Status: http.StatusTooManyRequests, Body: ledgertest.ThrottleXML, RetryAfter: 2})
	tx := e.soldLoop(t, "Grace Hopper", sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"})
	e.close(t, tx, 15750, "h1")
	natstest.Eventually(t, 30*time.Second, "the consumer paused", func() bool {
		cons, err := e.js.Consumer(natstest.Context(t, 5*time.Second), bus.StreamTMS, "ledger-sync")
		if err != nil {
			return false
		}
		info, err := cons.Info(natstest.Context(t, 5*time.Second))
		return err == nil && info.Paused
	})
	natstest.Eventually(t, 30*time.Second, "ledger.commission.booked", func() bool { return len(e.booked(t)) == 1 })
	e.settle(t)
	e.checkOneInvoice(t)
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
}

// TestLedgerSync_aClosingWhoseTMSGivesNoCommissionBooksNothing: a SkySlope
// closing says its commission is unavailable; it is the rule for missing
// financials, a failure record that says why, and nothing is booked, with
// LEDGERSYNC_TMS=skyslope (no TMS read) as with Dotloop.
func TestLedgerSync_aClosingWhoseTMSGivesNoCommissionBooksNothing(t *testing.T) {
	t.Parallel()
	for _, tmsName := range []string{dotloop.Name, "skyslope"} {
		t.Run(tmsName, func(t *testing.T) {
			t.Parallel()
			testNoCommission(t, setup(t, 1, func(c *ledgersync.Config) { c.TMS = tmsName }))
		})
	}
}

func testNoCommission(t *testing.T, e *env) {
	t.Helper()
	why := "gross commission: skyslope's public API does not expose commission fields"
	ev := &tmsv1.TransactionClosed{
		TransactionId: "sale-1", Tms: "skyslope", Status: "Closed",
		SalePrice: &commonv1.Money{AmountMinor: 52_500_000, CurrencyCode: "USD"}, CloseDate: "2026-12-01", FactsHash: "h1",
		ClosedAt:   timestamppb.Now(),
		Commission: &tmsv1.Commission{Unavailable: why},
	}
	if _, err := e.pub.Publish(natstest.Context(t, 10*time.Second), "tms.transaction.closed", "tms.transaction.closed:skyslope:sale-1:h1", ev); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "a failure record", func() bool { return len(e.failures(t)) == 1 })
	e.settle(t)
	f := e.failures(t)[0]
	if f.GetReasonCode() != "ledger.closing_incomplete" || !strings.Contains(f.GetReason(), why) || f.GetClass() != opsv1.ErrorClass_ERROR_CLASS_PERMANENT {
		t.Fatalf("failure = %v; want ledger.closing_incomplete saying %q", f, why)
	}
	if docs, b := e.qb.Documents(t), e.booked(t); len(docs) != 0 || len(b) != 0 {
		t.Fatalf("%d documents and %d bookings, want none", len(docs), len(b))
	}
}
