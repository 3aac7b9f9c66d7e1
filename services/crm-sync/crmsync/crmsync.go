// Package crmsync puts each normalized lead into the brokerage's CRM without
// ever creating a duplicate contact, and publishes crm.contact.synced.
package crmsync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
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

// Syncer consumes lead.normalized.>.
type Syncer struct {
	*service.Worker
	crm        CRM
	outcomes   jetstream.KeyValue
	identities *identities
	staleAfter time.Duration
	changes    *Changes
	pollEvery  time.Duration
}

// New returns a Syncer using the CRM cfg names.
func New(cfg Config, deps Deps) (*Syncer, error) {
	crm, err := NewCRM(cfg)
	if err != nil {
		return nil, err
	}
	return NewWithCRM(cfg, deps, crm)
}

// NewWithCRM returns a Syncer using crm.
func NewWithCRM(cfg Config, deps Deps, crm CRM) (*Syncer, error) {
	w, err := service.NewWorker(service.WorkerConfig{
		Service:         bus.ServiceCRMSync,
		Bus:             cfg.Bus,
		Concurrency:     cfg.Concurrency,
		OpsAddr:         cfg.OpsAddr,
		ShutdownTimeout: cfg.ShutdownTimeout,
	}, deps)
	if err != nil {
		return nil, err
	}
	s := &Syncer{Worker: w, crm: crm, staleAfter: 5 * cfg.Bus.AckWait, pollEvery: cfg.PollInterval}
	s.changes = NewChanges(cfg, s)
	handlers := map[string]bus.Handler{"crm-sync": s.HandleLead, "crm-sync-changes": s.changes.HandleChange}
	for _, spec := range bus.ConsumersOf(bus.ServiceCRMSync) {
		w.Runner.Handle(spec, handlers[spec.Durable])
	}
	return s, nil
}

// Run applies the declarations and consumes until ctx is done, then drains.
func (s *Syncer) Run(ctx context.Context) error {
	return s.Worker.Run(ctx, func(ctx context.Context) error {
		kv, err := s.JS.KeyValue(ctx, outcomeBucket)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", outcomeBucket, err)
		}
		s.outcomes = kv
		ikv, err := s.JS.KeyValue(ctx, identityBucket)
		if err != nil {
			return fmt.Errorf("bucket %s: %w", identityBucket, err)
		}
		s.identities = &identities{kv: ikv, crm: s.crm.Name(), staleAfter: s.staleAfter, poll: 50 * time.Millisecond, now: time.Now}
		return s.startPoller(ctx)
	})
}

// outcomeKey is the KV key of a lead's outcome. Lead ids are [a-z0-9_].
func outcomeKey(leadID string) string { return "crm-sync.lead." + leadID }

// HandleLead searches the CRM, records the lead there, keeps the outcome,
// and announces it. A lead whose outcome is kept is only announced again.
func (s *Syncer) HandleLead(ctx context.Context, m *bus.Message) error {
	var l leadv1.Lead
	if err := proto.Unmarshal(m.Data, &l); err != nil {
		return bus.Permanentf("decode Lead at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	if l.GetLeadId() == "" {
		return bus.Permanentf("lead at %s/%d has no lead_id", m.Stream, m.Sequence)
	}
	key := outcomeKey(l.GetLeadId())
	if entry, err := s.outcomes.Get(ctx, key); err == nil {
		var done crmv1.ContactSynced
		if err := proto.Unmarshal(entry.Value(), &done); err != nil {
			return bus.Permanentf("decode kept outcome of %s: %w", l.GetLeadId(), err)
		}
		logging.FromContext(ctx).Info("lead already synced; announcing again", "lead_id", l.GetLeadId())
		return s.announce(ctx, &done)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("read outcome of %s: %w", l.GetLeadId(), err)
	}

	rec, match, found, err := s.record(ctx, &l)
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
	if _, err := s.outcomes.Put(ctx, key, b); err != nil {
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
func (s *Syncer) record(ctx context.Context, l *leadv1.Lead) (Recorded, Match, bool, error) {
	id := IdentityOf(l)
	match, claim, err := s.identities.resolve(ctx, l.GetLeadId(), id)
	if err != nil {
		return Recorded{}, Match{}, false, fmt.Errorf("resolve identity of lead %s: %w", l.GetLeadId(), err)
	}
	found := match.ContactID != ""
	if !found {
		match, found, err = s.crm.Find(ctx, id)
		if err != nil {
			s.identities.release(ctx, claim)
			return Recorded{}, Match{}, false, fmt.Errorf("find person for lead %s: %w", l.GetLeadId(), err)
		}
	}
	rec, err := s.crm.Record(ctx, l, match.ContactID)
	if err != nil {
		s.identities.release(ctx, claim)
		return Recorded{}, Match{}, false, fmt.Errorf("record lead %s in %s: %w", l.GetLeadId(), s.crm.Name(), err)
	}
	if rec.ContactID != "" {
		if err := s.identities.settle(ctx, id, rec.ContactID); err != nil {
			return Recorded{}, Match{}, false, err
		}
	} else {
		s.identities.release(ctx, claim)
	}
	return rec, match, found, nil
}

func outcome(found bool, rec Recorded) crmv1.SyncOutcome {
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
	_, err := s.Runner.Publisher().Publish(ctx, SubjectContactSynced, "crm.contact.synced:"+done.GetLeadId(), done)
	return err
}

// startPoller polls a CRM that sends no webhooks, beside the consumers.
func (s *Syncer) startPoller(ctx context.Context) error {
	cp, ok := s.crm.(ChangePoller)
	if !ok || s.pollEvery <= 0 {
		return nil
	}
	cursors, err := s.JS.KeyValue(ctx, cursorBucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", cursorBucket, err)
	}
	p := &poller{crm: cp, changes: s.changes, cursors: cursors, interval: s.pollEvery}
	s.Go(p.run)
	return nil
}
