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
	s := &Syncer{w: w, crm: adapter}
	s.changes = &changes{crm: adapter, js: w.JetStream(), pub: w.Publisher(), active: cfg.activeStages(), now: time.Now}
	// One CRM account serves every message of both consumers: its 429
	// stops them, not just the message.
	w.Handle(bus.CRMSyncLeads, s.HandleLead, bus.PauseOnThrottle())
	w.Handle(bus.CRMSyncChanges, s.changes.HandleChange, bus.PauseOnThrottle())
	if cp, ok := adapter.(ChangePoller); ok && cfg.PollInterval > 0 {
		p := &poller{crm: cp, changes: s.changes, js: w.JetStream(), interval: cfg.PollInterval}
		w.Go(p.run)
	}
	return s, nil
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
		outcomes:   outcomes,
		identities: &identities{kv: ikv, crm: s.crm.Name(), staleAfter: 5 * sc.AckWait, poll: 50 * time.Millisecond, now: time.Now},
	}
	return s.bound, nil
}

// outcomeKey is the KV key of a lead's outcome. Lead ids are [a-z0-9_].
func outcomeKey(leadID string) string { return "crm-sync.lead." + leadID }

// HandleLead searches the CRM, records the lead there, keeps the outcome,
// and announces it. A lead whose outcome is kept is only announced again.
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
	if entry, err := st.outcomes.Get(ctx, key); err == nil {
		var done crmv1.ContactSynced
		if err := proto.Unmarshal(entry.Value(), &done); err != nil {
			return bus.Permanentf("decode kept outcome of %s: %w", l.GetLeadId(), err)
		}
		logging.FromContext(ctx).Info("lead already synced; announcing again", "lead_id", l.GetLeadId())
		return s.announce(ctx, &done)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("read outcome of %s: %w", l.GetLeadId(), err)
	}

	rec, match, found, err := s.record(ctx, st.identities, &l)
	if err != nil {
		return err
	}
	done := &crmv1.ContactSynced{
		LeadId:     l.GetLeadId(),
		ContactId:  rec.ContactID,
		Crm:        s.crm.Name(),
		Outcome:    outcome(found, rec),
		LeadSource: l.GetLeadSource(),
		SyncedAt:   timestamppb.Now(),
		Correlation: &commonv1.Correlation{
			LeadId: l.GetLeadId(), ContactId: rec.ContactID, Source: l.GetLeadSource(),
		},
		Lead: &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject},
	}
	if found {
		done.MatchedBy = match.By
	}
	b, err := proto.Marshal(done)
	if err != nil {
		return err
	}
	if _, err := st.outcomes.Put(ctx, key, b); err != nil {
		return fmt.Errorf("keep outcome of %s: %w", l.GetLeadId(), err)
	}
	logging.FromContext(ctx).Info("lead synced", "lead_id", l.GetLeadId(), "crm", s.crm.Name(),
		"contact_id", rec.ContactID, "outcome", done.GetOutcome().String())
	return s.announce(ctx, done)
}

// record puts the lead into the CRM without making a second contact for a
// person: a contact known in the identity bucket is used as is; otherwise
// this lead claims the person's identity (create-if-absent), searches the
// CRM, records the lead, and keeps the contact under the identity.
func (s *Syncer) record(ctx context.Context, ids *identities, l *leadv1.Lead) (crm.Recorded, crm.Match, bool, error) {
	id := crm.IdentityOf(l)
	match, claim, err := ids.resolve(ctx, l.GetLeadId(), id)
	if err != nil {
		return crm.Recorded{}, crm.Match{}, false, fmt.Errorf("resolve identity of lead %s: %w", l.GetLeadId(), err)
	}
	found := match.ContactID != ""
	if !found {
		match, found, err = s.crm.Find(ctx, id)
		if err != nil {
			ids.release(ctx, claim)
			return crm.Recorded{}, crm.Match{}, false, fmt.Errorf("find person for lead %s: %w", l.GetLeadId(), err)
		}
	}
	rec, err := s.crm.Record(ctx, l, match.ContactID)
	if err != nil {
		ids.release(ctx, claim)
		return crm.Recorded{}, crm.Match{}, false, fmt.Errorf("record lead %s in %s: %w", l.GetLeadId(), s.crm.Name(), err)
	}
	bus.Crash(ctx, CrashAfterCRMCall)
	if rec.ContactID != "" {
		if err := ids.settle(ctx, id, rec.ContactID); err != nil {
			return crm.Recorded{}, crm.Match{}, false, err
		}
	} else {
		ids.release(ctx, claim)
	}
	return rec, match, found, nil
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
