package reporting_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	ledgerv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ledger/v1"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

func cents(c int64) *commonv1.Money { return &commonv1.Money{AmountMinor: c, CurrencyCode: "USD"} }

// booked is a commission booked in QuickBooks as an invoice, in cents.
func booked(loop, contact, invoice string, gross, net, agent int64, at time.Duration) published {
	return published{"ledger.commission.booked", "ledger.commission.booked:quickbooks:" + loop, &ledgerv1.CommissionBooked{
		TransactionId: loop, Tms: "dotloop", Ledger: "quickbooks", CompanyId: "9130", DocumentType: "invoice",
		DocumentId: "inv-" + invoice, DocumentNumber: invoice, CustomerId: "58", AgentId: "ada", AgentLedgerId: "v-7",
		Gross: cents(gross), BrokerageNet: cents(net), AgentShare: cents(agent),
		Components: []*ledgerv1.Component{{Kind: "agent_share", Amount: cents(agent)}, {Kind: "brokerage_share", Amount: cents(net)}},
		PlanId:     "70-30", BookedAt: timestamppb.New(t0.Add(at)), FactsHash: "h-" + loop,
		Correlation: &commonv1.Correlation{ContactId: contact, TransactionId: loop},
	}}
}

// paid is a payment against an invoice; id is the event's id, which
// ledger-sync derives from the document and the payment.
func paid(id, loop, invoice, payment string, amount, balance int64, at time.Duration) published {
	return published{"ledger.commission.paid", id, &ledgerv1.CommissionPaid{
		TransactionId: loop, Ledger: "quickbooks", CompanyId: "9130", DocumentType: "invoice", DocumentId: "inv-" + invoice,
		PaymentId: payment, Amount: cents(amount), PaidDate: t0.Add(at).Format("2006-01-02"), Balance: cents(balance),
		FullyPaid: balance == 0, ObservedAt: timestamppb.New(t0.Add(at)),
		Correlation: &commonv1.Correlation{TransactionId: loop},
	}}
}

// ledgerDay is the morning's scenario with its ledger: Ada's closing
// ($15,750 gross) is booked with $4,725 net to the brokerage and $11,025 to
// her agent, and paid in two parts; the first payment is announced before
// the booking, and again by a second event (ledger-sync saw it twice); the
// loop tms-sync did not open is booked ($9,000) and not paid.
func ledgerDay() []published {
	const day = 24 * time.Hour
	p1 := func(id string) published {
		return paid(id, "9001", "1042", "pay-1", 500_000, 1_075_000, 14*day)
	}
	return append(scenario(),
		p1("ledger.commission.paid:quickbooks:inv-1042:pay-1"),
		booked("9001", "101", "1042", 1_575_000, 472_500, 1_102_500, 12*day+time.Hour),
		booked("9002", "", "1043", 900_000, 270_000, 630_000, 5*day+time.Hour),
		paid("ledger.commission.paid:quickbooks:inv-1042:pay-2", "9001", "1042", "pay-2", 1_075_000, 0, 20*day),
		p1("ledger.commission.paid:quickbooks:inv-1042:pay-1:again"),
	)
}

// The LEDGER events fill each transaction's commission steps and the
// report's net, paid, unpaid and ROI on the net: the events published as
// ledger-sync will, on an embedded JetStream, projected live event by event
// in a shuffled order and rebuilt, with the same tables.
func TestLedger_commissionsFillTransactionsAndTheReport(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		js := streams(t)
		publishAll(t, js, ledgerDay())
		events := streamEvents(t, js)
		slices.Reverse(events) // the LEDGER events first, newest first
		live, rebuilt, _ := liveAndRebuilt(t, js, db, events, 3)
		sameTables(t, "rebuilt against live", typedDump(t, live), typedDump(t, rebuilt))

		ctx := context.Background()
		j, err := live.JourneyByLead(ctx, "ld_1")
		if err != nil {
			t.Fatal(err)
		}
		if len(j.Transactions) != 1 {
			t.Fatalf("transactions of ld_1's journey: %+v", j.Transactions)
		}
		tx := j.Transactions[0]
		want := map[string]any{
			"ledger": "quickbooks", "commission_booked_at": "2026-03-14T10:00:00.000000Z", "commission_document_type": "invoice",
			"commission_document_id": "inv-1042", "commission_document_number": "1042", "commission_gross_minor": int64(1_575_000),
			"brokerage_net_minor": int64(472_500), "agent_share_minor": int64(1_102_500),
			// Two payments, the first announced twice, adding up to the gross.
			"commission_payments": int64(2), "commission_paid_minor": int64(1_575_000), "commission_fully_paid": int64(1),
			"commission_paid_at": "2026-03-22T09:00:00.000000Z", "commission_paid_date": "2026-03-22",
		}
		for col, v := range want {
			if tx[col] != v {
				t.Errorf("transaction 9001: %s = %#v, want %#v", col, tx[col], v)
			}
		}
		if j.Journey["brokerage_net_minor"] != int64(472_500) || j.Journey["agent_share_minor"] != int64(1_102_500) ||
			j.Journey["commission_paid_minor"] != int64(1_575_000) || j.Journey["commission_fully_paid"] != int64(1) {
			t.Errorf("journey of ld_1: %+v", j.Journey)
		}
		var steps []string
		for _, s := range j.Steps {
			if s.Source == "quickbooks" {
				steps = append(steps, s.Step+"@"+s.At)
			}
		}
		if len(steps) != 2 || steps[0] != "commission_booked@2026-03-14T10:00:00.000000Z" || steps[1] != "commission_paid@2026-03-22T09:00:00.000000Z" {
			t.Errorf("ledger steps of ld_1's journey: %v", steps)
		}

		rep, err := live.Report(ctx, reporting.ReportQuery{Period: reporting.ByMonth,
			From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rep.Rows {
			if r.Source != "zillow" {
				continue
			}
			// Spend $600; net $4,725: ROI (472,500 − 60,000) / 60,000.
			if r.BrokerageNetMinor != 472_500 || r.PaidMinor != 1_575_000 || r.UnpaidMinor != 0 || deref(r.ROI) != 6.875 {
				t.Fatalf("zillow's March: net %d, paid %d, unpaid %d, ROI %v", r.BrokerageNetMinor, r.PaidMinor, r.UnpaidMinor, deref(r.ROI))
			}
			return
		}
		t.Fatalf("no zillow row: %+v", rep.Rows)
	})
}

// A payment counts once, however often it is announced: by the same event
// again (a redelivery, a copy stored after the duplicate window) or by
// another event naming the same payment; partial payments add up.
func TestLedger_aPaymentCountsOnce(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		st := openStore(t, db)
		ctx := context.Background()
		events := asEvents(t, ledgerDay())
		apply(t, st, events...)
		want := dump(t, st)
		for _, e := range events {
			apply(t, st, e) // redelivered
			e.Seq += 1000   // stored again
			apply(t, st, e)
		}
		got := dump(t, st)
		got["stream_cursors"] = want["stream_cursors"]
		sameTables(t, "ledger events applied again", want, got)
		var payments, paidMinor int64
		if err := st.DB.QueryRowContext(ctx, `SELECT COUNT(*), SUM(amount_minor) FROM commission_payments WHERE transaction_id = '9001'`).
			Scan(&payments, &paidMinor); err != nil {
			t.Fatal(err)
		}
		if payments != 2 || paidMinor != 1_575_000 {
			t.Fatalf("%d payments of %d cents, want 2 of 1,575,000: the payment announced twice counted twice", payments, paidMinor)
		}
	})
}
