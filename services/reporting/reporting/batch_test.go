package reporting_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	tmsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

// busyDay is a few hundred events in every shape the projection knows,
// drawn with a fixed seed: leads on a few dozen contacts in two CRMs, some
// rejected, some received at the same instant, some synced to no contact,
// some synced with no lead event; stage changes and contact updates, some
// at the same instant; transactions opened, updated and closed, corrected,
// and closed without an opening; properties given by an opening, or set
// after it by an update (some twice, some beside an opening that has one); commissions booked and paid in parts,
// a payment announced by two events; spend set and set again. They are
// shuffled, so that closings come before openings and a contact's stage
// before its leads.
func busyDay(r *rand.Rand) []published {
	var out []published
	at := func(maxMin int) time.Duration { return time.Duration(r.IntN(maxMin)) * time.Minute }
	contact := func() (string, string) {
		crm := "followupboss"
		if r.IntN(6) == 0 {
			crm = "liondesk"
		}
		return crm, fmt.Sprintf("%d", 100+r.IntN(30))
	}
	sources := []string{"idx", "zillow", "realtor", "facebook"}
	for i := range 160 {
		id, source := fmt.Sprintf("ld_%03d", i), sources[r.IntN(len(sources))]
		received := at(600) // ten hours: several leads share a minute
		switch {
		case i%11 == 0:
			out = append(out, rejected(id, source, received))
			continue
		case i%13 != 0: // every thirteenth is only known from its CRM step
			out = append(out, lead(id, source, received))
		}
		if i%7 == 0 {
			continue // not synced (yet)
		}
		crm, c := contact()
		outcome := crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING
		if i%17 == 0 {
			c, outcome = "", crmv1.SyncOutcome_SYNC_OUTCOME_IGNORED
		}
		s := synced(id, source, c, outcome, received+time.Duration(1+r.IntN(90))*time.Second)
		s.msg.(*crmv1.ContactSynced).Crm = crm
		if i%3 == 0 { // the name crm-sync knows the source by may differ
			s.msg.(*crmv1.ContactSynced).LeadSource = "crm:" + source
		}
		out = append(out, s)
	}
	crmSources := []string{"", "Zillow", "Website"}
	for i := range 60 {
		crm, c := contact()
		active := r.IntN(3) == 0
		st := stage(c, "Lead", []string{"Nurture", "Active Client", "Lead"}[r.IntN(3)], active, 0, at(60)*10)
		sc := st.msg.(*crmv1.ContactStageChanged)
		sc.Crm, sc.Correlation.Source = crm, crmSources[r.IntN(len(crmSources))]
		st.id = fmt.Sprintf("crm.contact.stage_changed:%s:%s:%d", crm, c, i)
		out = append(out, st)
	}
	for i := range 30 {
		crm, c := contact()
		u := updated(c, 0, at(60)*10)
		cu := u.msg.(*crmv1.ContactUpdated)
		cu.Crm, cu.Correlation = crm, &commonv1.Correlation{Source: crmSources[r.IntN(len(crmSources))]}
		u.id = fmt.Sprintf("crm.contact.updated:%s:%s:%d", crm, c, i)
		out = append(out, u)
	}
	for i := range 12 {
		loop := fmt.Sprintf("%d", 9000+i)
		_, c := contact()
		leadID := fmt.Sprintf("ld_%03d", r.IntN(160))
		if i%5 != 4 { // every fifth is a loop tms-sync did not open
			opened := txOpened(loop, c, leadID, at(600))
			switch i % 3 {
			case 0: // opened with its property; an update's property loses to it
				opened = withProperty(opened, address(loop, "MLS"+loop))
				if i%2 == 0 {
					out = append(out, propertySet(loop, c, leadID, address("1", "MLS-late"), 0, at(600)))
				}
			case 1: // opened without; the property set after, sometimes announced twice
				opened.msg.(*tmsv1.TransactionOpened).Correlation.LeadId = ""
				for n := range 1 + i%2 {
					out = append(out, propertySet(loop, c, leadID, address(fmt.Sprintf("%s%d", loop, n), "MLS"+loop), n, at(600)))
				}
			}
			out = append(out, opened, txUpdated(loop, c, at(600)))
			// Two contacts get a second transaction opened the same minute.
			if i < 2 {
				out = append(out, txOpened(fmt.Sprintf("%d", 9100+i), c, leadID, at(600)))
			}
		} else {
			c, leadID = "", ""
		}
		for k := range 1 + r.IntN(3) {
			out = append(out, txClosed(loop, c, leadID, int64(400000+k*1000), int64(12000+k*30), 24*time.Hour+at(600)))
		}
		if i%3 != 2 { // booked in the ledger, and paid in parts, some twice
			invoice := fmt.Sprintf("%d", 1000+i)
			out = append(out, booked(loop, c, invoice, 1_200_000, 360_000, 840_000, 48*time.Hour+at(600)))
			for k := range r.IntN(3) {
				id := fmt.Sprintf("ledger.commission.paid:quickbooks:inv-%s:pay-%d", invoice, k)
				p := paid(id, loop, invoice, fmt.Sprintf("pay-%d", k), 400_000, 800_000-int64(k)*400_000, 72*time.Hour+at(600))
				out = append(out, p)
				if r.IntN(2) == 0 {
					p.id += ":again"
					out = append(out, p)
				}
			}
		}
	}
	out = append(out, journeyEdges()...)
	for i := range 8 {
		out = append(out, spend(sources[i%len(sources)], "2026-03", int64(100*(i+1)), i/len(sources)))
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// journeyEdges are the cases a journey's derivation must order exactly as
// SQL does, on contacts of their own (200 and up), whatever order the
// events come in: two leads received at the same instant (the lower lead
// id is first, the higher last), and a lead with no receipt, synced before
// them (counted, and the contact's time, but neither first nor last); two
// stage changes at the same instant (the higher sequence is the latest), one
// with a CRM source and one without, beside an update with one; a contact
// with only an update, with only a stage change, and with only an update
// that has no CRM source; two updates at the same instant, one with a
// source and one without.
func journeyEdges() []published {
	const crm = "followupboss"
	stageAt := func(id, contact, to string, active bool, source string, at time.Duration) published {
		st := stage(contact, "Lead", to, active, 0, at)
		st.id = "crm.contact.stage_changed:" + crm + ":" + contact + ":" + id
		st.msg.(*crmv1.ContactStageChanged).Correlation.Source = source
		return st
	}
	updateAt := func(id, contact, source string, at time.Duration) published {
		u := updated(contact, 0, at)
		u.id = "crm.contact.updated:" + crm + ":" + contact + ":" + id
		u.msg.(*crmv1.ContactUpdated).Correlation = &commonv1.Correlation{Source: source}
		return u
	}
	return []published{
		lead("ld_e02", "zillow", 30*time.Minute),
		lead("ld_e01", "idx", 30*time.Minute),
		synced("ld_e01", "idx", "201", crmv1.SyncOutcome_SYNC_OUTCOME_CREATED, 31*time.Minute),
		synced("ld_e02", "zillow", "201", crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING, 32*time.Minute),
		synced("ld_e03", "realtor", "201", crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING, time.Minute),
		stageAt("a", "202", "Nurture", false, "Zillow", 2*time.Hour),
		stageAt("b", "202", "Active Client", true, "", 2*time.Hour),
		stageAt("c", "202", "Lead", false, "Website", time.Hour),
		updateAt("a", "202", "Website", 3*time.Hour),
		updateAt("a", "203", "Zillow", time.Hour),
		stageAt("a", "204", "Active Client", true, "", time.Hour),
		stageAt("b", "204", "Active Client", true, "Zillow", 30*time.Minute),
		updateAt("a", "205", "", time.Hour),
		updateAt("a", "206", "Zillow", time.Hour),
		updateAt("b", "206", "", time.Hour),
		updateAt("c", "206", "Website", 30*time.Minute),
	}
}

// publishWithCopies publishes events as publishAll does, and a copy of one
// in five of them stored again under a new sequence (the same ce-id, as
// after the duplicate window), some before their original.
func publishWithCopies(t *testing.T, js jetstream.JetStream, r *rand.Rand, events []published) {
	t.Helper()
	ctx := natstest.Context(t, 30*time.Second)
	send := func(e published, msgID string) {
		data, err := proto.Marshal(e.msg)
		if err != nil {
			t.Fatal(err)
		}
		h := nats.Header{}
		h.Set(bus.HeaderMsgID, msgID)
		h[bus.HeaderID] = []string{e.id}
		h[bus.HeaderType] = []string{string(e.msg.ProtoReflect().Descriptor().FullName())}
		h.Set(bus.HeaderContentType, bus.ContentTypeProtobuf)
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: e.subject, Header: h, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	var later []published
	for i, e := range events {
		if i%5 == 0 {
			if r.IntN(2) == 0 {
				send(e, e.id+"#copy") // the copy first
			} else {
				later = append(later, e)
			}
		}
		send(e, e.id)
	}
	for _, e := range later {
		send(e, e.id+"#copy")
	}
}

// streamEvents reads every message of the read model's streams as the
// projection takes them.
func streamEvents(t *testing.T, js jetstream.JetStream) []reporting.Event {
	t.Helper()
	var out []reporting.Event
	for _, stream := range reporting.ReplayStreams {
		for _, m := range natstest.All(t, js, stream, ">") {
			meta, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, reporting.Event{Stream: stream, Seq: meta.Sequence.Stream, Subject: m.Subject(), Header: m.Headers(),
				Data: m.Data(), Time: meta.Timestamp})
		}
	}
	return out
}

// liveAndRebuilt projects the events of js's streams two ways into a new
// place on db: live, one Apply per event in the order events gives, and by
// a rebuild in batches of batchSize.
func liveAndRebuilt(t *testing.T, js jetstream.JetStream, db string, events []reporting.Event, batchSize int) (live, rebuilt *reporting.Store, res reporting.ReplayResult) {
	t.Helper()
	dir, dsn := newPlace(t, db)
	place := openPlace(t, dir, dsn)
	ctx := natstest.Context(t, time.Minute)
	open := func(name string) *reporting.Store {
		st, err := place.Open(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	live = open("live")
	for _, e := range events {
		if _, err := live.Apply(ctx, []reporting.Event{e}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := reporting.Rebuild(ctx, js, place, "rebuilt", reporting.ReplayOptions{BatchSize: batchSize})
	if err != nil {
		t.Fatal(err)
	}
	return live, open("rebuilt"), res
}

// A rebuild projects each batch in memory and writes each table once per
// batch (and the leads and journeys once at its end); the live projection
// applies event by event. Over the same events, copies and shuffled
// arrivals included, the two must make identical tables.
func TestRebuild_batchedProjectionMakesTheTablesOfEventByEvent(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		js := streams(t)
		r := rand.New(rand.NewPCG(19, 2026))
		publishWithCopies(t, js, r, busyDay(r))
		events := streamEvents(t, js)

		// Event by event, in an order of their own: the live consumers
		// interleave the streams, and several handlers each stream. The
		// rebuild in batches of 7, so that a lead and its CRM step, a
		// contact's facts and the copies of an event fall into different
		// batches.
		r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
		live, rebuilt, res := liveAndRebuilt(t, js, db, events, 7)
		if res.Read != len(events) {
			t.Fatalf("the rebuild read %d events, want %d", res.Read, len(events))
		}
		want := typedDump(t, live)
		got := typedDump(t, rebuilt)
		sameTables(t, "batched against event by event", want, got)

		// The scenario reaches what it means to: joins, ties, speeds, copies.
		ctx := context.Background()
		var journeys, speeds, closings int
		err := errors.Join(
			rebuilt.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM journeys WHERE first_lead_id IS NOT NULL AND stage IS NOT NULL AND transaction_id IS NOT NULL`).Scan(&journeys),
			rebuilt.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM leads WHERE speed_to_lead_ms IS NOT NULL`).Scan(&speeds),
			rebuilt.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM transactions WHERE closed_at IS NOT NULL`).Scan(&closings),
		)
		if err != nil {
			t.Fatal(err)
		}
		var paidTx, openedProperty, laterProperty int
		err = errors.Join(
			rebuilt.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM transactions WHERE commission_paid_minor > 0`).Scan(&paidTx),
			rebuilt.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM transactions WHERE property_seq = 0`).Scan(&openedProperty),
			rebuilt.DB.QueryRowContext(ctx, `SELECT COUNT(*) FROM transactions WHERE property_seq > 0`).Scan(&laterProperty),
		)
		if err != nil {
			t.Fatal(err)
		}
		// The edges come out as SQL orders them, whatever the arrival.
		for _, c := range []struct{ contact, cols, want string }{
			{"201", "leads || ' ' || first_lead_id || ' ' || last_lead_id || ' ' || contact_at", "3 ld_e01 ld_e02 2026-03-02T09:01:00.000000Z"},
			{"203", "crm_source || ' ' || COALESCE(stage, 'none')", "Zillow none"},
			{"204", "stage_at || ' ' || active_client_at || ' ' || COALESCE(crm_source, 'none')", "2026-03-02T10:00:00.000000Z 2026-03-02T09:30:00.000000Z none"},
			{"205", "COALESCE(crm_source, 'none') || ' ' || leads", "none 0"},
		} {
			var got string
			if err := rebuilt.DB.QueryRowContext(ctx, `SELECT `+c.cols+` FROM journeys WHERE crm = 'followupboss' AND contact_id = $1`, c.contact).Scan(&got); err != nil {
				t.Fatalf("journey of %s: %v", c.contact, err)
			}
			if got != c.want {
				t.Errorf("journey of %s: %s = %q, want %q", c.contact, c.cols, got, c.want)
			}
		}
		if journeys == 0 || speeds < 50 || closings < 10 || paidTx < 2 || openedProperty < 2 || laterProperty < 2 || res.Applied >= res.Read {
			t.Fatalf("the scenario is thinner than meant: %d full journeys, %d speeds, %d closings, %d paid, %d properties from an opening and %d set later, %d of %d events new",
				journeys, speeds, closings, paidTx, openedProperty, laterProperty, res.Applied, res.Read)
		}
	})
}

// A rebuild writes a lead's row when its LEADS event comes (it reads CRM
// before LEADS, so the row is whole then). A second LEADS event of the
// lead, in a later batch (a lead normalized again, as after a redrive),
// changes the row after it was written: it is written again at the end,
// as the live projection's upsert leaves it.
func TestRebuild_aLeadChangedAfterItsRowIsWrittenIsWrittenAgain(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		js := streams(t)
		again := lead("ld_001", "zillow", 3*time.Minute)
		again.id += ":redriven"
		events := []published{
			lead("ld_001", "idx", time.Minute),
			synced("ld_001", "idx", "101", crmv1.SyncOutcome_SYNC_OUTCOME_CREATED, 2*time.Minute),
			lead("ld_002", "idx", time.Minute),
			lead("ld_003", "idx", time.Minute),
			again,
		}
		publishAll(t, js, events)
		// The stream's order, which the live projection's upserts follow.
		live, rebuilt, _ := liveAndRebuilt(t, js, db, streamEvents(t, js), 2)
		sameTables(t, "batched against event by event", typedDump(t, live), typedDump(t, rebuilt))
		var source string
		if err := rebuilt.DB.QueryRowContext(context.Background(), `SELECT source FROM leads WHERE lead_id = 'ld_001'`).Scan(&source); err != nil {
			t.Fatal(err)
		}
		if source != "zillow" {
			t.Fatalf("ld_001's source is %q, want the later LEADS event's zillow", source)
		}
	})
}

// A lead synced again, to another contact (crm-sync's contact for it
// changed, as after a merge in the CRM), leaves the journey of the first:
// that journey no longer counts it, nor takes it for its first or last
// lead, and the second does; a contact left by its only lead has no
// journey. The live projection, event by event in the streams' order, and
// a rebuild agree.
func TestRebuild_aLeadSyncedToAnotherContactMovesToItsJourney(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		js := streams(t)
		again := synced("ld_1", "zillow", "302", crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING, 3*time.Minute)
		again.id += ":again"
		onlyAgain := synced("ld_3", "zillow", "302", crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING, 3*time.Minute)
		onlyAgain.id += ":again"
		// Synced again without a contact: the CRM ignored it the second time.
		ignored := synced("ld_4", "zillow", "", crmv1.SyncOutcome_SYNC_OUTCOME_IGNORED, 3*time.Minute)
		ignored.id += ":again"
		publishAll(t, js, []published{
			lead("ld_1", "zillow", time.Minute),
			lead("ld_2", "idx", 2*time.Minute),
			lead("ld_3", "zillow", time.Minute),
			lead("ld_4", "zillow", time.Minute),
			synced("ld_1", "zillow", "301", crmv1.SyncOutcome_SYNC_OUTCOME_CREATED, 2*time.Minute),
			synced("ld_2", "idx", "301", crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING, 3*time.Minute),
			synced("ld_3", "zillow", "303", crmv1.SyncOutcome_SYNC_OUTCOME_CREATED, 2*time.Minute),
			synced("ld_4", "zillow", "304", crmv1.SyncOutcome_SYNC_OUTCOME_CREATED, 2*time.Minute),
			again, onlyAgain, ignored,
		})
		live, rebuilt, _ := liveAndRebuilt(t, js, db, streamEvents(t, js), 2)
		sameTables(t, "batched against event by event", typedDump(t, live), typedDump(t, rebuilt))
		for _, st := range []*reporting.Store{live, rebuilt} {
			var leads int
			var first string
			if err := st.DB.QueryRowContext(context.Background(),
				`SELECT leads, first_lead_id FROM journeys WHERE crm = 'followupboss' AND contact_id = '301'`).Scan(&leads, &first); err != nil {
				t.Fatal(err)
			}
			if leads != 1 || first != "ld_2" {
				t.Errorf("%s: contact 301's journey has %d leads, the first %s; want ld_2 alone", st.Name, leads, first)
			}
			var n int
			if err := st.DB.QueryRowContext(context.Background(),
				`SELECT COUNT(*) FROM journeys WHERE crm = 'followupboss' AND contact_id = '303'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("%s: contact 303, which no fact names any more, has a journey", st.Name)
			}
			var speed sql.NullInt64
			if err := st.DB.QueryRowContext(context.Background(),
				`SELECT speed_to_lead_ms FROM leads WHERE lead_id = 'ld_4'`).Scan(&speed); err != nil {
				t.Fatal(err)
			}
			if speed.Valid {
				t.Errorf("%s: ld_4, synced last without a contact, has a speed to lead of %d ms", st.Name, speed.Int64)
			}
		}
	})
}

// A transaction opened before its lead was known gets its property from
// the tms.transaction.updated that announces it set afterwards, whether
// that update is projected before or after the opening (tms-sync may
// announce it first); a transaction opened with a property keeps it over a
// later update's, and of two updates the first in the stream wins. The
// live projection, event by event, and a rebuild agree, and a copy of the
// update (announced again after the duplicate window) changes nothing.
func TestRebuild_aPropertySetAfterTheOpeningIsTheTransactions(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		js := streams(t)
		r := rand.New(rand.NewPCG(7, 2026))
		openedBare := txOpened("9001", "401", "", time.Minute)
		publishWithCopies(t, js, r, []published{
			lead("ld_401", "zillow", 0),
			synced("ld_401", "zillow", "401", crmv1.SyncOutcome_SYNC_OUTCOME_CREATED, time.Second),
			propertySet("9001", "401", "ld_401", address("2100", "43FSB8"), 0, 2*time.Minute), // before its opening
			openedBare,
			withProperty(txOpened("9002", "402", "ld_402", time.Minute), address("77", "MLS77")),
			propertySet("9002", "402", "ld_402", address("1", "MLS1"), 0, 2*time.Minute),
			txOpened("9003", "403", "", time.Minute),
			propertySet("9003", "403", "ld_403", address("10", "MLS10"), 0, 2*time.Minute),
			propertySet("9003", "403", "ld_403", address("20", "MLS20"), 1, 3*time.Minute),
		})
		events := streamEvents(t, js)
		for name, order := range map[string][]reporting.Event{"stream": events, "reversed": reversed(events)} {
			live, rebuilt, _ := liveAndRebuilt(t, js, db, order, 2)
			sameTables(t, "batched against event by event, "+name+" order", typedDump(t, live), typedDump(t, rebuilt))
			for _, st := range []*reporting.Store{live, rebuilt} {
				for _, c := range []struct{ tx, want string }{
					{"9001", "2100 Waterview Dr|San Francisco|CA|94114|43FSB8|ld_401"},
					{"9002", "77 Waterview Dr|San Francisco|CA|94114|MLS77|ld_402"},
					{"9003", "10 Waterview Dr|San Francisco|CA|94114|MLS10|ld_403"},
				} {
					var got string
					err := st.DB.QueryRowContext(context.Background(), `SELECT COALESCE(property_address, '') || '|' || COALESCE(property_city, '') || '|' ||
  COALESCE(property_state, '') || '|' || COALESCE(property_postal_code, '') || '|' || COALESCE(property_mls_number, '') || '|' ||
  COALESCE(lead_id, '') FROM transactions WHERE transaction_id = $1`, c.tx).Scan(&got)
					if err != nil {
						t.Fatal(err)
					}
					if got != c.want {
						t.Errorf("%s, %s order: transaction %s is %q, want %q", st.Name, name, c.tx, got, c.want)
					}
				}
			}
		}
	})
}

func reversed(events []reporting.Event) []reporting.Event {
	out := make([]reporting.Event, len(events))
	for i, e := range events {
		out[len(events)-1-i] = e
	}
	return out
}
