package app_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/ledger/ledgertest"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	ledgerv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ledger/v1"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/ledger-sync/ledgersync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// TestSystem_closingBecomesOneInvoice drives the whole path against the
// sandbox, from a signed lead webhook: the lead becomes a contact, the
// contact moved to Active Client becomes a loop, the loop marked sold with
// a price and a commission becomes exactly one Invoice in QuickBooks, with
// a line per component of the sandbox plan's split, the client as the
// customer, the agent's Class and the property; and the agent's Bill when
// LEDGERSYNC_BILL is on. The same holds with the closing redelivered, with
// ledger-sync killed after the ledger call (the harmful point), with a
// second ledger-sync replica, and with the access token expired mid-run.
func TestSystem_closingBecomesOneInvoice(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name  string
		extra []string
		// before runs once the loop is open, before it is marked sold.
		before func(t *testing.T, s *system)
		bill   bool
	}{
		{name: "with_the_agents_bill", extra: []string{"LEDGERSYNC_BILL=true"}, bill: true},
		{name: "killed_after_the_ledger_call_with_the_token_expired", before: func(t *testing.T, s *system) {
			s.hooks.CrashAtOf("ledger-sync", ledgersync.CrashAfterLedgerCall, 1)
			s.Sandbox.QuickBooks().ExpireAccessTokens()
		}},
		// Each replica keeps to half the company's throttle.
		{name: "redelivered_to_two_replicas", extra: []string{"LEDGERSYNC_QUICKBOOKS_RATE_LIMIT=250", "LEDGERSYNC_QUICKBOOKS_PER_SECOND=5"}, before: func(t *testing.T, s *system) {
			s.hooks.SkipNextAcksOf("ledger-sync", 1)
			secondLedgerSync(t, s)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := start(t, append([]string{"CRMSYNC_ACTIVE_STAGES=Active Client"}, c.extra...)...)
			t.Cleanup(s.Sandbox.Close)
			loopID := soldLoopFromALead(t, s, c.before)
			natstest.Eventually(t, 60*time.Second, "ledger.commission.booked", func() bool {
				return len(natstest.All(t, s.js, bus.StreamLedger, ledgersync.SubjectBooked)) == 1
			})
			natstest.WaitSettled(t, s.js, bus.StreamTMS, "ledger-sync")
			qb := ledgertest.QuickBooksBackend{Q: s.Sandbox.QuickBooks(), Realm: sandbox.DefaultQuickBooksRealm}
			docs := qb.Documents(t)
			if len(docs) != 1 {
				t.Fatalf("%d documents in QuickBooks, want exactly 1: %+v", len(docs), docs)
			}
			d := docs[0]
			// $15,750.00 by the sandbox plan: franchise 6%, brokerage 30% of
			// the rest, the $395 fee, the agent the remainder.
			want := []ledgertest.Line{
				{Item: "Commission income", AmountMinor: 444_150}, {Item: "Agent commission", AmountMinor: 996_850},
				{Item: "Franchise fee", AmountMinor: 94_500}, {Item: "Transaction fee", AmountMinor: 39_500},
			}
			if d.Type != ledger.DocumentInvoice || d.PartyName != "Grace Hopper" || d.TotalMinor != 1_575_000 ||
				d.Property != "2100 Waterview Dr, San Francisco, CA 94114" || fmt.Sprint(d.Lines) != fmt.Sprint(want) {
				t.Fatalf("invoice = %+v\nwant lines %v", d, want)
			}
			classes := map[string]string{}
			for _, o := range s.Sandbox.QuickBooks().Objects(sandbox.DefaultQuickBooksRealm, sandbox.QBClass) {
				classes[o.String("Id")] = o.String("Name")
			}
			if classes[d.Class] != "Sandbox Agent" {
				t.Fatalf("the invoice's class is %q, want the agent", classes[d.Class])
			}
			bills := qb.Bills(t)
			if c.bill != (len(bills) == 1) || len(bills) > 1 || (c.bill && (bills[0].TotalMinor != 996_850 || bills[0].PartyName != "Sandbox Agent")) {
				t.Fatalf("bills = %+v (want the agent's: %v)", bills, c.bill)
			}
			var b ledgerv1.CommissionBooked
			if err := proto.Unmarshal(natstest.All(t, s.js, bus.StreamLedger, ledgersync.SubjectBooked)[0].Data(), &b); err != nil {
				t.Fatal(err)
			}
			if b.GetTransactionId() != fmt.Sprint(loopID) || b.GetDocumentId() != d.ID || b.GetCorrelation().GetLeadId() == "" || b.GetCorrelation().GetContactId() == "" {
				t.Fatalf("booked = %v", &b)
			}
			if f := natstest.All(t, s.js, bus.StreamOps, "ops.failure.>"); len(f) != 0 {
				t.Fatalf("%d failure records", len(f))
			}
		})
	}
}

// soldLoopFromALead posts a signed lead, moves its contact to Active
// Client, waits for the loop, runs before, and marks the loop sold with a
// $525,000 price and a $15,750 commission. It returns the loop's id.
func soldLoopFromALead(t *testing.T, s *system, before func(*testing.T, *system)) int64 {
	t.Helper()
	fub, dl := s.Sandbox.FUB(), s.Sandbox.Dotloop()
	if code, body := postSigned(t, s.WebhookURL+"/webhooks/idx", app.DevIDXSecret, "msg_ledger", time.Now(), buyerLead); code != http.StatusAccepted {
		t.Fatalf("lead: %d %s", code, body)
	}
	natstest.Eventually(t, 30*time.Second, "the contact in Follow Up Boss", func() bool { return len(fub.People()) == 1 })
	// tms-sync keeps the lead's property from crm.contact.synced: the loop
	// opened later is prefilled with it.
	natstest.Eventually(t, 30*time.Second, "crm.contact.synced", func() bool {
		return len(natstest.All(t, s.js, bus.StreamCRM, "crm.contact.synced")) == 1
	})
	natstest.WaitSettled(t, s.js, bus.StreamCRM, "tms-sync-crm")
	if _, err := fub.SetStage(fub.People()[0].ID, "Active Client"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "a loop in Dotloop", func() bool { return len(dl.Loops()) == 1 })
	natstest.WaitSettled(t, s.js, bus.StreamCRM, "tms-sync-crm")
	if addr := dl.Loops()[0].Detail["Property Address"]; addr["Street Name"] != "Waterview Dr" {
		t.Fatalf("the loop's property is %v, want the lead's", addr)
	}
	if before != nil {
		before(t, s)
	}
	id := dl.Loops()[0].ID
	if err := dl.SetLoopStatus(id, sandbox.DotloopSold, sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"}); err != nil {
		t.Fatal(err)
	}
	return id
}

// secondLedgerSync runs another ledger-sync replica beside the system's,
// as its own NATS user, with the system's configuration.
func secondLedgerSync(t *testing.T, s *system) {
	t.Helper()
	opts, err := s.ConnectOptions(bus.ServiceLedgerSync)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(s.NATSURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	l, err := ledgersync.New(s.Config().LedgerSync, service.Deps{NATS: nc, Hooks: s.hooks})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, l.Run)
}
