// Package tmssync keeps the brokerage's transaction manager in step with its
// CRM: a contact who enters an opening stage gets one prefilled transaction
// (a Dotloop loop, a SkySlope Forms file) per episode, the contact's later
// changes follow into the transaction's client participant where the TMS
// allows it, and a transaction marked sold (closed) with its financials
// becomes tms.transaction.closed: from Dotloop's webhooks, or from SkySlope's
// sales, polled (poll.go).
package tmssync

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/pkg/tms/skyslope"
)

// Deps is what the caller owns.
type Deps = service.Deps

// Subjects tms-sync publishes.
const (
	SubjectOpened  = "tms.transaction.opened"
	SubjectUpdated = "tms.transaction.updated"
	SubjectClosed  = "tms.transaction.closed"
)

// Subjects tms-sync consumes from the CRM stream.
const (
	subjectStageChanged = "crm.contact.stage_changed"
	subjectUpdated      = "crm.contact.updated"
	subjectSynced       = "crm.contact.synced"
)

// stateBucket holds tms-sync's records under tms-sync.>: each contact's
// episode with the contact's latest lead with a property, each
// transaction's contact, and the first sight of a sale without its
// financials.
const stateBucket = "idempotency"

// CrashAfterTMSCall is tms-sync's harmful crash point: the transaction is
// open in the TMS, and the episode record does not say so yet.
const CrashAfterTMSCall bus.CrashPoint = "tms-sync.after_tms_call"

// CrashAfterPropertyCall is between setting a transaction's property and
// the episode record saying so: the redelivery sets the same property again.
const CrashAfterPropertyCall bus.CrashPoint = "tms-sync.after_property_call"

// CrashAfterPropertyRecorded is between the episode record saying a
// property was set and its tms.transaction.updated announced: the
// redelivery announces the kept event.
const CrashAfterPropertyRecorded bus.CrashPoint = "tms-sync.after_property_recorded"

// PersonReader reads a contact from the CRM, for its assigned agent.
type PersonReader interface {
	Person(ctx context.Context, id string) (crm.Person, error)
}

// Syncer is tms-sync.
type Syncer struct {
	w      *service.Worker
	cfg    Config
	tms    tms.TMS
	people PersonReader
	now    func() time.Time

	// recs are its records; a pending episode claim of another message may
	// be taken over once stale (Records.StaleAfter).
	recs *bus.Records
}

// New returns tms-sync with the TMS cfg names; its OAuth tokens are read
// from the oauth_tokens bucket.
func New(cfg Config, deps Deps) (*Syncer, error) {
	if !cfg.Enabled() {
		return nil, fmt.Errorf("%w: TMSSYNC_TMS is none: tms-sync has nothing to do", ErrConfig)
	}
	if deps.NATS == nil {
		return nil, service.ErrNoConnection
	}
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, err
	}
	store := oauth.NewStore(js, OAuthConfig(cfg))
	if cfg.TMS == TMSSkySlope {
		return NewWithTMS(cfg, deps, skyslope.New(cfg.SkySlope, store))
	}
	return NewWithTMS(cfg, deps, dotloop.New(cfg.Dotloop, store))
}

// OAuthConfig is the OAuth client of cfg's TMS.
func OAuthConfig(cfg Config) oauth.Config {
	if cfg.TMS == TMSSkySlope {
		return cfg.SkySlope.OAuth()
	}
	return cfg.Dotloop.OAuthConfig()
}

// NewWithTMS returns tms-sync using adapter. An adapter that is a
// ChangePoller (SkySlope) is polled every TMSSYNC_POLL_INTERVAL.
func NewWithTMS(cfg Config, deps Deps, adapter tms.TMS) (*Syncer, error) {
	cfg = cfg.withDefaults()
	if cfg.Agents == nil {
		return nil, fmt.Errorf("%w: no agent directory", ErrConfig)
	}
	w, err := service.NewWorker(service.WorkerConfig{
		Service: bus.ServiceTMSSync, Consume: cfg.Bus, Concurrency: cfg.Concurrency,
		OpsAddr: cfg.OpsAddr, ShutdownTimeout: cfg.ShutdownTimeout,
	}, deps)
	if err != nil {
		return nil, err
	}
	s := &Syncer{w: w, cfg: cfg, tms: adapter, now: time.Now, recs: bus.NewRecords(w.JetStream(), stateBucket, bus.TMSSyncCRM)}
	if cfg.CRM == followupboss.Name {
		s.people = followupboss.New(cfg.FUB)
	}
	// One TMS account serves every message of both consumers: its 429
	// stops them, not just the message.
	w.Handle(bus.TMSSyncCRM, s.HandleCRM, bus.PauseOnThrottle())
	w.Handle(bus.TMSSyncWebhooks, s.HandleWebhook, bus.PauseOnThrottle())
	if cp, ok := adapter.(ChangePoller); ok && cfg.PollInterval > 0 {
		p := &poller{tms: cp, js: w.JetStream(), pub: w.Publisher(), interval: cfg.PollInterval}
		w.Go(p.run)
	}
	return s, nil
}

// Run consumes until ctx is done, then drains.
func (s *Syncer) Run(ctx context.Context) error { return s.w.Run(ctx) }

// Ready reports whether tms-sync can reach NATS.
func (s *Syncer) Ready(ctx context.Context) error { return s.w.Ready(ctx) }

// HandleCRM handles one CRM event by its subject.
func (s *Syncer) HandleCRM(ctx context.Context, m *bus.Message) error {
	switch m.Subject {
	case subjectStageChanged:
		return s.handleStage(ctx, m)
	case subjectUpdated:
		return s.handleUpdated(ctx, m)
	case subjectSynced:
		return s.handleSynced(ctx, m)
	}
	return bus.Permanentf("tms-sync does not handle %s", m.Subject)
}

// bucket binds the state bucket and learns when a claim is stale.
func (s *Syncer) bucket(ctx context.Context) (*bus.Records, error) {
	if _, err := s.recs.StaleAfter(ctx); err != nil {
		return nil, err
	}
	return s.recs, nil
}

// keyPart is id as a KV key token, or a hash of an id that is not plain.
func keyPart(id string) string { return bus.KeyPart(id) }

func episodeKey(crmName, contact string) string {
	return "tms-sync.episode." + keyPart(crmName) + "." + keyPart(contact)
}

// leadKey is where an earlier version kept a contact's latest lead; it is
// read, never written.
func leadKey(crmName, contact string) string {
	return "tms-sync.lead." + keyPart(crmName) + "." + keyPart(contact)
}
func txKey(tmsName, id string) string { return "tms-sync.tx." + keyPart(tmsName) + "." + keyPart(id) }
func soldKey(tmsName, id string) string {
	return "tms-sync.sold." + keyPart(tmsName) + "." + keyPart(id)
}
func closedKey(tmsName, id string) string {
	return "tms-sync.closed." + keyPart(tmsName) + "." + keyPart(id)
}

// errConflict is a compare-and-swap that lost.
var errConflict = bus.ErrConflict

// load reads the JSON record at key into v; its revision, 0 when absent.
func (s *Syncer) load(ctx context.Context, key string, v any) (uint64, error) {
	r, err := s.bucket(ctx)
	if err != nil {
		return 0, err
	}
	return r.Load(ctx, key, v)
}

// store writes v at key if the record is still at rev (absent for 0).
func (s *Syncer) store(ctx context.Context, key string, v any, rev uint64) (uint64, error) {
	r, err := s.bucket(ctx)
	if err != nil {
		return 0, err
	}
	return r.Store(ctx, key, v, rev)
}

// put writes v at key whatever is there.
func (s *Syncer) put(ctx context.Context, key string, v any) error {
	r, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	return r.Put(ctx, key, v)
}
