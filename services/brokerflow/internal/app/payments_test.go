package app_test

import (
	"bytes"
	"context"
	"net/http"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	ledgerv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ledger/v1"
	"github.com/brokerflow/brokerflow/services/ledger-sync/ledgersync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// TestSystem_commissionPaid drives the whole path against the sandbox: a
// closing from a signed lead is booked as one invoice; the invoice is paid
// in the sandbox's QuickBooks, which tells the gateway (legacy webhooks, or
// CloudEvents), or which ledger-sync finds by polling Change Data Capture
// with webhooks off; ledger.commission.paid is published once. The same
// signed notification posted to the gateway again publishes nothing new,
// and one with a bad signature is refused with 401 and stored nowhere.
func TestSystem_commissionPaid(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		format string // "" for Change Data Capture with webhooks off
		extra  []string
	}{
		{name: "legacy_webhooks", format: sandbox.QBWebhookLegacy},
		{name: "cloudevents_webhooks", format: sandbox.QBWebhookCloudEvents},
		{name: "change_data_capture", extra: []string{"LEDGERSYNC_QUICKBOOKS_CDC_INTERVAL=200ms"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, append([]string{"CRMSYNC_ACTIVE_STAGES=Active Client"}, c.extra...)...)
			t.Cleanup(s.Sandbox.Close)
			qb := s.Sandbox.QuickBooks()
			h := qb.Webhooks()
			if !h.Enabled || h.URL != s.WebhookURL+"/webhooks/quickbooks" {
				t.Fatalf("run --sandbox does not point QuickBooks' webhooks at the gateway: %+v", h)
			}
			h.Format, h.Enabled = c.format, c.format != ""
			if c.format == "" {
				h.Format = sandbox.QBWebhookLegacy
			}
			if err := qb.SetWebhooks(h); err != nil {
				t.Fatal(err)
			}
			soldLoopFromALead(t, s, nil)
			natstest.Eventually(t, 60*time.Second, "ledger.commission.booked", func() bool {
				return len(natstest.All(t, s.js, bus.StreamLedger, ledgersync.SubjectBooked)) == 1
			})
			var booked ledgerv1.CommissionBooked
			if err := proto.Unmarshal(natstest.All(t, s.js, bus.StreamLedger, ledgersync.SubjectBooked)[0].Data(), &booked); err != nil {
				t.Fatal(err)
			}
			p, err := qb.RecordPayment(sandbox.DefaultQuickBooksRealm, booked.GetDocumentId(), 0, "2026-12-15")
			if err != nil {
				t.Fatal(err)
			}
			paid := func() []*ledgerv1.CommissionPaid {
				return natstest.Messages(t, s.js, bus.StreamLedger, ledgersync.SubjectPaid, func() *ledgerv1.CommissionPaid { return &ledgerv1.CommissionPaid{} })
			}
			natstest.Eventually(t, 60*time.Second, "ledger.commission.paid", func() bool { return len(paid()) == 1 })
			got := paid()[0]
			if got.GetPaymentId() != p.String("Id") || got.GetDocumentId() != booked.GetDocumentId() || got.GetTransactionId() != booked.GetTransactionId() ||
				got.GetAmount().GetAmountMinor() != 1_575_000 || !got.GetFullyPaid() || got.GetPaidDate() != "2026-12-15" {
				t.Fatalf("paid = %v", got)
			}
			stored := len(natstest.All(t, s.js, bus.StreamWebhooks, "webhook.received.ledger.quickbooks"))
			if c.format != "" {
				d := qb.Deliveries()
				if len(d) != 1 || d[0].State != sandbox.DeliveryDelivered {
					t.Fatalf("deliveries %+v", d)
				}
				// Intuit sends the notification again: the gateway takes it,
				// and nothing new is announced.
				if code := postQuickBooks(t, s.WebhookURL, d[0].Body, d[0].Signature); code/100 != 2 {
					t.Fatalf("the same notification again: %d", code)
				}
				stored = len(natstest.All(t, s.js, bus.StreamWebhooks, "webhook.received.ledger.quickbooks"))
				// Signed with another token: refused, and stored nowhere.
				if code := postQuickBooks(t, s.WebhookURL, `{"eventNotifications":[]}`, d[0].Signature); code != http.StatusUnauthorized {
					t.Fatalf("a bad signature: %d, want 401", code)
				}
				if code := postQuickBooks(t, s.WebhookURL, d[0].Body, sandbox.SignQuickBooks("another token", []byte(d[0].Body))); code != http.StatusUnauthorized {
					t.Fatalf("a bad signature: %d, want 401", code)
				}
			}
			natstest.WaitSettled(t, s.js, bus.StreamWebhooks, bus.LedgerSyncPayments.Durable)
			if n := len(paid()); n != 1 {
				t.Fatalf("%d ledger.commission.paid, want 1", n)
			}
			if c.format != "" {
				if n := len(natstest.All(t, s.js, bus.StreamWebhooks, "webhook.received.ledger.quickbooks")); n != stored {
					t.Fatalf("%d notifications stored after the bad signatures, want %d", n, stored)
				}
			}
			if f := natstest.All(t, s.js, bus.StreamOps, "ops.failure.>"); len(f) != 0 {
				t.Fatalf("%d failure records", len(f))
			}
		})
	}
}

// postQuickBooks posts body to the gateway's QuickBooks endpoint with
// intuit-signature sig.
func postQuickBooks(t *testing.T, base, body, sig string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, base+"/webhooks/quickbooks", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("intuit-signature", sig)
	code, _ := do(t, req)
	return code
}
