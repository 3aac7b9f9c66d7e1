// Package reporting keeps the reporting read model: it projects the events
// of LEADS, CRM, TMS, LEDGER and REPORTING into one database (SQLite, or
// a schema of a PostgreSQL database) that
// joins each journey (lead, contact, active client, transaction, closing,
// commission booked and paid), and answers per source and period: the
// funnel, speed to lead, conversion, commissions and ROI against spend. A
// rebuild from the streams (Replay, `brokerflow replay`) writes a fresh
// database and the service switches to it once it is caught up.
package reporting

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/opshttp"
	"github.com/brokerflow/brokerflow/pkg/service"
)

// Deps is what the caller owns.
type Deps = service.Deps

// Reporter is the reporting service.
type Reporter struct {
	w           *service.Worker
	cfg         Config
	attribution Attribution
	log         *slog.Logger
	gatherer    prometheus.Gatherer
	speed       *prometheus.HistogramVec
	switches    prometheus.Counter

	place Place
	// mu guards the database in use: handlers and API reads hold it for
	// reading, a switch to a rebuilt database for writing.
	mu    sync.RWMutex
	store *Store
}

// New opens the database CURRENT names in cfg.DataDir, or in the
// PostgreSQL database cfg.DatabaseURL names (making the first one when
// there is none), and binds a handler to each of reporting's consumers.
func New(cfg Config, deps Deps) (*Reporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	w, err := service.NewWorker(service.WorkerConfig{
		Service:         bus.ServiceReporting,
		Consume:         cfg.Bus,
		Concurrency:     cfg.Concurrency,
		OpsAddr:         cfg.OpsAddr,
		ShutdownTimeout: cfg.ShutdownTimeout,
	}, deps)
	if err != nil {
		return nil, err
	}
	deps, _ = deps.WithDefaults()
	attribution, _ := ParseAttribution(cfg.Attribution)
	r := &Reporter{w: w, cfg: cfg, attribution: attribution, log: deps.Logger.With("service", bus.ServiceReporting), gatherer: deps.Gatherer}
	if err := r.metrics(deps.Registerer); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn, err := cfg.DSN()
	if err != nil {
		return nil, err
	}
	if r.place, err = OpenPlace(ctx, cfg.DataDir, dsn); err != nil {
		return nil, err
	}
	if err := r.open(ctx); err != nil {
		return nil, errors.Join(err, r.place.Close())
	}
	for _, spec := range []bus.ConsumerSpec{bus.ReportingLeads, bus.ReportingCRM, bus.ReportingTMS, bus.ReportingLedger, bus.ReportingSpend} {
		w.Handle(spec, r.handle)
	}
	w.Go(r.watch)
	if cfg.Addr != "" {
		w.Go(func(ctx context.Context) error {
			return opshttp.ListenAndServe(ctx, cfg.Addr, r.Handler(), cfg.ShutdownTimeout)
		})
	}
	return r, nil
}

func (r *Reporter) metrics(reg prometheus.Registerer) error {
	r.speed = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "brokerflow_reporting_speed_to_lead_seconds",
		Help: "Speed to lead, live: from the webhook's receipt to the contact in the CRM, by lead source.",
		// From a sandbox's milliseconds to a person's hours.
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 14400, 86400},
	}, []string{"source"})
	r.switches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "brokerflow_reporting_database_switches_total",
		Help: "Switches to a rebuilt read-model database.",
	})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{r.speed, r.switches} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register reporting metrics: %w", err)
		}
	}
	return nil
}

// open opens the database CURRENT names, or makes the first one. When a
// rebuild replaced CURRENT while the service was not running, the database
// LIVE names is opened first and the rebuilt one is caught up from it.
func (r *Reporter) open(ctx context.Context) error {
	p := r.place
	cur, err := p.initCurrent(ctx, p.newName(time.Now()))
	if err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	name := cur
	if live, err := p.read(ctx, liveRole); err == nil && live != "" && live != cur {
		if ok, err := p.exists(ctx, live); err == nil && ok {
			name = live
		}
	}
	st, err := p.open(ctx, name, openOptions{})
	if err != nil {
		return err
	}
	r.store = st
	if err := p.write(ctx, liveRole, name); err != nil {
		return errors.Join(err, st.Close())
	}
	if name != cur {
		return r.switchTo(ctx, cur)
	}
	return nil
}

// Run consumes until ctx is done, then closes the database.
func (r *Reporter) Run(ctx context.Context) error {
	err := r.w.Run(ctx)
	r.mu.Lock()
	defer r.mu.Unlock()
	return errors.Join(err, r.store.Close(), r.place.Close())
}

// Ready reports whether reporting can reach NATS.
func (r *Reporter) Ready(ctx context.Context) error { return r.w.Ready(ctx) }

// Database is the name of the database in use in its place (a file name,
// or a schema).
func (r *Reporter) Database() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.store.Name
}

// Place is where the service's databases are.
func (r *Reporter) Place() Place { return r.place }

// withStore runs fn on the database in use; a switch waits for it.
func (r *Reporter) withStore(fn func(*Store) error) error {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return fn(r.store)
}

// handle projects one event of any of reporting's consumers.
func (r *Reporter) handle(ctx context.Context, m *bus.Message) error {
	ev := Event{Stream: m.Stream, Seq: m.Sequence, Subject: m.Subject, Header: m.Header, Data: m.Data, Time: m.Time}
	var res Applied
	err := r.withStore(func(s *Store) error {
		var err error
		res, err = s.Apply(ctx, []Event{ev})
		return err
	})
	if errors.Is(err, errUndecodable) {
		return bus.Undecodable("%w", err)
	}
	if err != nil {
		return err
	}
	for _, o := range res.Observed {
		r.speed.WithLabelValues(o.Source).Observe(o.Speed.Seconds())
	}
	return nil
}

// Handler serves the JSON API, the CSV exports and /metrics.
func (r *Reporter) Handler() http.Handler { return r.api() }

// watch switches to the database CURRENT names when a rebuild replaced it.
func (r *Reporter) watch(ctx context.Context) error {
	t := time.NewTicker(r.cfg.SwitchPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		name, err := r.place.read(ctx, currentRole)
		if err != nil {
			r.log.Warn("cannot read CURRENT", "err", err)
			continue
		}
		r.mu.RLock()
		same := name == r.store.Name || name == ""
		r.mu.RUnlock()
		if same {
			continue
		}
		if err := r.switchTo(ctx, name); err != nil {
			r.log.Error("cannot switch to the rebuilt database; staying on the old one", "database", name, "err", err)
		}
	}
}

// switchTo makes the rebuilt database name the one in use. The rebuild
// stopped at the streams' ends as it saw them (rebuilt_to); the live
// projection may have applied later events to the old database since, here
// or in another replica. With every handler held off, every message from
// there to each stream's end now is read by sequence and applied to the new
// database, so it holds everything the old one did, whoever wrote it, and
// the old one is not read (another replica may have dropped it already).
// Then the live projection goes on in it, from the last sequence applied
// per stream (an event delivered again that it already holds changes
// nothing).
func (r *Reporter) switchTo(ctx context.Context, name string) error {
	next, err := r.place.open(ctx, name, openOptions{})
	if err != nil {
		return err
	}
	r.mu.Lock()
	old := r.store
	err = r.catchUp(ctx, next)
	if err != nil {
		r.mu.Unlock()
		return errors.Join(err, next.Close())
	}
	r.store = next
	err = r.place.write(ctx, liveRole, name)
	r.mu.Unlock()
	if err != nil {
		r.log.Error("cannot record the database in use in LIVE", "err", err)
	}
	r.switches.Inc()
	r.log.Info("switched to the rebuilt database", "database", name, "previous", old.Name)
	return errors.Join(old.Close(), r.place.Remove(ctx, old.Name))
}

// catchUp applies to next every message of the streams past where its
// rebuild stopped (or, for a database no rebuild made, past its cursors).
func (r *Reporter) catchUp(ctx context.Context, next *Store) error {
	from, err := next.rebuiltTo(ctx)
	if err != nil {
		return err
	}
	if from == nil {
		if from, err = next.Cursors(ctx); err != nil {
			return err
		}
	}
	js := r.w.JetStream()
	for _, stream := range ReplayStreams {
		st, err := js.Stream(ctx, stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("catch up %s: %w", stream, err)
		}
		info, err := st.Info(ctx)
		if err != nil {
			return fmt.Errorf("catch up %s: %w", stream, err)
		}
		last := info.State.LastSeq
		if last <= from[stream] {
			continue
		}
		var evs []Event
		for seq := from[stream] + 1; seq <= last; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("catch up %s/%d: %w", stream, seq, err)
			}
			evs = append(evs, Event{Stream: stream, Seq: m.Sequence, Subject: m.Subject, Header: m.Header, Data: m.Data, Time: m.Time})
		}
		if err := applySkippingUndecodable(ctx, next, evs, r.log); err != nil {
			return err
		}
		logging.FromContext(ctx).Debug("caught up", "stream", stream, "from", from[stream], "to", last)
	}
	return nil
}

// applySkippingUndecodable applies evs; an event that does not decode is
// left out (the live consumer recorded its failure), as a replay does.
func applySkippingUndecodable(ctx context.Context, s *Store, evs []Event, log *slog.Logger) error {
	ds := make([]decoded, 0, len(evs))
	for _, e := range evs {
		d, err := decode(e)
		if err != nil {
			log.Warn("event left out: it does not decode", "stream", e.Stream, "seq", e.Seq, "err", err)
			continue
		}
		ds = append(ds, d)
	}
	_, err := s.apply(ctx, ds)
	return err
}
