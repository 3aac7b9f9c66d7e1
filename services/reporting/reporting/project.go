package reporting

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	ledgerv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ledger/v1"
	reportingv1 "github.com/brokerflow/brokerflow/proto/brokerflow/reporting/v1"
	tmsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
)

// Event is one stream message as the projection takes it, from a durable
// consumer, a redrive or a replay's ordered consumer.
type Event struct {
	Stream  string
	Seq     uint64
	Subject string
	Header  nats.Header
	Data    []byte
	// Time is when the stream stored the message.
	Time time.Time
}

// ID is the event's id: its ce-id (the same as its Nats-Msg-Id), derived
// from its cause, so that a copy stored again after the duplicate window
// has the same id; a message without one is known by stream and sequence.
func (e Event) ID() string {
	if id := e.Header.Get(bus.HeaderID); id != "" {
		return id
	}
	if id := e.Header.Get(bus.HeaderMsgID); id != "" {
		return id
	}
	return fmt.Sprintf("%s:%d", e.Stream, e.Seq)
}

// Type is the event's ce-type, or the type its subject carries.
func (e Event) Type() string {
	if t := e.Header.Get(bus.HeaderType); t != "" {
		return t
	}
	switch {
	case strings.HasPrefix(e.Subject, "lead.normalized."):
		return typeLead
	case strings.HasPrefix(e.Subject, "lead.rejected."):
		return typeLeadRejected
	case e.Subject == "crm.contact.synced":
		return typeContactSynced
	case e.Subject == "crm.contact.stage_changed":
		return typeStageChanged
	case e.Subject == "crm.contact.updated":
		return typeContactUpdated
	case strings.HasPrefix(e.Subject, "reporting.spend."):
		return typeSpendSet
	case e.Subject == "tms.transaction.opened":
		return typeTxOpened
	case e.Subject == "tms.transaction.updated":
		return typeTxUpdated
	case e.Subject == "tms.transaction.closed":
		return typeTxClosed
	case e.Subject == "ledger.commission.booked":
		return typeBooked
	case e.Subject == "ledger.commission.paid":
		return typePaid
	}
	return "unknown"
}

// The event types the projection knows.
var (
	typeLead           = string((&leadv1.Lead{}).ProtoReflect().Descriptor().FullName())
	typeLeadRejected   = string((&leadv1.LeadRejected{}).ProtoReflect().Descriptor().FullName())
	typeContactSynced  = string((&crmv1.ContactSynced{}).ProtoReflect().Descriptor().FullName())
	typeStageChanged   = string((&crmv1.ContactStageChanged{}).ProtoReflect().Descriptor().FullName())
	typeContactUpdated = string((&crmv1.ContactUpdated{}).ProtoReflect().Descriptor().FullName())
	typeSpendSet       = string((&reportingv1.SpendSet{}).ProtoReflect().Descriptor().FullName())
	typeTxOpened       = string((&tmsv1.TransactionOpened{}).ProtoReflect().Descriptor().FullName())
	typeTxUpdated      = string((&tmsv1.TransactionUpdated{}).ProtoReflect().Descriptor().FullName())
	typeTxClosed       = string((&tmsv1.TransactionClosed{}).ProtoReflect().Descriptor().FullName())
	typeBooked         = string((&ledgerv1.CommissionBooked{}).ProtoReflect().Descriptor().FullName())
	typePaid           = string((&ledgerv1.CommissionPaid{}).ProtoReflect().Descriptor().FullName())
)

// errUndecodable marks an event whose body is not its type.
var errUndecodable = errors.New("reporting: undecodable event")

// decoded is an event with its body decoded; msg is nil for a type the
// projection does not know (a message type added to a stream after this
// version): it is recorded as applied but not projected.
type decoded struct {
	Event
	id, typ string
	msg     proto.Message
}

func decode(e Event) (decoded, error) {
	d := decoded{Event: e, id: e.ID(), typ: e.Type()}
	switch d.typ {
	case typeLead:
		d.msg = &leadv1.Lead{}
	case typeLeadRejected:
		d.msg = &leadv1.LeadRejected{}
	case typeContactSynced:
		d.msg = &crmv1.ContactSynced{}
	case typeStageChanged:
		d.msg = &crmv1.ContactStageChanged{}
	case typeContactUpdated:
		d.msg = &crmv1.ContactUpdated{}
	case typeSpendSet:
		d.msg = &reportingv1.SpendSet{}
	case typeTxOpened:
		d.msg = &tmsv1.TransactionOpened{}
	case typeTxUpdated:
		d.msg = &tmsv1.TransactionUpdated{}
	case typeTxClosed:
		d.msg = &tmsv1.TransactionClosed{}
	case typeBooked:
		d.msg = &ledgerv1.CommissionBooked{}
	case typePaid:
		d.msg = &ledgerv1.CommissionPaid{}
	default:
		return d, nil
	}
	if err := proto.Unmarshal(e.Data, d.msg); err != nil {
		return d, fmt.Errorf("%w: %s at %s/%d: %w", errUndecodable, d.typ, e.Stream, e.Seq, err)
	}
	// A TMS or LEDGER event is keyed by its transaction, and a payment by
	// its id on its document: without them it says nothing the read model
	// could hold.
	if tx, ok := d.msg.(interface{ GetTransactionId() string }); ok && tx.GetTransactionId() == "" {
		return d, fmt.Errorf("%w: %s at %s/%d: no transaction id", errUndecodable, d.typ, e.Stream, e.Seq)
	}
	if p, ok := d.msg.(*ledgerv1.CommissionPaid); ok && (p.GetPaymentId() == "" || p.GetDocumentId() == "") {
		return d, fmt.Errorf("%w: %s at %s/%d: no payment or document id", errUndecodable, d.typ, e.Stream, e.Seq)
	}
	return d, nil
}

// Observation is a lead's speed to lead, found while projecting live.
type Observation struct {
	Source string
	Speed  time.Duration
}

// batch is one transaction of the projection: the facts of each event are
// written as it comes, and what is derived from them (a journey) is
// recomputed once at the end, from the facts alone. So the tables do not
// depend on the order the events arrive in, across streams or within one:
// a contact synced before its lead was projected is joined when the lead
// comes, and a replay, which reads the streams one after another, makes
// the same tables as the live consumers, which interleave them.
type batch struct {
	tx       *sql.Tx
	stmts    *statements
	journeys map[journeyKey]bool
	cursors  map[string]cursor
	observed []Observation
	// noKey turns the idempotency key off, for the test that shows it is
	// needed. Never set otherwise.
	noKey bool
	// rebuild projects the batch in memory (bulk.go) and writes the facts
	// only; finishRebuild derives the rest once. It keeps every lead's row
	// (LEADS is read before CRM) and every event id it has applied, and
	// rows are this batch's rows, written at its end.
	rebuild bool
	leads   map[string]*leadRow
	seen    map[string]struct{}
	rows    bulkRows
	// memo keeps, in a rebuild into SQLite, what each contact's
	// journey needs of its stage changes and updates.
	memo *rebuildMemo
	// due are the leads whose row this batch writes: their LEADS event
	// came in it.
	due []string
	// queue, in a rebuild, keeps the statements for the writer: in pipe
	// into PostgreSQL (sent at once, one round trip per batch, not per
	// event), in later into SQLite.
	queue bool
	pipe  *pgx.Batch
	later []queued
}

// exec runs st, whose text is query, or queues it for the writer.
func (b *batch) exec(ctx context.Context, st *sql.Stmt, query string, args ...any) error {
	if b.pipe != nil {
		b.pipe.Queue(query, args...)
		return nil
	}
	if b.queue {
		b.later = append(b.later, queued{st, args})
		return nil
	}
	_, err := st.ExecContext(ctx, args...)
	return err
}

type journeyKey struct{ crm, contactID string }

type cursor struct {
	seq  uint64
	time time.Time
}

// apply projects one decoded event, unless its id was applied before.
func (b *batch) apply(ctx context.Context, d decoded) (bool, error) {
	if c := b.cursors[d.Stream]; d.Seq > c.seq {
		b.cursors[d.Stream] = cursor{d.Seq, d.Time}
	}
	projected := 0
	if d.msg != nil {
		projected = 1
	}
	if b.rebuild {
		// A fresh database: what it holds is what this rebuild applied.
		if _, ok := b.seen[d.id]; ok && !b.noKey {
			return false, nil
		}
		b.seen[d.id] = struct{}{}
		b.rows.add(bulkApplied, d.id, d.Stream, int64(d.Seq), d.Subject, d.typ, int64(projected))
	} else {
		res, err := b.stmts.applied.ExecContext(ctx, d.id, d.Stream, int64(d.Seq), d.Subject, d.typ, projected)
		if err != nil {
			return false, fmt.Errorf("record event %s: %w", d.id, err)
		}
		if n, err := res.RowsAffected(); err != nil {
			return false, err
		} else if n == 0 && !b.noKey {
			return false, nil
		}
	}
	switch m := d.msg.(type) {
	case *leadv1.Lead:
		return true, b.lead(ctx, d, m)
	case *leadv1.LeadRejected:
		return true, b.rejected(ctx, d, m)
	case *crmv1.ContactSynced:
		return true, b.synced(ctx, d, m)
	case *crmv1.ContactStageChanged:
		return true, b.stageChanged(ctx, d, m)
	case *crmv1.ContactUpdated:
		return true, b.updated(ctx, d, m)
	case *reportingv1.SpendSet:
		return true, b.spend(ctx, d, m)
	case *tmsv1.TransactionOpened:
		return true, b.txOpened(ctx, d, m)
	case *tmsv1.TransactionUpdated:
		return true, b.txUpdated(ctx, d, m)
	case *tmsv1.TransactionClosed:
		return true, b.txClosed(ctx, d, m)
	case *ledgerv1.CommissionBooked:
		return true, b.booked(ctx, d, m)
	case *ledgerv1.CommissionPaid:
		return true, b.paid(ctx, d, m)
	}
	return true, nil
}

// tsOr is ts as stored, or else the event's time (only then read).
func (d decoded) tsOr(ts *timestamppb.Timestamp) string {
	if ts == nil || !ts.IsValid() || (ts.GetSeconds() == 0 && ts.GetNanos() == 0) {
		return formatTime(d.eventTime())
	}
	return formatTime(ts.AsTime())
}

// eventTime is when the event says it was made (ce-time), or else when the
// stream stored it: both are fixed per message, so a replay agrees.
func (d decoded) eventTime() time.Time {
	if t, err := time.Parse(time.RFC3339Nano, d.Header.Get(bus.HeaderTime)); err == nil {
		return t
	}
	return d.Time
}

func nullStr(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func (b *batch) lead(ctx context.Context, d decoded, l *leadv1.Lead) error {
	inquiry := strings.TrimPrefix(l.GetInquiry().GetType().String(), "INQUIRY_TYPE_")
	if inquiry == "UNSPECIFIED" {
		inquiry = ""
	}
	args := []any{l.GetLeadId(), l.GetLeadSource(), "normalized", sql.NullString{},
		d.tsOr(l.GetReceivedAt()), strings.ToLower(inquiry),
		nullStr(l.GetCampaign().GetUtmSource()), nullStr(l.GetCampaign().GetUtmMedium()), nullStr(l.GetCampaign().GetUtmCampaign()),
		d.Stream, int64(d.Seq), nullStr(l.GetWebhook().GetStream()), nullSeq(l.GetWebhook().GetSequence())}
	if b.rebuild {
		b.leadOf(l.GetLeadId()).setLead(args)
		b.leadEvent(l.GetLeadId())
		return nil
	}
	var received, synced sql.NullString
	var crm, contact sql.NullString
	err := b.stmts.lead.QueryRowContext(ctx, args...).Scan(&received, &synced, &crm, &contact)
	if err != nil {
		return fmt.Errorf("project lead %s: %w", l.GetLeadId(), err)
	}
	return b.speed(ctx, l.GetLeadId(), l.GetLeadSource(), received, synced, crm, contact)
}

func nullSeq(s uint64) sql.NullInt64 { return sql.NullInt64{Int64: int64(s), Valid: s != 0} }

func (b *batch) rejected(ctx context.Context, d decoded, r *leadv1.LeadRejected) error {
	p := r.GetPartial()
	args := []any{r.GetLeadId(), r.GetLeadSource(), "rejected", nullStr(r.GetReason()),
		d.tsOr(p.GetReceivedAt()), "",
		nullStr(p.GetCampaign().GetUtmSource()), nullStr(p.GetCampaign().GetUtmMedium()), nullStr(p.GetCampaign().GetUtmCampaign()),
		d.Stream, int64(d.Seq), nullStr(r.GetWebhook().GetStream()), nullSeq(r.GetWebhook().GetSequence())}
	if b.rebuild {
		b.leadOf(r.GetLeadId()).setLead(args)
		b.leadEvent(r.GetLeadId())
		return nil
	}
	var received, synced sql.NullString
	var crm, contact sql.NullString
	err := b.stmts.lead.QueryRowContext(ctx, args...).Scan(&received, &synced, &crm, &contact)
	if err != nil {
		return fmt.Errorf("project rejected lead %s: %w", r.GetLeadId(), err)
	}
	return nil
}

func (b *batch) synced(ctx context.Context, d decoded, s *crmv1.ContactSynced) error {
	outcome := strings.ToLower(strings.TrimPrefix(s.GetOutcome().String(), "SYNC_OUTCOME_"))
	args := []any{s.GetLeadId(), nullStr(s.GetLeadSource()), nullStr(s.GetCrm()), nullStr(s.GetContactId()),
		outcome, nullStr(s.GetMatchedBy()), d.tsOr(s.GetSyncedAt()), int64(d.Seq)}
	if b.rebuild {
		r := b.leadOf(s.GetLeadId())
		r.setSynced(args)
		r.dirty = r.written
		return nil
	}
	// The journey of the contact the lead was synced to before loses it.
	var wasCRM, wasContact sql.NullString
	err := b.stmts.leadContact.QueryRowContext(ctx, s.GetLeadId()).Scan(&wasCRM, &wasContact)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("project contact synced for %s: %w", s.GetLeadId(), err)
	}
	if wasCRM.Valid && wasContact.Valid && (wasCRM.String != s.GetCrm() || wasContact.String != s.GetContactId()) {
		b.mark(wasCRM.String, wasContact.String)
		b.journeys[journeyKey{wasCRM.String, wasContact.String}] = true // it may have lost its last fact
	}
	var received, synced, source sql.NullString
	err = b.stmts.synced.QueryRowContext(ctx, args...).Scan(&received, &synced, &source)
	if err != nil {
		return fmt.Errorf("project contact synced for %s: %w", s.GetLeadId(), err)
	}
	return b.speed(ctx, s.GetLeadId(), source.String, received, synced, nullStr(s.GetCrm()), nullStr(s.GetContactId()))
}

// speed fills a lead's speed to lead once both its receipt and its contact
// are known, whichever came first, and marks its journey for recompute; a
// lead synced without a contact has none.
func (b *batch) speed(ctx context.Context, leadID, source string, received, synced, crm, contact sql.NullString) error {
	if crm.Valid && contact.Valid {
		b.mark(crm.String, contact.String)
	}
	if !received.Valid || !synced.Valid {
		return nil
	}
	if !contact.Valid {
		// Synced again without a contact (the CRM ignored it): the row says
		// no contact, and has no speed, as a rebuild of it has none.
		if _, err := b.stmts.speed.ExecContext(ctx, nil, leadID); err != nil {
			return fmt.Errorf("speed to lead of %s: %w", leadID, err)
		}
		return nil
	}
	r, err1 := parseTime(received.String)
	s, err2 := parseTime(synced.String)
	if err := errors.Join(err1, err2); err != nil {
		return err
	}
	if _, err := b.stmts.speed.ExecContext(ctx, speedMs(r, s), leadID); err != nil {
		return fmt.Errorf("speed to lead of %s: %w", leadID, err)
	}
	b.observed = append(b.observed, Observation{Source: source, Speed: s.Sub(r)})
	return nil
}

func (b *batch) stageChanged(ctx context.Context, d decoded, c *crmv1.ContactStageChanged) error {
	active := 0
	if c.GetActiveClient() {
		active = 1
	}
	args := []any{d.Stream, int64(d.Seq), d.id, c.GetCrm(), c.GetContactId(), c.GetOldStage(), c.GetNewStage(),
		int64(active), d.tsOr(c.GetChangedAt()), c.GetCorrelation().GetSource(), c.GetCorrelation().GetLeadId(), c.GetCrmEventId()}
	if b.rebuild {
		b.rows.add(bulkStages, args...)
		if b.memo.contacts != nil {
			b.memo.contactOf(c.GetCrm(), c.GetContactId()).stageChanged(int64(d.Seq), c.GetNewStage(), c.GetActiveClient(),
				args[8].(string), c.GetCorrelation().GetSource())
		}
		return nil
	}
	if _, err := b.stmts.stage.ExecContext(ctx, args...); err != nil {
		return fmt.Errorf("project stage change of %s: %w", c.GetContactId(), err)
	}
	b.mark(c.GetCrm(), c.GetContactId())
	return nil
}

// leadEvent notes that a LEADS event of the lead id came in this batch: a
// rebuild reads CRM before LEADS, so its row is then whole, and is
// written at the batch's end (projected), unless it was written before.
func (b *batch) leadEvent(id string) {
	r := b.leads[id]
	if r.written {
		r.dirty = true
		return
	}
	if !r.due {
		r.due = true
		b.due = append(b.due, id)
	}
}

// leadOf is the row a rebuild keeps of the lead id.
func (b *batch) leadOf(id string) *leadRow {
	r := b.leads[id]
	if r == nil {
		r = &leadRow{}
		b.leads[id] = r
	}
	return r
}

// mark notes a journey to recompute at the end of the batch (or, in a
// rebuild, at its end with every other).
// mark has the journey of (crm, contactID) recomputed at the batch's end.
// The value is whether the contact may have lost its last fact (a lead
// synced to another contact), and its journey with it.
func (b *batch) mark(crm, contactID string) {
	if k := (journeyKey{crm, contactID}); !b.rebuild && !b.journeys[k] {
		b.journeys[k] = false
	}
}

func (b *batch) updated(ctx context.Context, d decoded, u *crmv1.ContactUpdated) error {
	fields := make([]string, 0, len(u.GetChangedFields()))
	for _, f := range u.GetChangedFields() {
		fields = append(fields, strings.ToLower(strings.TrimPrefix(f.String(), "CONTACT_FIELD_")))
	}
	sort.Strings(fields)
	args := []any{d.Stream, int64(d.Seq), d.id, u.GetCrm(), u.GetContactId(), strings.Join(fields, ","),
		u.GetStage(), d.tsOr(u.GetUpdatedAt()), u.GetCorrelation().GetSource(), u.GetCrmEventId()}
	if b.rebuild {
		b.rows.add(bulkUpdates, args...)
		if b.memo.contacts != nil {
			b.memo.contactOf(u.GetCrm(), u.GetContactId()).updated(int64(d.Seq), args[7].(string), u.GetCorrelation().GetSource())
		}
		return nil
	}
	if _, err := b.stmts.update.ExecContext(ctx, args...); err != nil {
		return fmt.Errorf("project contact update of %s: %w", u.GetContactId(), err)
	}
	b.mark(u.GetCrm(), u.GetContactId())
	return nil
}

func (b *batch) spend(ctx context.Context, d decoded, s *reportingv1.SpendSet) error {
	currency := s.GetAmount().GetCurrencyCode()
	if currency == "" {
		currency = "USD"
	}
	err := b.exec(ctx, b.stmts.spendSet, sqlSpendSet, d.id, s.GetSource(), s.GetMonth(), s.GetAmount().GetAmountMinor(), currency,
		s.GetSetBy(), d.tsOr(s.GetSetAt()), s.GetNote(), d.Stream, int64(d.Seq))
	if err == nil {
		err = b.exec(ctx, b.stmts.spend, sqlSpend, s.GetSource(), s.GetMonth())
	}
	if err != nil {
		return fmt.Errorf("project spend of %s %s: %w", s.GetSource(), s.GetMonth(), err)
	}
	return nil
}

func (b *batch) txOpened(ctx context.Context, d decoded, o *tmsv1.TransactionOpened) error {
	err := b.exec(ctx, b.stmts.txOpened, sqlTxOpened, o.GetTransactionId(), nullStr(o.GetTms()), nullStr(o.GetCrm()),
		nullStr(o.GetContactId()), nullStr(o.GetCorrelation().GetLeadId()), nullStr(o.GetStatus()), d.tsOr(o.GetOpenedAt()),
		nullStr(o.GetTransactionType()), nullStr(o.GetProfileId()), nullStr(o.GetEpisodeId()))
	if err == nil {
		err = b.txProperty(ctx, o.GetTransactionId(), o.GetProperty(), 0)
	}
	if err != nil {
		return fmt.Errorf("project transaction opened %s: %w", o.GetTransactionId(), err)
	}
	if o.GetCrm() != "" && o.GetContactId() != "" {
		b.mark(o.GetCrm(), o.GetContactId())
	}
	return nil
}

// txUpdated projects a transaction updated: it names the transaction, and
// one that says a property was set on it (tms-sync's repair of a loop
// opened before the lead was known) gives the transaction that property.
func (b *batch) txUpdated(ctx context.Context, d decoded, u *tmsv1.TransactionUpdated) error {
	id := u.GetTransactionId()
	if err := b.txNamed(ctx, id, u.GetTms(), u.GetCrm(), u.GetContactId(), u.GetCorrelation().GetLeadId(), ""); err != nil {
		return err
	}
	if err := b.txProperty(ctx, id, u.GetProperty(), int64(d.Seq)); err != nil {
		return fmt.Errorf("project transaction updated %s: %w", id, err)
	}
	return nil
}

// txProperty gives the transaction id the property p, announced by the
// event at sequence seq (0 for its opening), unless it has one from its
// opening or from an earlier event; a nil or empty p changes nothing.
func (b *batch) txProperty(ctx context.Context, id string, p *tmsv1.Address, seq int64) error {
	street := strings.Join(strings.Fields(p.GetStreetNumber()+" "+p.GetStreetName()), " ")
	if u := strings.TrimSpace(p.GetUnit()); u != "" {
		street += " Unit " + u
	}
	street = cmp.Or(street, strings.TrimSpace(p.GetUnparsed()))
	if street == "" && p.GetCity() == "" && p.GetPostalCode() == "" && p.GetMlsNumber() == "" {
		return nil
	}
	return b.exec(ctx, b.stmts.txProperty, sqlTxProperty, id, nullStr(street), nullStr(p.GetCity()), nullStr(p.GetState()),
		nullStr(p.GetPostalCode()), nullStr(p.GetMlsNumber()), seq)
}

// txNamed makes sure the transaction has a row, fills the ids the event
// knows, and marks its journey, when it has one, for recompute.
func (b *batch) txNamed(ctx context.Context, id, tms, crm, contactID, leadID, typ string) error {
	args := []any{id, nullStr(tms), nullStr(crm), nullStr(contactID), nullStr(leadID), nullStr(typ)}
	if b.rebuild {
		return b.exec(ctx, b.stmts.txNamedFact, sqlTxNamedFact, args...)
	}
	var gotCRM, gotContact sql.NullString
	if err := b.stmts.txNamed.QueryRowContext(ctx, args...).Scan(&gotCRM, &gotContact); err != nil {
		return fmt.Errorf("project transaction %s: %w", id, err)
	}
	if gotCRM.Valid && gotContact.Valid {
		b.mark(gotCRM.String, gotContact.String)
	}
	return nil
}

func (b *batch) txClosed(ctx context.Context, d decoded, c *tmsv1.TransactionClosed) error {
	id, corr, com := c.GetTransactionId(), c.GetCorrelation(), c.GetCommission()
	if err := b.txNamed(ctx, id, c.GetTms(), "", corr.GetContactId(), corr.GetLeadId(), c.GetTransactionType()); err != nil {
		return err
	}
	currency := c.GetSalePrice().GetCurrencyCode()
	if currency == "" {
		currency = com.GetGross().GetCurrencyCode()
	}
	err := b.exec(ctx, b.stmts.closing, sqlClosing, d.Stream, int64(d.Seq), d.id, id, c.GetTms(), c.GetStatus(),
		d.tsOr(c.GetClosedAt()), nullStr(c.GetCloseDate()), nullMoney(c.GetSalePrice()), nullMoney(com.GetGross()),
		nullStr(currency), nullStr(com.GetAgentId()), nullStr(com.GetSide()), nullStr(corr.GetContactId()), nullStr(corr.GetLeadId()))
	if err == nil && !b.rebuild {
		_, err = b.stmts.txClosing.ExecContext(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("project transaction closed %s: %w", id, err)
	}
	return nil
}

func (b *batch) booked(ctx context.Context, d decoded, c *ledgerv1.CommissionBooked) error {
	id, corr := c.GetTransactionId(), c.GetCorrelation()
	if err := b.txNamed(ctx, id, c.GetTms(), "", corr.GetContactId(), corr.GetLeadId(), ""); err != nil {
		return err
	}
	err := b.exec(ctx, b.stmts.booking, sqlBooking, d.Stream, int64(d.Seq), d.id, id, c.GetTms(), c.GetLedger(), c.GetCompanyId(),
		c.GetDocumentType(), c.GetDocumentId(), c.GetDocumentNumber(), c.GetAgentId(), nullMoney(c.GetGross()),
		nullMoney(c.GetBrokerageNet()), nullMoney(c.GetAgentShare()), nullStr(c.GetGross().GetCurrencyCode()), c.GetPlanId(),
		d.tsOr(c.GetBookedAt()), c.GetFactsHash(), nullStr(corr.GetContactId()), nullStr(corr.GetLeadId()))
	if err == nil {
		err = b.ledgered(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("project commission booked %s: %w", id, err)
	}
	return nil
}

func (b *batch) paid(ctx context.Context, d decoded, p *ledgerv1.CommissionPaid) error {
	id, corr := p.GetTransactionId(), p.GetCorrelation()
	if err := b.txNamed(ctx, id, "", "", corr.GetContactId(), corr.GetLeadId(), ""); err != nil {
		return err
	}
	fully := int64(0)
	if p.GetFullyPaid() {
		fully = 1
	}
	err := b.exec(ctx, b.stmts.payment, sqlPayment, p.GetLedger(), p.GetDocumentId(), p.GetPaymentId(), d.Stream, int64(d.Seq), d.id,
		id, p.GetCompanyId(), p.GetDocumentType(), p.GetAmount().GetAmountMinor(), nullStr(p.GetAmount().GetCurrencyCode()),
		nullStr(p.GetPaidDate()), nullMoney(p.GetBalance()), fully, d.tsOr(p.GetObservedAt()))
	if err == nil {
		err = b.ledgered(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("project commission paid %s: %w", id, err)
	}
	return nil
}

// ledgered derives the transaction's commission columns, live; a rebuild
// derives them once at its end.
func (b *batch) ledgered(ctx context.Context, id string) error {
	if b.rebuild {
		return nil
	}
	_, err := b.stmts.txLedger.ExecContext(ctx, id)
	return err
}

func nullMoney(m *commonv1.Money) sql.NullInt64 {
	return sql.NullInt64{Int64: m.GetAmountMinor(), Valid: m != nil}
}

// speedMs is a lead's speed to lead as stored.
func speedMs(received, synced time.Time) int64 { return max(synced.Sub(received).Milliseconds(), 0) }

// finish recomputes the journeys the batch touched and moves the cursors.
func (b *batch) finish(ctx context.Context) error {
	keys := make([]journeyKey, 0, len(b.journeys))
	for k := range b.journeys {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].crm != keys[j].crm {
			return keys[i].crm < keys[j].crm
		}
		return keys[i].contactID < keys[j].contactID
	})
	for _, k := range keys {
		if _, err := b.stmts.journey.ExecContext(ctx, k.crm, k.contactID); err != nil {
			return fmt.Errorf("recompute journey %s/%s: %w", k.crm, k.contactID, err)
		}
		if !b.journeys[k] {
			continue
		}
		// A rebuild makes no journey for a contact no fact names.
		if _, err := b.stmts.journeyGone.ExecContext(ctx, k.crm, k.contactID); err != nil {
			return fmt.Errorf("remove journey %s/%s: %w", k.crm, k.contactID, err)
		}
	}
	streams := make([]string, 0, len(b.cursors))
	for s := range b.cursors {
		streams = append(streams, s)
	}
	sort.Strings(streams)
	for _, s := range streams {
		c := b.cursors[s]
		if err := b.exec(ctx, b.stmts.cursor, sqlCursor, s, int64(c.seq), formatTime(c.time)); err != nil {
			return fmt.Errorf("cursor of %s: %w", s, err)
		}
	}
	return nil
}
