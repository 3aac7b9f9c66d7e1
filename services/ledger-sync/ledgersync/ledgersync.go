// Package ledgersync books each closed transaction's commission in the
// brokerage's accounting ledger (QuickBooks Online), exactly once: it reads
// the closing again from the TMS, divides the gross commission by the
// agent's commission plan, counts it once into the agent's plan-year total,
// books one document with a line per component, and announces
// ledger.commission.booked.
package ledgersync

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms"
)

// Deps is what the caller owns.
type Deps = service.Deps

// SubjectBooked is where ledger-sync announces a booked commission.
const SubjectBooked = "ledger.commission.booked"

// stateBucket holds ledger-sync's records under ledger-sync.>: each
// transaction's booking and each agent's plan-year total.
const stateBucket = "idempotency"

// Crash points. After the year to date: the agent's total counts this
// closing and nothing is booked yet. After the ledger call: the document is
// in the ledger and the transaction's record does not say so yet (the
// harmful one: a second call must return the same document).
const (
	CrashAfterYearToDate  bus.CrashPoint = "ledger-sync.after_year_to_date"
	CrashAfterLedgerCall  bus.CrashPoint = "ledger-sync.after_ledger_call"
	CrashAfterBookedState bus.CrashPoint = "ledger-sync.after_booked_record"
)

// Syncer is ledger-sync.
type Syncer struct {
	w      *service.Worker
	cfg    Config
	ledger ledger.Ledger
	tms    tms.TMS
	now    func() time.Time

	// payments is the ledger's payments, when it reports them; passed counts
	// the ledger changes passed by, by reason.
	payments ledger.Payments
	passed   *prometheus.CounterVec

	recs *bus.Records
}

// NewWithAdapters returns ledger-sync booking in led, reading the TMS
// through t; t is nil for a TMS nothing is read from (LEDGERSYNC_TMS=skyslope).
func NewWithAdapters(cfg Config, deps Deps, led ledger.Ledger, t tms.TMS) (*Syncer, error) {
	if !cfg.Enabled() {
		return nil, fmt.Errorf("%w: LEDGERSYNC_LEDGER is none: ledger-sync has nothing to do", ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w, err := service.NewWorker(service.WorkerConfig{
		Service: bus.ServiceLedgerSync, Consume: cfg.Bus, Concurrency: cfg.Concurrency,
		OpsAddr: cfg.OpsAddr, ShutdownTimeout: cfg.ShutdownTimeout,
	}, deps)
	if err != nil {
		return nil, err
	}
	s := &Syncer{w: w, cfg: cfg, ledger: led, tms: t, now: time.Now, recs: bus.NewRecords(w.JetStream(), stateBucket, bus.LedgerSyncClosings)}
	// One ledger company serves every closing: its throttle stops the
	// consumer, not just the message.
	w.Handle(bus.LedgerSyncClosings, s.HandleClosed, bus.PauseOnThrottle())
	if p, ok := led.(ledger.Payments); ok {
		s.payments = p
		s.passed = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "brokerflow_ledger_changes_passed_by_total",
			Help:        "Ledger changes ledger-sync did not follow: of another company, not a payment or a document, deleted, or of a document it did not book.",
			ConstLabels: prometheus.Labels{"service": bus.ServiceLedgerSync},
		}, []string{"reason"})
		if deps.Registerer != nil {
			if err := deps.Registerer.Register(s.passed); err != nil {
				return nil, err
			}
		}
		w.Handle(bus.LedgerSyncPayments, s.HandleLedgerWebhook, bus.PauseOnThrottle())
		if cfg.CDCInterval > 0 {
			w.Go(s.pollChanges)
		}
	}
	return s, nil
}

// Run consumes until ctx is done, then drains.
func (s *Syncer) Run(ctx context.Context) error { return s.w.Run(ctx) }

// Ready reports whether ledger-sync can reach NATS.
func (s *Syncer) Ready(ctx context.Context) error { return s.w.Ready(ctx) }

// TxKey is the KV key of a transaction's booking record.
func TxKey(tmsName, id string) string {
	return "ledger-sync.tx." + bus.KeyPart(tmsName) + "." + bus.KeyPart(id)
}

// YearToDateKey is the KV key of an agent's plan-year total; planYear is
// the plan year's first day (YYYY-MM-DD).
func YearToDateKey(agentID, planYear string) string {
	return "ledger-sync.ytd." + bus.KeyPart(agentID) + "." + bus.KeyPart(planYear)
}
