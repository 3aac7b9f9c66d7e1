package ledgersync_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	ledgerv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ledger/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/ledger-sync/ledgersync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

const realm = sandbox.DefaultQuickBooksRealm

// bookOne books one closing of $15,750.00 and returns its invoice's id.
func (e *env) bookOne(t *testing.T) string {
	t.Helper()
	tx := e.soldLoop(t, "Grace Hopper", sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"})
	e.close(t, tx, 15750, "h1")
	natstest.Eventually(t, 30*time.Second, "ledger.commission.booked", func() bool { return len(e.booked(t)) == 1 })
	e.settle(t)
	return e.booked(t)[0].GetDocumentId()
}

// hooksTo makes the sandbox's QuickBooks send its webhooks in format to a
// receiver that answers 200, and returns nothing: the tests take each
// body the sandbox signed from its deliveries.
func (e *env) hooksTo(t *testing.T, format string) {
	t.Helper()
	sink := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(sink.Close)
	if err := e.sb.QuickBooks().SetWebhooks(sandbox.QBWebhooks{URL: sink.URL, VerifierToken: "vt", Format: format, Enabled: true}); err != nil {
		t.Fatal(err)
	}
}

// pay records a payment in the sandbox's QuickBooks and returns the body of
// the webhook it sent.
func (e *env) pay(t *testing.T, invoice string, cents int64) (paymentID, body string) {
	t.Helper()
	p, err := e.sb.QuickBooks().RecordPayment(realm, invoice, cents, "2026-12-15")
	if err != nil {
		t.Fatal(err)
	}
	d := e.sb.QuickBooks().Deliveries()
	if len(d) == 0 {
		return p.String("Id"), ""
	}
	return p.String("Id"), d[len(d)-1].Body
}

// notify stores body in WEBHOOKS as the gateway stores a verified QuickBooks
// webhook; id tells two deliveries apart.
func (e *env) notify(t *testing.T, body, id string) {
	t.Helper()
	wr := &webhookv1.WebhookReceived{Source: "quickbooks", Kind: webhookv1.Kind_KIND_LEDGER, DeliveryId: id, Body: []byte(body), ReceivedAt: timestamppb.Now()}
	if _, err := e.pub.Publish(natstest.Context(t, 10*time.Second), "webhook.received.ledger.quickbooks", "webhook:quickbooks:"+id, wr); err != nil {
		t.Fatal(err)
	}
}

func (e *env) settlePayments(t *testing.T) {
	t.Helper()
	natstest.WaitSettled(t, e.js, bus.StreamWebhooks, bus.LedgerSyncPayments.Durable)
}

func (e *env) paid(t *testing.T) []*ledgerv1.CommissionPaid {
	return natstest.Messages(t, e.js, bus.StreamLedger, ledgersync.SubjectPaid, func() *ledgerv1.CommissionPaid { return &ledgerv1.CommissionPaid{} })
}

// TestPayments_bothWebhookFormatsAnnounceOnce: a closing is booked; its
// invoice is paid in full in the sandbox's QuickBooks, whose webhook (legacy,
// or CloudEvents) names the Payment and the Invoice in one body; one
// ledger.commission.paid says so, and the same notification again (Intuit
// sending it twice) publishes nothing new.
func TestPayments_bothWebhookFormatsAnnounceOnce(t *testing.T) {
	t.Parallel()
	for _, format := range []string{sandbox.QBWebhookLegacy, sandbox.QBWebhookCloudEvents} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			e := setup(t, 1, nil)
			e.hooksTo(t, format)
			invoice := e.bookOne(t)
			payment, body := e.pay(t, invoice, 0)
			e.notify(t, body, "d1")
			natstest.Eventually(t, 30*time.Second, "ledger.commission.paid", func() bool { return len(e.paid(t)) == 1 })
			e.notify(t, body, "d2")
			e.settlePayments(t)
			paid := e.paid(t)
			if len(paid) != 1 {
				t.Fatalf("%d ledger.commission.paid, want 1: %v", len(paid), paid)
			}
			p, b := paid[0], e.booked(t)[0]
			if p.GetTransactionId() != b.GetTransactionId() || p.GetDocumentId() != invoice || p.GetDocumentType() != ledger.DocumentInvoice ||
				p.GetPaymentId() != payment || p.GetCompanyId() != realm || p.GetLedger() != "quickbooks" ||
				p.GetAmount().GetAmountMinor() != 1_575_000 || p.GetAmount().GetCurrencyCode() != "USD" || p.GetPaidDate() != "2026-12-15" ||
				p.GetBalance().GetAmountMinor() != 0 || !p.GetFullyPaid() || p.GetCorrelation().GetLeadId() != b.GetCorrelation().GetLeadId() ||
				p.GetCause().GetSubject() != "webhook.received.ledger.quickbooks" {
				t.Fatalf("paid = %v", p)
			}
			if f := e.failures(t); len(f) != 0 {
				t.Fatalf("failures %v", f)
			}
		})
	}
}

// TestPayments_partialThenTheRest: two payments of one invoice are two
// events, each with its amount; the first leaves a balance, the second
// pays it.
func TestPayments_partialThenTheRest(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	e.hooksTo(t, sandbox.QBWebhookLegacy)
	invoice := e.bookOne(t)
	first, body := e.pay(t, invoice, 500_000)
	e.notify(t, body, "d1")
	natstest.Eventually(t, 30*time.Second, "the first payment", func() bool { return len(e.paid(t)) == 1 })
	second, body := e.pay(t, invoice, 0)
	e.notify(t, body, "d2")
	natstest.Eventually(t, 30*time.Second, "the second payment", func() bool { return len(e.paid(t)) == 2 })
	e.settlePayments(t)
	paid := e.paid(t)
	if len(paid) != 2 {
		t.Fatalf("%d events, want 2", len(paid))
	}
	a, b := paid[0], paid[1]
	if a.GetPaymentId() != first || a.GetAmount().GetAmountMinor() != 500_000 || a.GetBalance().GetAmountMinor() != 1_075_000 || a.GetFullyPaid() {
		t.Fatalf("the partial payment: %v", a)
	}
	if b.GetPaymentId() != second || b.GetAmount().GetAmountMinor() != 1_075_000 || b.GetBalance().GetAmountMinor() != 0 || !b.GetFullyPaid() {
		t.Fatalf("the rest: %v", b)
	}
}

// TestPayments_repeatedAfterTheDuplicateWindow: a notification repeated
// long after the first (past JetStream's duplicate window, so the message
// id cannot hide it) publishes nothing new: the document's record says the
// payment was announced.
func TestPayments_repeatedAfterTheDuplicateWindow(t *testing.T) {
	t.Parallel()
	const window = 300 * time.Millisecond
	e := setupWindow(t, 1, window, nil)
	e.hooksTo(t, sandbox.QBWebhookCloudEvents)
	invoice := e.bookOne(t)
	_, body := e.pay(t, invoice, 0)
	e.notify(t, body, "d1")
	natstest.Eventually(t, 30*time.Second, "ledger.commission.paid", func() bool { return len(e.paid(t)) == 1 })
	e.settlePayments(t)
	time.Sleep(3 * window) // past the window: only the record can tell
	e.notify(t, body, "d2")
	e.settlePayments(t)
	if n := len(e.paid(t)); n != 1 {
		t.Fatalf("%d ledger.commission.paid after the repeat, want 1", n)
	}
}

// TestPayments_exactlyOnceAcrossCrashes: the notification is redelivered
// after it was handled, or ledger-sync dies after the payment's record and
// before its announcement, or after the announcement and before the record
// says so: one ledger.commission.paid each time.
func TestPayments_exactlyOnceAcrossCrashes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		arm  func(e *env)
	}{
		{"redelivered", func(e *env) { e.hooks.SkipNextAcksOf(bus.LedgerSyncPayments.Durable, 1) }},
		{"crash_after_paid_record", func(e *env) { e.hooks.CrashAt(ledgersync.CrashAfterPaidRecord, 1) }},
		{"crash_after_paid_announced", func(e *env) { e.hooks.CrashAt(ledgersync.CrashAfterPaidAnnounced, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t, 1, nil)
			e.hooksTo(t, sandbox.QBWebhookLegacy)
			invoice := e.bookOne(t)
			tc.arm(e)
			_, body := e.pay(t, invoice, 0)
			e.notify(t, body, "d1")
			natstest.Eventually(t, 30*time.Second, "ledger.commission.paid", func() bool { return len(e.paid(t)) >= 1 })
			natstest.Eventually(t, 30*time.Second, "the hook spent", func() bool {
				return e.hooks.Armed(bus.LedgerSyncPayments.Durable, bus.PointBeforeAck)+e.hooks.Armed("", ledgersync.CrashAfterPaidRecord)+e.hooks.Armed("", ledgersync.CrashAfterPaidAnnounced) == 0
			})
			e.settlePayments(t)
			if n := len(e.paid(t)); n != 1 {
				t.Fatalf("%d ledger.commission.paid, want 1", n)
			}
		})
	}
}

// TestPayments_aBookedDocumentWithoutItsRecord: a document ledger-sync
// booked whose record is missing (a crash between the booking's record and
// the document's, or a booking by a version before document records) is
// found by the booking its note names, its record written, and its payment
// announced, not passed by.
func TestPayments_aBookedDocumentWithoutItsRecord(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	e.hooksTo(t, sandbox.QBWebhookLegacy)
	invoice := e.bookOne(t)
	kv, err := e.js.KeyValue(natstest.Context(t, 5*time.Second), "idempotency")
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Purge(natstest.Context(t, 5*time.Second), ledgersync.DocKey(realm, ledger.DocumentInvoice, invoice)); err != nil {
		t.Fatal(err)
	}
	payment, body := e.pay(t, invoice, 0)
	e.notify(t, body, "d1")
	natstest.Eventually(t, 30*time.Second, "ledger.commission.paid", func() bool { return len(e.paid(t)) == 1 })
	e.settlePayments(t)
	if p := e.paid(t); len(p) != 1 || p[0].GetPaymentId() != payment || !p[0].GetFullyPaid() {
		t.Fatalf("paid %v, want payment %s in full, once", p, payment)
	}
	if got := e.passedBy(t); got["not_booked"] != 0 {
		t.Fatalf("passed by %v", got)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
}

// TestPayments_aPaymentBeforeItsBookingIsRecorded: ledger-sync crashes
// right after QuickBooks made the invoice, and the client pays it before the
// closing is redelivered. The payment is not passed by: it waits (retried)
// until the redelivered closing records the booking, then is announced once.
func TestPayments_aPaymentBeforeItsBookingIsRecorded(t *testing.T) {
	t.Parallel()
	// The payment's retries must outlast the closing's redelivery (an ack
	// wait of 1 s here).
	e := setup(t, 1, func(c *ledgersync.Config) {
		c.Bus.RetrySchedule = []time.Duration{500 * time.Millisecond, time.Second, time.Second, 2 * time.Second, 2 * time.Second}
	})
	e.hooksTo(t, sandbox.QBWebhookLegacy)
	e.hooks.CrashAt(ledgersync.CrashAfterLedgerCall, 1)
	tx := e.soldLoop(t, "Grace Hopper", sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"})
	e.close(t, tx, 15750, "h1")
	qb := e.sb.QuickBooks()
	natstest.Eventually(t, 30*time.Second, "the invoice made before the crash", func() bool { return len(qb.Objects(realm, sandbox.QBInvoice)) == 1 })
	invoice := qb.Objects(realm, sandbox.QBInvoice)[0].String("Id")
	payment, body := e.pay(t, invoice, 0)
	e.notify(t, body, "d1")
	natstest.Eventually(t, 30*time.Second, "ledger.commission.paid", func() bool { return len(e.paid(t)) == 1 })
	e.settle(t)
	e.settlePayments(t)
	if p := e.paid(t); len(p) != 1 || p[0].GetPaymentId() != payment || p[0].GetTransactionId() != tx.ID {
		t.Fatalf("paid %v, want payment %s of transaction %s, once", p, payment, tx.ID)
	}
	if n := len(e.booked(t)); n != 1 {
		t.Fatalf("%d ledger.commission.booked, want 1", n)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
}

// TestPayments_passesByWhatIsNotItsOwn: a notification of another company,
// of an entity that is not a payment, and of a payment of an invoice
// ledger-sync did not book publish nothing and fail nothing; a body that is
// no notification is a permanent failure record.
func TestPayments_passesByWhatIsNotItsOwn(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	e.hooksTo(t, sandbox.QBWebhookLegacy)
	invoice := e.bookOne(t)
	qb := e.sb.QuickBooks()
	// An invoice of the same customer made by a person in QuickBooks.
	inv := qb.Objects(realm, sandbox.QBInvoice)[0]
	tok := qb.IssueTokens(realm).AccessToken
	var other sandbox.QBObject
	raw, _ := json.Marshal(inv)
	_ = json.Unmarshal(raw, &other)
	for _, k := range []string{"Id", "SyncToken", "MetaData", "DocNumber", "TotalAmt", "Balance", "LinkedTxn", "PrivateMemo"} {
		delete(other, k)
	}
	created := e.qbPost(t, tok, "invoice", other)
	_, body := e.pay(t, created, 0)

	foreign := `{"eventNotifications":[{"realmId":"1234","dataChangeEvent":{"entities":[{"name":"Payment","id":"1","operation":"Create","lastUpdated":"2026-12-15T10:00:00.000Z"}]}}]}`
	customer := `{"eventNotifications":[{"realmId":"` + realm + `","dataChangeEvent":{"entities":[{"name":"Customer","id":"1","operation":"Update","lastUpdated":"2026-12-15T10:00:00.000Z"}]}}]}`
	e.notify(t, foreign, "d1")
	e.notify(t, customer, "d2")
	e.notify(t, body, "d3")
	e.settlePayments(t)
	if n := len(e.paid(t)); n != 0 {
		t.Fatalf("%d ledger.commission.paid for what ledger-sync did not book", n)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
	// The payment's webhook names the Payment and its Invoice: both lead to
	// the invoice ledger-sync did not book.
	if got := e.passedBy(t); got["other_company"] != 1 || got["entity"] != 1 || got["not_booked"] != 2 {
		t.Fatalf("passed by %v, want one of another company, one Customer, and the payment and the invoice not booked", got)
	}
	e.notify(t, `{"eventNotifications":[{"dataChangeEvent":{"entities":[{"name":"Payment"}]}}]}`, "d4")
	natstest.Eventually(t, 30*time.Second, "the failure record", func() bool { return len(e.failures(t)) == 1 })
	if f := e.failures(t)[0]; f.GetClass() != opsv1.ErrorClass_ERROR_CLASS_PERMANENT {
		t.Fatalf("an unreadable notification is not a permanent failure: %v", f)
	}
	if n := len(e.paid(t)); n != 0 || invoice == created {
		t.Fatalf("%d ledger.commission.paid", n)
	}
}

// TestPayments_changeDataCapture: with webhooks off and the poller on, a
// payment is found by Change Data Capture and announced once, and the
// cursor is kept.
func TestPayments_changeDataCapture(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, func(c *ledgersync.Config) { c.CDCInterval = 200 * time.Millisecond })
	invoice := e.bookOne(t)
	payment, body := e.pay(t, invoice, 0)
	if body != "" {
		t.Fatal("the sandbox sent a webhook with webhooks off")
	}
	natstest.Eventually(t, 30*time.Second, "ledger.commission.paid", func() bool { return len(e.paid(t)) == 1 })
	time.Sleep(time.Second) // several more polls read the same change again
	e.settlePayments(t)
	paid := e.paid(t)
	if len(paid) != 1 || paid[0].GetPaymentId() != payment || !paid[0].GetFullyPaid() || paid[0].GetCause().GetSubject() != "webhook.received.ledger.quickbooks" {
		t.Fatalf("paid = %v", paid)
	}
	kv, err := e.js.KeyValue(natstest.Context(t, 5*time.Second), service.CursorBucket)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kv.Get(natstest.Context(t, 5*time.Second), ledgersync.CDCCursorKey)
	if err != nil {
		t.Fatalf("the cursor: %v", err)
	}
	if at, err := time.Parse(time.RFC3339Nano, string(c.Value())); err != nil || time.Since(at) > time.Hour {
		t.Fatalf("the cursor %q is not the newest change (%v)", c.Value(), err)
	}
}

// qbPost creates an entity through the sandbox's API and returns its id.
func (e *env) qbPost(t *testing.T, token, resource string, o sandbox.QBObject) string {
	t.Helper()
	b, _ := json.Marshal(o)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.qbURL+"/quickbooks/v3/company/"+realm+"/"+resource, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("create %s: %d %v", resource, resp.StatusCode, err)
	}
	var got sandbox.QBObject
	for k, v := range out {
		if k != "time" && json.Unmarshal(v, &got) == nil && got.String("Id") != "" {
			return got.String("Id")
		}
	}
	t.Fatalf("create %s: no id in %v", resource, out)
	return ""
}

// TestPayments_aChangedInvoiceLeadsToItsPayments: a notification naming
// only the booked Invoice (Intuit sends one per entity it changed) leads to
// the payments the invoice links, announced once.
func TestPayments_aChangedInvoiceLeadsToItsPayments(t *testing.T) {
	t.Parallel()
	e := setup(t, 1, nil)
	invoice := e.bookOne(t)
	payment, _ := e.pay(t, invoice, 300_000)
	body := `{"eventNotifications":[{"realmId":"` + realm + `","dataChangeEvent":{"entities":[{"name":"Invoice","id":"` + invoice + `","operation":"Update","lastUpdated":"2026-12-15T10:00:00.000Z"}]}}]}`
	e.notify(t, body, "d1")
	natstest.Eventually(t, 30*time.Second, "ledger.commission.paid", func() bool { return len(e.paid(t)) == 1 })
	e.notify(t, body, "d2")
	e.settlePayments(t)
	paid := e.paid(t)
	if len(paid) != 1 || paid[0].GetPaymentId() != payment || paid[0].GetAmount().GetAmountMinor() != 300_000 || paid[0].GetFullyPaid() {
		t.Fatalf("paid = %v", paid)
	}
}

// passedBy reads brokerflow_ledger_changes_passed_by_total by reason.
func (e *env) passedBy(t *testing.T) map[string]float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "brokerflow_ledger_changes_passed_by_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					out[l.GetValue()] += m.GetCounter().GetValue()
				}
			}
		}
	}
	return out
}
