package reporting_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/pgtest"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	reportingv1 "github.com/brokerflow/brokerflow/proto/brokerflow/reporting/v1"
	tmsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

// t0 is the scenario's start: 2026-03-02 09:00 UTC.
var t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

// published is one event as a publisher sends it.
type published struct {
	subject, id string
	msg         proto.Message
}

func lead(id, source string, at time.Duration) published {
	return published{"lead.normalized." + source, "lead.normalized:" + id, &leadv1.Lead{
		LeadId: id, LeadSource: source, ReceivedAt: timestamppb.New(t0.Add(at)),
		Inquiry:  &leadv1.Inquiry{Type: leadv1.InquiryType_INQUIRY_TYPE_BUY},
		Campaign: &leadv1.Campaign{UtmSource: source},
	}}
}

func rejected(id, source string, at time.Duration) published {
	return published{"lead.rejected." + source, "lead.rejected:" + id, &leadv1.LeadRejected{
		LeadId: id, LeadSource: source, Reason: "no email or phone",
		Partial: &leadv1.Lead{ReceivedAt: timestamppb.New(t0.Add(at))},
	}}
}

func synced(leadID, source, contact string, outcome crmv1.SyncOutcome, at time.Duration) published {
	return published{"crm.contact.synced", "crm.contact.synced:" + leadID, &crmv1.ContactSynced{
		LeadId: leadID, ContactId: contact, Crm: "followupboss", Outcome: outcome, LeadSource: source,
		SyncedAt: timestamppb.New(t0.Add(at)),
	}}
}

func stage(contact, from, to string, active bool, rev int, at time.Duration) published {
	return published{"crm.contact.stage_changed", "crm.contact.stage_changed:followupboss:" + contact + ":" + string(rune('0'+rev)), &crmv1.ContactStageChanged{
		ContactId: contact, Crm: "followupboss", OldStage: from, NewStage: to, ActiveClient: active,
		ChangedAt: timestamppb.New(t0.Add(at)), Correlation: &commonv1.Correlation{ContactId: contact, Source: "zillow"},
	}}
}

func updated(contact string, rev int, at time.Duration) published {
	return published{"crm.contact.updated", "crm.contact.updated:followupboss:" + contact + ":" + string(rune('0'+rev)), &crmv1.ContactUpdated{
		ContactId: contact, Crm: "followupboss", ChangedFields: []crmv1.ContactField{crmv1.ContactField_CONTACT_FIELD_PHONES},
		UpdatedAt: timestamppb.New(t0.Add(at)), Stage: "Nurture",
	}}
}

func spend(source, month string, dollars int64, n int) published {
	return published{bus.SpendSubject(source, month), "spend:" + source + ":" + month + ":" + string(rune('0'+n)), &reportingv1.SpendSet{
		Source: source, Month: month, Amount: &commonv1.Money{AmountMinor: dollars * 100, CurrencyCode: "USD"}, SetBy: "test",
		SetAt: timestamppb.New(t0),
	}}
}

func txOpened(loop, contact, leadID string, at time.Duration) published {
	return published{"tms.transaction.opened", "tms.transaction.opened:dotloop:" + loop, &tmsv1.TransactionOpened{
		TransactionId: loop, Tms: "dotloop", ProfileId: "4711", Crm: "followupboss", ContactId: contact,
		TransactionType: "PURCHASE_OFFER", Status: "PRE_OFFER", AgentId: "ada", Stage: "Active Client",
		OpenedAt: timestamppb.New(t0.Add(at)), EpisodeId: "ep_" + contact,
		Correlation: &commonv1.Correlation{LeadId: leadID, ContactId: contact, TransactionId: loop},
	}}
}

func txUpdated(loop, contact string, at time.Duration) published {
	return published{"tms.transaction.updated", "tms.transaction.updated:dotloop:" + loop + ":" + contact, &tmsv1.TransactionUpdated{
		TransactionId: loop, Tms: "dotloop", ProfileId: "4711", Crm: "followupboss", ContactId: contact,
		ChangedFields: []string{"phone"}, UpdatedAt: timestamppb.New(t0.Add(at)),
	}}
}

// address is a property as the TMS events carry it, at number on a street
// of the scenario's city.
func address(number, mls string) *tmsv1.Address {
	return &tmsv1.Address{StreetNumber: number, StreetName: "Waterview Dr", City: "San Francisco", State: "CA", PostalCode: "94114",
		Country: "US", MlsNumber: mls}
}

// withProperty is the opening o with the property p.
func withProperty(o published, p *tmsv1.Address) published {
	o.msg.(*tmsv1.TransactionOpened).Property = p
	return o
}

// propertySet is the tms.transaction.updated by which tms-sync announces
// the property p set on a loop opened without one; n tells apart updates
// of one loop, which tms-sync never sends (the projection still orders them).
func propertySet(loop, contact, leadID string, p *tmsv1.Address, n int, at time.Duration) published {
	return published{"tms.transaction.updated", fmt.Sprintf("tms.transaction.updated:dotloop:%s:property:%d", loop, n), &tmsv1.TransactionUpdated{
		TransactionId: loop, Tms: "dotloop", ProfileId: "4711", Crm: "followupboss", ContactId: contact,
		ChangedFields: []string{"property"}, UpdatedAt: timestamppb.New(t0.Add(at)), Property: p,
		Correlation: &commonv1.Correlation{LeadId: leadID, ContactId: contact, TransactionId: loop},
	}}
}

// txClosed is a closing with a sale price and a gross commission in
// dollars; contact is empty for a transaction tms-sync did not open.
func txClosed(loop, contact, leadID string, price, gross int64, at time.Duration) published {
	usd := func(dollars int64) *commonv1.Money {
		return &commonv1.Money{AmountMinor: dollars * 100, CurrencyCode: "USD"}
	}
	hash := fmt.Sprintf("%d-%d", price, gross)
	return published{"tms.transaction.closed", "tms.transaction.closed:dotloop:" + loop + ":" + hash, &tmsv1.TransactionClosed{
		TransactionId: loop, Tms: "dotloop", ProfileId: "4711", Status: "SOLD", SalePrice: usd(price), CloseDate: "2026-03-14",
		Commission: &tmsv1.Commission{Gross: usd(gross), AgentId: "ada", Side: "buy"}, FactsHash: hash,
		ClosedAt: timestamppb.New(t0.Add(at)), TransactionType: "PURCHASE_OFFER",
		Correlation: &commonv1.Correlation{LeadId: leadID, ContactId: contact, TransactionId: loop},
	}}
}

// scenario is a small brokerage morning. Ada comes from Zillow, then again
// from the website, and becomes an active client; Ben comes from the
// website; a Zillow lead is rejected; Zillow's spend is set twice. Ada's
// loop is opened in Dotloop, her phone carried into it, and it closes 12
// days after her first lead, announced first at $500,000 and then
// corrected to $525,000 with $15,750 gross commission; a loop tms-sync did
// not open closes too (no contact: credited to no one).
//
//	zillow: leads L1, R1 (rejected); contact C1 (first touch); L1 2 s to lead; C1's closing
//	idx:    leads L2 (C1 again, 5 s), L3 (C2, 1 s); contact C2 (first touch)
func scenario() []published {
	return []published{
		lead("ld_1", "zillow", 0),
		rejected("ld_r1", "zillow", 5*time.Minute),
		synced("ld_1", "zillow", "101", crmv1.SyncOutcome_SYNC_OUTCOME_CREATED, 2*time.Second),
		lead("ld_3", "idx", 10*time.Minute),
		synced("ld_3", "idx", "102", crmv1.SyncOutcome_SYNC_OUTCOME_CREATED, 10*time.Minute+time.Second),
		stage("102", "", "Lead", false, 1, 11*time.Minute),
		lead("ld_2", "idx", time.Hour),
		synced("ld_2", "idx", "101", crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING, time.Hour+5*time.Second),
		stage("101", "Lead", "Active Client", true, 2, 2*time.Hour),
		updated("102", 3, 3*time.Hour),
		stage("102", "Lead", "Nurture", false, 4, 3*time.Hour),
		spend("zillow", "2026-03", 500, 1),
		spend("idx", "2026-03", 300, 1),
		spend("zillow", "2026-03", 600, 2),
		txOpened("9001", "101", "ld_1", 2*time.Hour+time.Minute),
		txUpdated("9001", "101", 2*time.Hour+30*time.Minute),
		txClosed("9001", "101", "ld_1", 500000, 15000, 12*24*time.Hour-time.Hour),
		txClosed("9002", "", "", 300000, 9000, 5*24*time.Hour),
		txClosed("9001", "101", "ld_1", 525000, 15750, 12*24*time.Hour),
	}
}

// publishAll publishes events with the contract's headers, in order.
func publishAll(t *testing.T, js jetstream.JetStream, events []published) {
	t.Helper()
	pub := bus.NewPublisher(js, "test", nil)
	ctx := natstest.Context(t, 30*time.Second)
	for _, e := range events {
		if _, err := pub.Publish(ctx, e.subject, e.id, e.msg); err != nil {
			t.Fatal(err)
		}
	}
}

// asEvents turns published events into stream events without a server,
// numbered per stream, for the projection's own tests.
func asEvents(t *testing.T, events []published) []reporting.Event {
	t.Helper()
	seqs := map[string]uint64{}
	out := make([]reporting.Event, 0, len(events))
	for _, e := range events {
		data, err := proto.Marshal(e.msg)
		if err != nil {
			t.Fatal(err)
		}
		stream := streamOf(e.subject)
		seqs[stream]++
		h := nats.Header{}
		h.Set(bus.HeaderID, e.id)
		h.Set(bus.HeaderMsgID, e.id)
		h.Set(bus.HeaderType, string(e.msg.ProtoReflect().Descriptor().FullName()))
		out = append(out, reporting.Event{Stream: stream, Seq: seqs[stream], Subject: e.subject, Header: h, Data: data, Time: t0})
	}
	return out
}

func streamOf(subject string) string {
	for _, s := range bus.Streams {
		for _, f := range s.Subjects {
			if len(f) > 1 && f[len(f)-1] == '>' && len(subject) >= len(f)-1 && subject[:len(f)-1] == f[:len(f)-1] {
				return s.Name
			}
		}
	}
	return ""
}

// dump is every table of the read model as CSV.
func dump(t *testing.T, st *reporting.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tb := range reporting.Tables {
		var b bytes.Buffer
		if err := reporting.WriteCSV(context.Background(), st.DB, tb, &b); err != nil {
			t.Fatal(err)
		}
		out[tb.Name] = b.String()
	}
	return out
}

// typedDump is every table of the read model with each value's type, and
// NULL apart from the empty text, which the CSV export (dump) renders
// alike: for comparing two ways of making the same tables on one database.
func typedDump(t *testing.T, st *reporting.Store) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tb := range reporting.Tables {
		rows, err := st.DB.QueryContext(context.Background(), "SELECT * FROM "+tb.Name+" ORDER BY "+strings.Join(tb.Key, ", "))
		if err != nil {
			t.Fatal(err)
		}
		cols, err := rows.Columns()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		fmt.Fprintln(&b, strings.Join(cols, ","))
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		for rows.Next() {
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if i > 0 {
					b.WriteByte(',')
				}
				if v == nil {
					b.WriteString("NULL")
				} else {
					fmt.Fprintf(&b, "%T:%q", v, fmt.Sprint(v))
				}
			}
			b.WriteByte('\n')
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		_ = rows.Close()
		out[tb.Name] = b.String()
	}
	return out
}

// sameTables fails unless a and b hold the same rows in every table.
func sameTables(t *testing.T, what string, a, b map[string]string) {
	t.Helper()
	for _, tb := range reporting.Tables {
		if a[tb.Name] != b[tb.Name] {
			t.Errorf("%s: table %s differs:\n--- first\n%s--- second\n%s", what, tb.Name, a[tb.Name], b[tb.Name])
		}
	}
}

// The databases every test of the read model runs on.
const (
	onSQLite   = "sqlite"
	onPostgres = "postgres"
)

// onEach runs fn as a parallel subtest on each database.
// streams is an embedded JetStream with every stream the read model is
// built from.
func streams(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	natstest.Apply(t, js, bus.DefaultTopology())
	return js
}

func onEach(t *testing.T, fn func(t *testing.T, db string)) {
	t.Helper()
	for _, db := range []string{onSQLite, onPostgres} {
		t.Run(db, func(t *testing.T) {
			t.Parallel()
			fn(t, db)
		})
	}
}

// newPlace returns the settings of a new, empty place for read models on
// db: a directory, and for PostgreSQL a database of its own on the test
// binary's server.
func newPlace(t *testing.T, db string) (dir, dsn string) {
	t.Helper()
	dir = t.TempDir()
	if db == onPostgres {
		dsn = pgtest.New(t)
	}
	return dir, dsn
}

func openPlace(t *testing.T, dir, dsn string) reporting.Place {
	t.Helper()
	p, err := reporting.OpenPlace(context.Background(), dir, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// openStore opens a new, empty read model on db.
func openStore(t *testing.T, db string) *reporting.Store {
	t.Helper()
	dir, dsn := newPlace(t, db)
	st, err := openPlace(t, dir, dsn).Open(context.Background(), "test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func apply(t *testing.T, st *reporting.Store, events ...reporting.Event) {
	t.Helper()
	if _, err := st.Apply(context.Background(), events); err != nil {
		t.Fatal(err)
	}
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
