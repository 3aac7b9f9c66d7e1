// Package crmsync puts each normalized lead into the brokerage's CRM without
// ever creating a duplicate contact, and publishes crm.contact.synced; it
// turns the CRM's changes (its webhooks, or polling a CRM without them) into
// crm.contact.stage_changed and crm.contact.updated.
package crmsync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/service"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// Deps is what the caller owns.
type Deps = service.Deps

// SubjectContactSynced is where each synced lead is announced.
const SubjectContactSynced = "crm.contact.synced"

// outcomeBucket holds what was done for each lead, so that a redelivery
// has no second effect.
const outcomeBucket = "idempotency"

// Syncer consumes lead.normalized.> and the CRM's webhooks.
type Syncer struct {
	w       *service.Worker
	crm     CRM
	changes *changes
	keyer   keyer
	// inFlight is how long a CRM call may take, pacing included: a later
	// delivery of the same lead waits that long before asking the CRM
	// whether the call landed.
	inFlight time.Duration
	// visibleAfter is how long a person the CRM created may stay hidden
	// from its search (Follow Up Boss shows a new person once assigned).
	visibleAfter time.Duration

	mu    sync.Mutex
	bound *buckets
}

// buckets are the KV buckets the handlers use, bound on first use.
type buckets struct {
	outcomes   jetstream.KeyValue
	identities *identities
}

// CrashAfterCRMCall is crm-sync's harmful crash point: the lead is in the
// CRM, and neither the identity record nor the lead's outcome says so yet.
const CrashAfterCRMCall bus.CrashPoint = "crm-sync.after_crm_call"

// New returns a Syncer using the CRM cfg names.
func New(cfg Config, deps Deps) (*Syncer, error) {
	adapter, err := NewCRM(cfg)
	if err != nil {
		return nil, err
	}
	return NewWithCRM(cfg, deps, adapter)
}

// NewWithCRM returns a Syncer using adapter.
func NewWithCRM(cfg Config, deps Deps, adapter CRM) (*Syncer, error) {
	w, err := service.NewWorker(service.WorkerConfig{
		Service:         bus.ServiceCRMSync,
		Consume:         cfg.Bus,
		Concurrency:     cfg.Concurrency,
		OpsAddr:         cfg.OpsAddr,
		ShutdownTimeout: cfg.ShutdownTimeout,
	}, deps)
	if err != nil {
		return nil, err
	}
	if len(cfg.IdentityPeppers) == 0 || len(cfg.IdentityPeppers[0]) < minPepper {
		return nil, fmt.Errorf("%w: an identity pepper of at least %d characters is required (CRMSYNC_IDENTITY_PEPPER)", ErrConfig, minPepper)
	}
	s := &Syncer{
		w: w, crm: adapter, keyer: cfg.keyer(adapter.Name()),
		inFlight: cfg.callWindow(), visibleAfter: cfg.IdentityVisibleAfter,
	}
	s.changes = &changes{crm: adapter, js: w.JetStream(), pub: w.Publisher(), active: cfg.activeStages(), now: time.Now}
	// One CRM account serves every message of both consumers: its 429
	// stops them, not just the message.
	w.Handle(bus.CRMSyncLeads, s.HandleLead, bus.PauseOnThrottle())
	w.Handle(bus.CRMSyncChanges, s.changes.HandleChange, bus.PauseOnThrottle())
	if p := s.poller(cfg, adapter); p != nil {
		w.Go(p.run)
	}
	return s, nil
}

// poller is the poll of the CRM's changed contacts, or nil when it has none
// or it is off: a CRM without webhooks is polled every PollInterval, and one
// with webhooks (Follow Up Boss) reconciled every FUBReconcileInterval.
func (s *Syncer) poller(cfg Config, adapter CRM) *poller {
	cp, ok := adapter.(ChangePoller)
	if !ok {
		return nil
	}
	p := &poller{crm: cp, changes: s.changes, js: s.w.JetStream(), interval: cfg.PollInterval, now: time.Now}
	if _, hooks := adapter.(ChangeSource); hooks {
		p.interval, p.fromNow = cfg.FUBReconcileInterval, true
	}
	if p.interval <= 0 {
		return nil
	}
	return p
}

// Run consumes until ctx is done, then drains.
func (s *Syncer) Run(ctx context.Context) error { return s.w.Run(ctx) }

// Ready reports whether crm-sync can reach NATS.
func (s *Syncer) Ready(ctx context.Context) error { return s.w.Ready(ctx) }

// state binds the buckets on first use. A claim left by a crashed holder is
// taken over after five of the server's ack waits of the lead consumer:
// by then JetStream has redelivered that holder's lead.
func (s *Syncer) state(ctx context.Context) (*buckets, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bound != nil {
		return s.bound, nil
	}
	js := s.w.JetStream()
	outcomes, err := js.KeyValue(ctx, outcomeBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", outcomeBucket, err)
	}
	ikv, err := js.KeyValue(ctx, identityBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", identityBucket, err)
	}
	sc, err := bus.Verify(ctx, js, bus.CRMSyncLeads)
	if err != nil {
		return nil, err
	}
	s.bound = &buckets{
		outcomes: outcomes,
		identities: &identities{
			kv: ikv, keyer: s.keyer,
			staleAfter: 5 * sc.AckWait, poll: 50 * time.Millisecond, now: time.Now,
		},
	}
	return s.bound, nil
}

// tracerName names crm-sync's spans.
const tracerName = "github.com/brokerflow/brokerflow/services/crm-sync"

// step starts a span for one step of a lead's handling, in the trace of its
// delivery; together with the vendor calls' spans they show where a lead's
// time goes (make bench prints the breakdown).
func step(ctx context.Context, name string) trace.Span {
	_, span := trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName).Start(ctx, "crm-sync "+name)
	return span
}

// outcomeKey is the KV key of a lead's outcome. Lead ids are [a-z0-9_].
func outcomeKey(leadID string) string { return "crm-sync.lead." + leadID }

// HandleLead records the lead in the CRM once, on the person's one contact,
// keeps the outcome, and announces it. A lead whose outcome is kept is only
// announced again.
//
// The order, and what each step guards against (docs/crm.md, "One contact
// per person"):
//  1. the lead's pending record, fenced by delivery: two deliveries of one
//     lead never call the CRM at once;
//  2. every identity key of the person, claimed in order with
//     create-if-absent: two leads for one person never both create;
//  3. when an earlier delivery's call may have landed, the CRM is asked
//     whether the lead is on the contact before anything is sent again;
//  4. the pending record says "calling", the claims are re-read (a
//     superseded or disconnected delivery stops here), and the CRM is called;
//  5. the claims become the contact (compare-and-swap), missing details are
//     added to the contact, the outcome is kept, and the lead announced.
func (s *Syncer) HandleLead(ctx context.Context, m *bus.Message) error {
	var l leadv1.Lead
	if err := proto.Unmarshal(m.Data, &l); err != nil {
		return bus.Undecodable("decode Lead at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	if l.GetLeadId() == "" {
		return bus.WithCode("lead.no_id", bus.Permanentf("lead at %s/%d has no lead_id", m.Stream, m.Sequence))
	}
	st, err := s.state(ctx)
	if err != nil {
		return err
	}
	key := outcomeKey(l.GetLeadId())
	claim := step(ctx, "claim lead")
	entry, err := st.outcomes.Get(ctx, key)
	if err == nil {
		claim.End()
		var done crmv1.ContactSynced
		if err := proto.Unmarshal(entry.Value(), &done); err != nil {
			return bus.Permanentf("decode kept outcome of %s: %w", l.GetLeadId(), err)
		}
		logging.FromContext(ctx).Info("lead already synced; announcing again", "lead_id", l.GetLeadId())
		return s.announce(ctx, &done)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		claim.End()
		return fmt.Errorf("read outcome of %s: %w", l.GetLeadId(), err)
	}

	f := fenceOf(l.GetLeadId(), m)
	p, err := beginPending(ctx, st.outcomes, f, s.inFlight, time.Now)
	claim.End()
	if err != nil {
		return err
	}
	id := crm.IdentityOf(&l)
	claimID := step(ctx, "claim identity")
	held, err := st.identities.acquire(ctx, f, id)
	claimID.End()
	if err != nil {
		return fmt.Errorf("resolve identity of lead %s: %w", l.GetLeadId(), err)
	}
	pl, err := s.plan(ctx, held)
	if err != nil {
		return fmt.Errorf("find person for lead %s: %w", l.GetLeadId(), err)
	}
	rec, err := s.recordOnce(ctx, st.identities, p, held, pl, &l)
	if err != nil {
		return err
	}
	if rec.Created && rec.Person != nil {
		s.changes.learnCreated(ctx, s.crm.Name(), *rec.Person)
	}
	if rec.Ignored {
		st.identities.release(ctx, held)
	} else {
		if err := st.identities.settle(ctx, f, held, pl.contactOf(rec)); err != nil {
			return err
		}
		if err := s.followUp(ctx, st, f, held, pl, rec); err != nil {
			return err
		}
	}
	done := &crmv1.ContactSynced{
		LeadId:     l.GetLeadId(),
		ContactId:  rec.ContactID,
		Crm:        s.crm.Name(),
		Outcome:    outcome(pl.target != "" && !rec.Created, rec),
		LeadSource: l.GetLeadSource(),
		SyncedAt:   timestamppb.Now(),
		Correlation: &commonv1.Correlation{
			LeadId: l.GetLeadId(), ContactId: rec.ContactID, Source: l.GetLeadSource(),
		},
		Lead: &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject},
	}
	if done.GetOutcome() == crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING {
		done.MatchedBy = pl.matchedBy
	}
	b, err := proto.Marshal(done)
	if err != nil {
		return err
	}
	if _, err := st.outcomes.Put(ctx, key, b); err != nil {
		return fmt.Errorf("keep outcome of %s: %w", l.GetLeadId(), err)
	}
	p.done(ctx)
	logging.FromContext(ctx).Info("lead synced", "lead_id", l.GetLeadId(), "crm", s.crm.Name(),
		"contact_id", rec.ContactID, "outcome", done.GetOutcome().String())
	return s.announce(ctx, done)
}

// plan is where a lead goes: the contact that holds its email, the one that
// holds its phone (known from the identity records, or found in the CRM for
// a key the records did not know), and the target among them.
type plan struct {
	email, phone string
	// target is the contact the lead is recorded on: the email's contact
	// before the phone's; empty when the person is new.
	target    string
	matchedBy string
}

// plan searches the CRM only for the keys the identity records did not
// know: a returning person known under every key costs no search.
func (s *Syncer) plan(ctx context.Context, held []heldKey) (plan, error) {
	var pl plan
	var unknown crm.Identity
	for _, h := range held {
		switch {
		case !h.claimed() && h.kind == "email":
			pl.email = h.contactID
		case !h.claimed():
			pl.phone = h.contactID
		case h.kind == "email":
			unknown.Email = h.value
		default:
			unknown.Phone = h.value
		}
	}
	if unknown != (crm.Identity{}) {
		match, found, err := s.crm.Find(ctx, unknown)
		if err != nil {
			return plan{}, err
		}
		switch {
		case found && match.By == "email":
			pl.email = match.ContactID
		case found:
			pl.phone = match.ContactID
		}
	}
	switch {
	case pl.email != "":
		pl.target, pl.matchedBy = pl.email, "email"
	case pl.phone != "":
		pl.target, pl.matchedBy = pl.phone, "phone"
	}
	return pl, nil
}

// contactOf maps each claimed key to the contact that holds its value in
// the CRM, or else to the contact the lead was recorded on.
func (pl plan) contactOf(rec crm.Recorded) func(heldKey) string {
	return func(h heldKey) string {
		switch {
		case h.kind == "email" && pl.email != "":
			return pl.email
		case h.kind == "phone" && pl.phone != "":
			return pl.phone
		}
		return rec.ContactID
	}
}

// linked reports whether the lead's email and phone belong to two contacts.
func (pl plan) linked() bool { return pl.email != "" && pl.phone != "" && pl.email != pl.phone }

// recordOnce records the lead in the CRM unless an earlier delivery
// already did. The claims are kept when the call's effect is in doubt, and
// released only when it certainly did not happen.
func (s *Syncer) recordOnce(ctx context.Context, ids *identities, p *pendingLead, held []heldKey, pl plan, l *leadv1.Lead) (crm.Recorded, error) {
	if p.prev.inDoubt() {
		rec, done, err := s.confirm(ctx, p, &pl, l)
		if err != nil || done {
			return rec, err
		}
	}
	fence := step(ctx, "fence")
	err := p.calling(ctx, pl.target)
	if err == nil {
		err = ids.stillHeld(ctx, p.f, held)
	}
	fence.End()
	if err != nil {
		return crm.Recorded{}, err
	}
	rec, err := s.crm.Record(ctx, l, pl.target)
	if err != nil {
		notDone := crm.NotDone(err)
		p.ended(ctx, !notDone)
		if notDone {
			ids.release(ctx, held)
		}
		return crm.Recorded{}, fmt.Errorf("record lead %s in %s: %w", l.GetLeadId(), s.crm.Name(), err)
	}
	bus.Crash(ctx, CrashAfterCRMCall)
	return rec, nil
}

// confirm asks the CRM whether an earlier delivery's call recorded the
// lead: on the contact it was sent to, or, when that call created the
// person, on the contact a search finds now. Follow Up Boss shows a new
// person only once it is assigned, so a creation that cannot be found yet
// is retried until visibleAfter has passed since the call.
func (s *Syncer) confirm(ctx context.Context, p *pendingLead, pl *plan, l *leadv1.Lead) (crm.Recorded, bool, error) {
	contactID, created := p.prev.ContactID, p.prev.ContactID == ""
	if contactID == "" {
		contactID = pl.target
	}
	if contactID == "" {
		if wait := s.visibleAfter - time.Since(p.prev.Calling); wait > time.Second {
			return crm.Recorded{}, false, bus.RetryAfter(bus.WithCode("crm.unconfirmed", fmt.Errorf(
				"lead %s: an earlier delivery may have created the person, and the CRM does not show them yet", l.GetLeadId())), wait)
		} else if wait > 0 {
			// Not worth another delivery: wait here, then search once more.
			select {
			case <-ctx.Done():
				return crm.Recorded{}, false, ctx.Err()
			case <-time.After(wait):
			}
			match, found, err := s.crm.Find(ctx, crm.IdentityOf(l))
			if err != nil {
				return crm.Recorded{}, false, err
			}
			if found {
				return s.confirmOn(ctx, match.ContactID, true, pl, l)
			}
		}
		logging.FromContext(ctx).Warn("an earlier delivery's creation is not in the CRM; creating", "lead_id", l.GetLeadId())
		return crm.Recorded{}, false, nil
	}
	// A lead whose earlier delivery was creating the person, and whose
	// activity is on the contact found now, created that contact.
	return s.confirmOn(ctx, contactID, created, pl, l)
}

// confirmOn asks the CRM whether the lead is on contactID; when it is not,
// the lead is recorded there.
func (s *Syncer) confirmOn(ctx context.Context, contactID string, created bool, pl *plan, l *leadv1.Lead) (crm.Recorded, bool, error) {
	has, err := s.crm.HasLead(ctx, contactID, l.GetLeadId())
	if err != nil {
		return crm.Recorded{}, false, fmt.Errorf("ask the CRM whether lead %s is on contact %s: %w", l.GetLeadId(), contactID, err)
	}
	if has {
		logging.FromContext(ctx).Info("an earlier delivery recorded the lead; not sending it again", "lead_id", l.GetLeadId(), "contact_id", contactID)
		return crm.Recorded{ContactID: contactID, Created: created}, true, nil
	}
	pl.target = contactID
	return crm.Recorded{}, false, nil
}

// followUp brings the contact up to date with what the lead told: an email
// or phone the contact lacks is added, and when the lead's email and phone
// belong to two contacts, each gets a note naming the other, once, for an
// agent to merge them.
func (s *Syncer) followUp(ctx context.Context, st *buckets, f fence, held []heldKey, pl plan, rec crm.Recorded) error {
	ids := st.identities
	if pl.target != "" && !rec.Created {
		var add crm.Identity
		for _, h := range held {
			if h.claimed() && h.kind == "email" && pl.email == "" {
				add.Email = h.value
			}
			if h.claimed() && h.kind == "phone" && pl.phone == "" {
				add.Phone = h.value
			}
		}
		if add != (crm.Identity{}) {
			unlock, err := ids.lockContact(ctx, f, rec.ContactID)
			if err != nil {
				return err
			}
			_, err = s.crm.AddDetails(ctx, rec.ContactID, add)
			unlock()
			if err != nil {
				return fmt.Errorf("add the lead's details to contact %s: %w", rec.ContactID, err)
			}
		}
	}
	if !pl.linked() {
		return nil
	}
	return s.noteLinked(ctx, st.outcomes, pl, f.lead)
}

// noteLinked adds the note to both contacts of a linked pair, once per
// pair: the first lead to show the link takes the pair's record with
// create-if-absent and notes both; a redelivery of that lead (after a crash
// mid-way) notes again, so a note may repeat, never go missing.
func (s *Syncer) noteLinked(ctx context.Context, kv jetstream.KeyValue, pl plan, leadID string) error {
	a, b := pl.email, pl.phone
	if b < a {
		a, b = b, a
	}
	key := "crm-sync.linked." + a + "." + b
	if _, err := kv.Create(ctx, key, []byte(leadID)); bus.Conflict(err) {
		e, err := kv.Get(ctx, key)
		if err != nil {
			return fmt.Errorf("read linked contacts: %w", err)
		}
		if string(e.Value()) != leadID {
			return nil // noted by another lead, or done
		}
	} else if err != nil {
		return fmt.Errorf("keep linked contacts: %w", err)
	}
	body := fmt.Sprintf("Brokerflow: one lead brought the email address of contact %s and the phone number of contact %s. "+
		"They may be one person: please check, and merge them. The lead was recorded on contact %s.", pl.email, pl.phone, pl.email)
	for _, on := range []string{pl.email, pl.phone} {
		if err := s.crm.AddNote(ctx, on, body); err != nil {
			return fmt.Errorf("note linked contacts %s and %s: %w", pl.email, pl.phone, err)
		}
	}
	if _, err := kv.Put(ctx, key, []byte("noted")); err != nil {
		return fmt.Errorf("keep linked contacts: %w", err)
	}
	return nil
}

func outcome(found bool, rec crm.Recorded) crmv1.SyncOutcome {
	switch {
	case rec.Ignored:
		return crmv1.SyncOutcome_SYNC_OUTCOME_IGNORED
	case rec.Created && !found:
		return crmv1.SyncOutcome_SYNC_OUTCOME_CREATED
	default:
		return crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING
	}
}

func (s *Syncer) announce(ctx context.Context, done *crmv1.ContactSynced) error {
	_, err := s.w.Publisher().Publish(ctx, SubjectContactSynced, "crm.contact.synced:"+done.GetLeadId(), done)
	return err
}
