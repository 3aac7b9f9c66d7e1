package ledgersync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/agents"
	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/commission"
	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/money"
	"github.com/brokerflow/brokerflow/pkg/tms"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	ledgerv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ledger/v1"
	tmsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
)

// Booking states of a transaction's record.
const (
	statePending = "pending" // claimed; the ledger call may or may not have happened
	stateBooked  = "booked"
)

// statusSold is the TMS status of a closed sale.
const statusSold = "SOLD"

// casAttempts bounds the compare-and-swap loops on one record.
const casAttempts = 8

// Items are the names of the ledger's items, one per component.
var Items = map[string]string{
	ledger.KindBrokerageShare: "Commission income",
	ledger.KindAgentShare:     "Agent commission",
	ledger.KindFranchiseFee:   "Franchise fee",
	ledger.KindTransactionFee: "Transaction fee",
	ledger.KindReferralFee:    "Referral fee",
}

// facts are what a booking is made of, as the TMS holds them.
type facts struct {
	GrossMinor     int64  `json:"gross_minor"`
	ReferralMinor  int64  `json:"referral_minor"`
	PriceMinor     int64  `json:"price_minor"`
	CloseDate      string `json:"close_date"`
	ReferralSource string `json:"referral_source,omitempty"`
	AgentID        string `json:"agent_id"`
}

// sameAmounts reports whether g books the same as f: the same gross,
// referral and agent. A closing that differs in these is a correction.
func (f facts) sameAmounts(g facts) bool {
	return f.GrossMinor == g.GrossMinor && f.ReferralMinor == g.ReferralMinor && f.AgentID == g.AgentID
}

func (f facts) String() string {
	s := "gross " + money.Format(f.GrossMinor) + ", agent " + f.AgentID
	if f.ReferralMinor > 0 {
		s += ", referral " + money.Format(f.ReferralMinor)
	}
	return s
}

// txRecord is a transaction's record under ledger-sync.tx.<tms>.<id>: the
// claim on its booking, then what was booked.
type txRecord struct {
	State string `json:"state"`
	// Since and Fence are the current claim: when, and by which message
	// (<stream>/<sequence>). The same message redelivered is its holder
	// after a crash and goes on at once; another waits until the claim is
	// stale.
	Since    time.Time `json:"since"`
	Fence    string    `json:"fence"`
	Facts    facts     `json:"facts"`
	PlanID   string    `json:"plan_id"`
	PlanYear string    `json:"plan_year"`
	// Booked and Event are set once booked: what the ledger holds, and the
	// CommissionBooked announced, kept to announce it again.
	Booked ledger.Booked `json:"booked"`
	Event  []byte        `json:"event,omitempty"`
}

// yearToDate is an agent's plan-year record under
// ledger-sync.ytd.<agent>.<plan year>: the brokerage share so far, and each
// transaction counted in it with its split. One compare-and-swap adds a
// transaction to both, so it counts once whoever retries.
type yearToDate struct {
	TotalMinor int64                       `json:"total_minor"`
	Counted    map[string]commission.Split `json:"counted"`
}

// closing is a closed transaction as ledger-sync books it.
type closing struct {
	facts
	tx       tms.Transaction
	agent    agents.Agent
	payer    ledger.Party
	property string
}

var (
	// errBusy is another message holding a live claim on the transaction.
	errBusy = errors.New("another message is booking this transaction")
	// errBooked is a transaction booked already with the same amounts.
	errBooked = errors.New("booked already")
)

// HandleClosed books one tms.transaction.closed.
func (s *Syncer) HandleClosed(ctx context.Context, m *bus.Message) error {
	var ev tmsv1.TransactionClosed
	if err := proto.Unmarshal(m.Data, &ev); err != nil {
		return bus.Undecodable("decode TransactionClosed at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	if ev.GetTransactionId() == "" {
		return bus.Undecodable("the closing at %s/%d has no transaction id", m.Stream, m.Sequence)
	}
	if why := ev.GetCommission().GetUnavailable(); why != "" {
		// A TMS that cannot give the commission (SkySlope): the rule for
		// missing financials, before asking a TMS that cannot say either.
		return bus.WithCode("ledger.closing_incomplete", bus.Permanentf("transaction %s closed in %s without %s: nothing booked. Book it by hand, or enter the commission where ledger-sync can read it", ev.GetTransactionId(), ev.GetTms(), why))
	}
	if ev.GetTms() != s.cfg.TMS {
		return bus.WithCode("ledger.unknown_tms", bus.Permanentf("transaction %s closed in %q, and ledger-sync reads %q (LEDGERSYNC_TMS): nothing booked", ev.GetTransactionId(), ev.GetTms(), s.cfg.TMS))
	}
	if s.tms == nil {
		return bus.WithCode("ledger.closing_incomplete", bus.Permanentf("transaction %s closed in %s, whose commission ledger-sync cannot read: nothing booked. Book it by hand", ev.GetTransactionId(), ev.GetTms()))
	}
	c, err := s.readClosing(ctx, &ev)
	if err != nil {
		return err
	}
	plan, err := s.cfg.Plans.For(c.agent)
	if err != nil {
		return bus.WithCode("ledger.no_plan", bus.AsPermanent(err))
	}
	planYear, err := plan.PlanYear(c.CloseDate)
	if err != nil {
		return bus.WithCode("ledger.closing_incomplete", bus.AsPermanent(err))
	}
	key := TxKey(ev.GetTms(), ev.GetTransactionId())
	rec, rev, err := s.claim(ctx, key, fmt.Sprintf("%s/%d", m.Stream, m.Sequence), c.facts, plan.ID, planYear)
	if errors.Is(err, errBooked) {
		logging.FromContext(ctx).Info("the transaction is booked already; announcing it again", "transaction_id", ev.GetTransactionId(), "document_id", rec.Booked.DocumentID)
		if err := s.indexDocument(ctx, rec); err != nil {
			return err
		}
		return s.announce(ctx, rec)
	}
	if err != nil {
		return err
	}
	if p, ok := s.cfg.Plans.Get(rec.PlanID); ok {
		plan = p // the plan it was claimed with
	}
	split, err := s.count(ctx, rec, key, plan)
	if err != nil {
		return err
	}
	bus.Crash(ctx, CrashAfterYearToDate)
	booked, err := s.ledger.Book(ctx, s.booking(&ev, c, split))
	if errors.Is(err, ledger.ErrReconnect) {
		return bus.WithCode("ledger.reconnect", bus.Permanentf("book transaction %s in %s: %v: run `brokerflow connect %s` to connect the ledger again, then redrive this message (brokerflow failures redrive)", ev.GetTransactionId(), s.ledger.Name(), err, s.ledger.Name()))
	}
	if err != nil {
		// The claim stays pending; the redelivery books with the same key,
		// and the ledger returns the document if the call did book it.
		return fmt.Errorf("book transaction %s in %s: %w", ev.GetTransactionId(), s.ledger.Name(), err)
	}
	bus.Crash(ctx, CrashAfterLedgerCall)
	out := s.bookedEvent(&ev, c, plan, split, booked, m)
	b, err := proto.Marshal(out)
	if err != nil {
		return err
	}
	rec.State, rec.Booked, rec.Event = stateBooked, booked, b
	if _, err := s.recs.Store(ctx, key, rec, rev); err != nil {
		// The claim was taken over meanwhile: its holder books with the
		// same key, gets this document, and records it.
		return fmt.Errorf("record the booking of transaction %s: %w", ev.GetTransactionId(), err)
	}
	logging.FromContext(ctx).Info("commission booked", "transaction_id", ev.GetTransactionId(), "ledger", s.ledger.Name(),
		"document", booked.Document, "document_id", booked.DocumentID, "gross_minor", split.Gross, "agent_id", c.agent.ID, "plan", plan.ID)
	// The document's record leads its payments back to the transaction.
	if err := s.indexDocument(ctx, rec); err != nil {
		return err
	}
	return s.announce(ctx, rec)
}

// claim takes the transaction's record for the message fence, or says why
// not: errBooked (with the record), errBusy, or a correction.
func (s *Syncer) claim(ctx context.Context, key, fence string, f facts, planID, planYear string) (txRecord, uint64, error) {
	staleAfter, err := s.recs.StaleAfter(ctx)
	if err != nil {
		return txRecord{}, 0, err
	}
	for range casAttempts {
		var rec txRecord
		rev, err := s.recs.Load(ctx, key, &rec)
		if err != nil {
			return rec, 0, err
		}
		now := s.now()
		switch {
		case rev == 0:
			rec = txRecord{State: statePending, Since: now, Fence: fence, Facts: f, PlanID: planID, PlanYear: planYear}
		case !rec.Facts.sameAmounts(f):
			return rec, rev, correction(key, rec, f)
		case rec.State == stateBooked:
			return rec, rev, errBooked
		case rec.Fence != fence && now.Before(rec.Since.Add(staleAfter)):
			return rec, rev, errBusy
		default:
			// Its holder stopped after the claim (a crash, a failed call),
			// or it is this message again: go on where it stopped. Every
			// step after is idempotent by the transaction.
			rec.Since, rec.Fence = now, fence
		}
		rev, err = s.recs.Store(ctx, key, rec, rev)
		if errors.Is(err, bus.ErrConflict) {
			continue
		}
		return rec, rev, err
	}
	return txRecord{}, 0, fmt.Errorf("the record %s changed concurrently %d times; will retry", key, casAttempts)
}

// correction is a closing of a transaction booked (or being booked) with
// other amounts: not booked again, but a failure record that shows both.
func correction(key string, rec txRecord, f facts) error {
	was := "claimed for booking (not confirmed booked)"
	if rec.State == stateBooked {
		was = fmt.Sprintf("booked as %s %s (id %s, company %s)", rec.Booked.Document, rec.Booked.DocumentNumber, rec.Booked.DocumentID, rec.Booked.CompanyID)
	}
	return bus.WithCode("ledger.correction", bus.Permanentf(
		"a corrected closing, not booked again: %s was %s with %s; the TMS now says %s. A person decides: correct the document in the ledger (or void it and delete %s), then resolve this failure",
		key, was, rec.Facts, f, key))
}

// count adds the transaction to its agent's plan-year total, once, and
// returns its split, computed on the total before it.
func (s *Syncer) count(ctx context.Context, rec txRecord, txKey string, plan commission.Plan) (commission.Split, error) {
	key := YearToDateKey(rec.Facts.AgentID, rec.PlanYear)
	for range casAttempts {
		var y yearToDate
		rev, err := s.recs.Load(ctx, key, &y)
		if err != nil {
			return commission.Split{}, err
		}
		if split, ok := y.Counted[txKey]; ok {
			return split, nil // counted before a crash or by another replica
		}
		split, err := commission.Compute(rec.Facts.GrossMinor, rec.Facts.ReferralMinor, plan, y.TotalMinor)
		if err != nil {
			return split, bus.WithCode("ledger.split", bus.Permanentf("transaction %s, plan %q: %w", txKey, plan.ID, err))
		}
		if y.Counted == nil {
			y.Counted = map[string]commission.Split{}
		}
		y.TotalMinor = split.YearToDateAfter
		y.Counted[txKey] = split
		if _, err := s.recs.Store(ctx, key, y, rev); errors.Is(err, bus.ErrConflict) {
			continue
		} else if err != nil {
			return split, err
		}
		return split, nil
	}
	return commission.Split{}, fmt.Errorf("the year to date %s changed concurrently %d times; will retry", key, casAttempts)
}

// readClosing reads the transaction from the TMS: where the TMS and the
// event disagree, the TMS wins, and the difference is logged. Missing
// commission facts are a permanent failure that names them.
func (s *Syncer) readClosing(ctx context.Context, ev *tmsv1.TransactionClosed) (closing, error) {
	id := ev.GetTransactionId()
	tx, err := s.tms.Transaction(ctx, ev.GetProfileId(), id)
	if errors.Is(err, tms.ErrNotFound) {
		return closing{}, bus.WithCode("ledger.unknown_transaction", bus.Permanentf("the TMS does not show transaction %s in profile %s: nothing booked", id, ev.GetProfileId()))
	}
	if err != nil {
		return closing{}, fmt.Errorf("read transaction %s from %s: %w", id, s.tms.Name(), err)
	}
	if !strings.EqualFold(tx.Status, statusSold) {
		return closing{}, bus.WithCode("ledger.not_closed", bus.Permanentf("the TMS shows transaction %s as %s, not %s: nothing booked (redrive this message once it is sold)", id, tx.Status, statusSold))
	}
	details, err := s.tms.Details(ctx, tx.Profile, tx.ID)
	if err != nil {
		return closing{}, fmt.Errorf("read the details of transaction %s: %w", id, err)
	}
	got, missing := s.cfg.fields().ReadClosing(details)
	c := closing{tx: tx, facts: facts{
		GrossMinor: got.CommissionMinor, ReferralMinor: got.ReferralMinor, PriceMinor: got.PriceMinor,
		CloseDate: got.CloseDate, ReferralSource: got.ReferralSource,
	}}
	if _, err := time.Parse(time.DateOnly, c.CloseDate); err != nil {
		// The date the closing was seen: the plan year needs one.
		c.CloseDate = ev.GetClosedAt().AsTime().UTC().Format(time.DateOnly)
		if ev.GetClosedAt() == nil {
			c.CloseDate = s.now().UTC().Format(time.DateOnly)
		}
	}
	if a, ok := s.agentOf(tx.Profile, ev.GetCommission().GetAgentId()); ok {
		c.agent, c.AgentID = a, a.ID
	} else {
		missing = append(missing, fmt.Sprintf("the agent (profile %s and agent %q are not in the agent directory)", tx.Profile, ev.GetCommission().GetAgentId()))
	}
	if s.cfg.Payer == PayerClient {
		parties, err := s.tms.Participants(ctx, tx.Profile, tx.ID)
		if err != nil {
			return closing{}, fmt.Errorf("read the participants of transaction %s: %w", id, err)
		}
		i := slices.IndexFunc(parties, func(p tms.Party) bool { return p.Role == tms.RoleBuyer || p.Role == tms.RoleSeller })
		if i < 0 {
			missing = append(missing, "the client (no BUYER or SELLER participant) to invoice (or set LEDGERSYNC_PAYER to the title company)")
		} else {
			p := parties[i]
			key := ev.GetCorrelation().GetContactId()
			if key == "" {
				key = s.tms.Name() + ":" + tx.ID + ":" + strings.ToLower(p.Role)
			}
			c.payer = ledger.Party{Key: key, DisplayName: p.FullName, Email: p.Email, Phone: p.Phone}
		}
	} else {
		c.payer = ledger.Party{Key: "payer:" + bus.KeyPart(strings.ToLower(s.cfg.Payer)), DisplayName: s.cfg.Payer}
	}
	c.property = address(details[s.cfg.PropertySection])
	if len(missing) > 0 {
		return closing{}, bus.WithCode("ledger.closing_incomplete", bus.Permanentf("transaction %s closed without %s: nothing booked. Fill them in the TMS (its next update closes it again) or fix the agent directory, then redrive this message", id, strings.Join(missing, ", ")))
	}
	s.logDifferences(ctx, ev, c)
	return c, nil
}

// agentOf returns the agent of a transaction: the TMS profile's, else the
// one the event names.
func (s *Syncer) agentOf(profile, eventAgent string) (agents.Agent, bool) {
	if a, ok := s.cfg.Agents.ForDotloopProfile(profile); ok && profile != "" {
		return a, true
	}
	for _, a := range s.cfg.Agents.Agents() {
		if a.ID == eventAgent && eventAgent != "" {
			return a, true
		}
	}
	return agents.Agent{}, false
}

// logDifferences logs what the event says that the TMS does not.
func (s *Syncer) logDifferences(ctx context.Context, ev *tmsv1.TransactionClosed, c closing) {
	var diffs []any
	for _, d := range []struct {
		name      string
		event, tm string
	}{
		{"gross_commission", money.Format(ev.GetCommission().GetGross().GetAmountMinor()), money.Format(c.GrossMinor)},
		{"referral", money.Format(ev.GetCommission().GetReferral().GetAmountMinor()), money.Format(c.ReferralMinor)},
		{"sale_price", money.Format(ev.GetSalePrice().GetAmountMinor()), money.Format(c.PriceMinor)},
		{"agent", ev.GetCommission().GetAgentId(), c.AgentID},
	} {
		if d.event != d.tm {
			diffs = append(diffs, d.name, d.event+" (event) → "+d.tm+" (TMS)")
		}
	}
	if len(diffs) > 0 {
		logging.FromContext(ctx).Warn("the closing event and the TMS disagree; booking what the TMS holds",
			append([]any{"transaction_id", ev.GetTransactionId()}, diffs...)...)
	}
}

// address writes the property section of the details on one line.
func address(sec map[string]string) string {
	street := strings.TrimSpace(sec["Street Number"] + " " + sec["Street Name"])
	if u := strings.TrimSpace(sec["Unit Number"]); u != "" {
		street += " #" + u
	}
	region := strings.TrimSpace(sec["State/Prov"] + " " + sec["Postal Code"])
	var parts []string
	for _, p := range []string{street, strings.TrimSpace(sec["City"]), region} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ", ")
}

// BookingKey is what makes a transaction's booking idempotent in the
// ledger: the TMS and its transaction id.
func BookingKey(tmsName, id string) string { return tmsName + ":" + id }

func (s *Syncer) booking(ev *tmsv1.TransactionClosed, c closing, split commission.Split) ledger.Booking {
	b := ledger.Booking{
		Key: BookingKey(ev.GetTms(), ev.GetTransactionId()), Document: s.cfg.Document, AgentAs: s.cfg.AgentAs,
		Payer:    c.payer,
		Agent:    ledger.Agent{ID: c.agent.ID, Name: c.agent.Name, Email: c.agent.Email, LedgerID: c.agent.QuickBooksVendorID},
		Property: c.property, Date: c.CloseDate, Currency: s.cfg.Currency,
		Memo: fmt.Sprintf("%s transaction %s %q; lead %s; agent %s", ev.GetTms(), ev.GetTransactionId(), c.tx.Name, ev.GetCorrelation().GetLeadId(), c.agent.ID),
	}
	for _, comp := range split.Components() {
		b.Lines = append(b.Lines, ledger.Line{Kind: comp.Kind, Item: Items[comp.Kind], Description: describe(comp.Kind, c), AmountMinor: comp.AmountMinor})
	}
	if s.cfg.Bill {
		b.PayoutMinor = split.AgentShare
	}
	return b
}

func describe(kind string, c closing) string {
	what := strings.ReplaceAll(kind, "_", " ")
	if kind == ledger.KindAgentShare {
		what += " (" + c.agent.Name + ")"
	}
	if kind == ledger.KindReferralFee && c.ReferralSource != "" {
		what += " (" + c.ReferralSource + ")"
	}
	if c.property != "" {
		what += ", " + c.property
	}
	return what
}

func (s *Syncer) bookedEvent(ev *tmsv1.TransactionClosed, c closing, plan commission.Plan, split commission.Split, b ledger.Booked, m *bus.Message) *ledgerv1.CommissionBooked {
	amount := func(v int64) *commonv1.Money { return &commonv1.Money{AmountMinor: v, CurrencyCode: s.cfg.Currency} }
	out := &ledgerv1.CommissionBooked{
		TransactionId: ev.GetTransactionId(), Tms: ev.GetTms(), Ledger: s.ledger.Name(), CompanyId: b.CompanyID,
		DocumentType: b.Document, DocumentId: b.DocumentID, DocumentNumber: b.DocumentNumber, CustomerId: b.CustomerID,
		AgentId: c.agent.ID, AgentLedgerId: b.AgentLedgerID, BillId: b.BillID,
		Gross: amount(split.Gross), BrokerageNet: amount(split.BrokerageNet()), AgentShare: amount(split.AgentShare),
		PlanId: plan.ID, AgentYearToDateBefore: amount(split.YearToDateBefore), AgentYearToDateAfter: amount(split.YearToDateAfter),
		BookedAt: timestamppb.New(s.now()), FactsHash: ev.GetFactsHash(),
		Correlation: &commonv1.Correlation{LeadId: ev.GetCorrelation().GetLeadId(), ContactId: ev.GetCorrelation().GetContactId(), TransactionId: ev.GetTransactionId()},
		Cause:       &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject},
	}
	for _, comp := range split.Components() {
		out.Components = append(out.Components, &ledgerv1.Component{Kind: comp.Kind, Amount: amount(comp.AmountMinor), Description: describe(comp.Kind, c)})
	}
	return out
}

// announce publishes the record's CommissionBooked, once per transaction
// (its message id).
func (s *Syncer) announce(ctx context.Context, rec txRecord) error {
	var ev ledgerv1.CommissionBooked
	if err := proto.Unmarshal(rec.Event, &ev); err != nil {
		return bus.Permanentf("decode the kept CommissionBooked of %s: %w", rec.Booked.DocumentID, err)
	}
	_, err := s.w.Publisher().Publish(ctx, SubjectBooked, SubjectBooked+":"+ev.GetTms()+":"+ev.GetTransactionId(), &ev)
	return err
}
