// Package crmsync puts each normalized lead into the brokerage's CRM without
// ever creating a duplicate contact, and publishes crm.contact.synced.
package crmsync

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/opshttp"
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
	cfg      Config
	deps     Deps
	js       jetstream.JetStream
	runner   *bus.Runner
	crm      CRM
	outcomes jetstream.KeyValue
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
	deps, err := deps.WithDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	metrics, err := bus.NewMetrics(deps.Registerer, bus.ServiceCRMSync)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	runner, err := bus.NewRunner(js, bus.RunnerOptions{
		Service:         bus.ServiceCRMSync,
		Topology:        cfg.Bus.Topology(),
		Policy:          cfg.Bus.Policy(),
		Logger:          deps.Logger,
		TracerProvider:  deps.TracerProvider,
		Metrics:         metrics,
		Hooks:           deps.Hooks,
		Concurrency:     cfg.Concurrency,
		ShutdownTimeout: cfg.ShutdownTimeout,
	})
	if err != nil {
		return nil, err
	}
	s := &Syncer{cfg: cfg, deps: deps, js: js, runner: runner, crm: crm}
	for _, spec := range bus.ConsumersOf(bus.ServiceCRMSync) {
		runner.Handle(spec, s.HandleLead)
	}
	return s, nil
}

// Run applies the declarations and consumes until ctx is done, then drains.
func (s *Syncer) Run(ctx context.Context) error {
	if err := bus.Apply(ctx, s.js, s.cfg.Bus.Topology()); err != nil {
		return err
	}
	kv, err := s.js.KeyValue(ctx, outcomeBucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", outcomeBucket, err)
	}
	s.outcomes = kv
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return s.runner.Run(ctx) })
	if s.cfg.OpsAddr != "" {
		eg.Go(func() error {
			h := opshttp.Handler(s.deps.Gatherer, map[string]opshttp.Check{"nats": s.Ready})
			return opshttp.ListenAndServe(ctx, s.cfg.OpsAddr, h, s.cfg.ShutdownTimeout)
		})
	}
	return eg.Wait()
}

// Ready reports whether NATS is connected.
func (s *Syncer) Ready(ctx context.Context) error {
	return service.NATSReady(s.deps.NATS)(ctx)
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

	match, found, err := s.crm.Find(ctx, IdentityOf(&l))
	if err != nil {
		return fmt.Errorf("find person for lead %s: %w", l.GetLeadId(), err)
	}
	if err := m.InProgress(); err != nil {
		logging.FromContext(ctx).Debug("in progress", "err", err)
	}
	rec, err := s.crm.Record(ctx, &l, match.ContactID)
	if err != nil {
		return fmt.Errorf("record lead %s in %s: %w", l.GetLeadId(), s.crm.Name(), err)
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
	_, err := s.runner.Publisher().Publish(ctx, SubjectContactSynced, "crm.contact.synced:"+done.GetLeadId(), done)
	return err
}
