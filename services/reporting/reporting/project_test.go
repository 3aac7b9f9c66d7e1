package reporting_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

// Events arrive out of order across streams (and, with several handlers,
// within one): the tables must not depend on it. A contact synced before
// its lead was projected is joined when the lead arrives.
func TestProjection_orderDoesNotMatter(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		events := asEvents(t, scenario())
		inOrder := openStore(t, db)
		apply(t, inOrder, events...)
		want := dump(t, inOrder)

		reversed := slices.Clone(events)
		slices.Reverse(reversed)
		crmFirst := slices.Clone(events)
		slices.SortStableFunc(crmFirst, func(a, b reporting.Event) int {
			rank := func(e reporting.Event) int {
				if e.Stream == "CRM" {
					return 0
				}
				return 1
			}
			return rank(a) - rank(b)
		})
		for name, order := range map[string][]reporting.Event{"reversed": reversed, "crm first": crmFirst} {
			st := openStore(t, db)
			for _, e := range order { // one transaction each, as the live handlers do
				apply(t, st, e)
			}
			sameTables(t, name, want, dump(t, st))
		}

		// The joins themselves: ld_1 was synced 2 s after its receipt, and the
		// contact it made is credited to it.
		j, err := inOrder.JourneyByLead(context.Background(), "ld_1")
		if err != nil {
			t.Fatal(err)
		}
		if j.Journey["first_source"] != "zillow" || j.Journey["last_source"] != "idx" || j.Journey["leads"] != int64(2) ||
			j.Journey["active_client_at"] != "2026-03-02T11:00:00.000000Z" || j.Leads[0]["speed_to_lead_ms"] != int64(2000) {
			t.Fatalf("journey of ld_1 = %+v, leads %+v", j.Journey, j.Leads)
		}
		steps := make([]string, len(j.Steps))
		for i, s := range j.Steps {
			steps[i] = s.Step + "@" + s.Source
		}
		if want := []string{"lead@zillow", "contact@followupboss", "lead@idx", "contact@followupboss", "active_client@followupboss",
			"transaction@dotloop", "closing@dotloop"}; !slices.Equal(steps, want) {
			t.Fatalf("steps %v, want %v", steps, want)
		}
		// Its transaction and the corrected closing, the latest announced,
		// in minor units.
		if j.Journey["transactions"] != int64(1) || j.Journey["transaction_id"] != "9001" || j.Journey["tms"] != "dotloop" ||
			j.Journey["transaction_type"] != "PURCHASE_OFFER" || j.Journey["transaction_opened_at"] != "2026-03-02T11:01:00.000000Z" ||
			j.Journey["closed_at"] != "2026-03-14T09:00:00.000000Z" || j.Journey["sale_price_minor"] != int64(52_500_000) ||
			j.Journey["gross_commission_minor"] != int64(1_575_000) || j.Journey["agent_id"] != "ada" || j.Journey["side"] != "buy" ||
			j.Journey["currency"] != "USD" {
			t.Fatalf("journey of ld_1, its transaction: %+v", j.Journey)
		}
		if len(j.Transactions) != 1 || j.Transactions[0]["status"] != "SOLD" || j.Transactions[0]["close_date"] != "2026-03-14" ||
			j.Transactions[0]["lead_id"] != "ld_1" || j.Transactions[0]["episode_id"] != "ep_101" {
			t.Fatalf("transactions of ld_1's journey: %+v", j.Transactions)
		}
	})
}

// An event applied twice changes nothing: the idempotency key is the
// event's id, so a redelivery (same sequence) and a copy stored again after
// the duplicate window (a new sequence, the same id) are both no-ops.
func TestProjection_appliedTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		events := asEvents(t, scenario())
		again := func(st *reporting.Store) {
			for _, e := range events {
				apply(t, st, e) // redelivered
				e.Seq += 1000   // stored again
				apply(t, st, e)
			}
		}
		st := openStore(t, db)
		apply(t, st, events...)
		want := dump(t, st)
		for _, e := range events {
			apply(t, st, e)
		}
		sameTables(t, "redelivered", want, dump(t, st))
		again(st)
		got := dump(t, st)
		// The copies are later messages: the cursors move past them, and
		// nothing else changes.
		got["stream_cursors"] = want["stream_cursors"]
		sameTables(t, "stored again", want, got)

		// The copy may come before the event it copies (several handlers, a
		// redelivery): the tables keep the lowest sequence either way.
		copyFirst := openStore(t, db)
		for _, e := range events {
			c := e
			c.Seq += 1000
			apply(t, copyFirst, c)
		}
		apply(t, copyFirst, events...)
		got = dump(t, copyFirst)
		got["stream_cursors"] = want["stream_cursors"]
		sameTables(t, "copies first", want, got)

		// Without the key the copies are projected again: the test can fail.
		keyless := openStore(t, db)
		reporting.WithoutIdempotencyKey(keyless)
		apply(t, keyless, events...)
		again(keyless)
		if got := dump(t, keyless); got["leads"] == want["leads"] {
			t.Fatal("without the idempotency key the copies changed nothing: the test proves nothing")
		}
	})
}

// A TMS event without a transaction id cannot be projected: it is refused
// like an undecodable event (live, a failure record), and changes nothing.
func TestProjection_tmsEventWithoutTransactionIsRefused(t *testing.T) {
	t.Parallel()
	st := openStore(t, onSQLite)
	before := dump(t, st)
	for _, e := range asEvents(t, []published{txOpened("", "101", "ld_1", 0), txClosed("", "101", "ld_1", 1, 1, 0)}) {
		if _, err := st.Apply(context.Background(), []reporting.Event{e}); err == nil || !strings.Contains(err.Error(), "no transaction id") {
			t.Fatalf("%s without a transaction id: %v", e.Subject, err)
		}
	}
	sameTables(t, "after refused events", before, dump(t, st))
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func TestReport_funnelSpeedAndAttribution(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		st := openStore(t, db)
		apply(t, st, asEvents(t, scenario())...)
		ctx := context.Background()
		get := func(a reporting.Attribution) map[string]*reporting.Row {
			rep, err := st.Report(ctx, reporting.ReportQuery{Period: reporting.ByMonth, Attribution: a,
				From: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)})
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]*reporting.Row{}
			for _, r := range rep.Rows {
				if r.Period != "2026-03" {
					t.Fatalf("row in period %s", r.Period)
				}
				out[r.Source] = r
			}
			return out
		}
		first := get(reporting.FirstTouch)
		z, i := first["zillow"], first["idx"]
		if z.Leads != 2 || z.Rejected != 1 || z.Contacts != 1 || z.ActiveClients != 1 || *z.SpendMinor != 60000 ||
			z.SpeedToLead.N != 1 || *z.SpeedToLead.P50Ms != 2000 || *z.CostPerLeadMinor != 30000 || *z.ROI != -1 {
			t.Fatalf("zillow, first touch: %+v", z)
		}
		if i.Leads != 2 || i.Rejected != 0 || i.Contacts != 1 || i.ActiveClients != 0 || *i.SpendMinor != 30000 ||
			i.SpeedToLead.N != 2 || *i.SpeedToLead.P50Ms != 1000 || *i.SpeedToLead.P90Ms != 5000 || *i.ContactRate != 0.5 {
			t.Fatalf("idx, first touch: %+v", i)
		}
		// Ada's transaction and closing, credited to her first lead: 12
		// days from it to the closing; the gross is the TMS's, and the net,
		// paid and unpaid are 0 without LEDGER events (TestLedger_*).
		if z.Transactions != 1 || z.Closings != 1 || z.GrossCommissionMinor != 1_575_000 || deref(z.TimeToCloseDaysP50) != 12 ||
			z.BrokerageNetMinor != 0 || z.PaidMinor != 0 || z.UnpaidMinor != 0 || *z.CloseRate != 1 ||
			i.Transactions != 0 || i.Closings != 0 || i.GrossCommissionMinor != 0 {
			t.Fatalf("first touch, transactions: zillow %+v idx %+v", z, i)
		}
		last := get(reporting.LastTouch)
		if z, i := last["zillow"], last["idx"]; z.Contacts != 0 || i.Contacts != 2 || i.ActiveClients != 1 || z.Leads != 2 ||
			z.Closings != 0 || i.Transactions != 1 || i.Closings != 1 || i.GrossCommissionMinor != 1_575_000 {
			t.Fatalf("last touch: zillow %+v idx %+v", z, i)
		}
	})
}

// Several replicas write one PostgreSQL read model at once. Each journey is
// recomputed from the facts, so a writer must see the other's committed
// facts: the writers take turns on an advisory lock. Here two stores (two
// replicas' pools) project the two leads of each contact at the same time;
// every journey must count both.
func TestProjection_concurrentWritersOnPostgresJoinEveryFact(t *testing.T) {
	t.Parallel()
	dir, dsn := newPlace(t, onPostgres)
	p := openPlace(t, dir, dsn)
	const contacts = 40
	var replicas [2]*reporting.Store
	var events [2][]reporting.Event
	for r := range replicas {
		st, err := p.Open(context.Background(), "shared")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		replicas[r] = st
		var pub []published
		for c := range contacts {
			id := fmt.Sprintf("ld_%d_%d", c, r)
			pub = append(pub, lead(id, []string{"zillow", "idx"}[r], time.Duration(r)*time.Minute),
				synced(id, "zillow", strconv.Itoa(1000+c), crmv1.SyncOutcome_SYNC_OUTCOME_CREATED, time.Duration(r)*time.Minute+time.Second))
		}
		events[r] = asEvents(t, pub)
	}
	// Contact by contact, both replicas at once: one lead and its contact
	// per transaction, as the live handlers apply them.
	for i := 0; i < len(events[0]); i += 2 {
		var wg sync.WaitGroup
		for r := range replicas {
			wg.Go(func() {
				if _, err := replicas[r].Apply(context.Background(), events[r][i:i+2]); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	var wrong int
	if err := replicas[0].DB.QueryRowContext(context.Background(), `SELECT count(*) FROM journeys WHERE leads <> 2`).Scan(&wrong); err != nil {
		t.Fatal(err)
	}
	if wrong != 0 {
		t.Fatalf("%d of %d journeys miss a lead another replica projected at the same time", wrong, contacts)
	}
}
