package service

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/opshttp"
)

// WorkerConfig is what every consuming service configures the same way.
type WorkerConfig struct {
	Service         string
	Bus             TopologyConfig
	Concurrency     int
	OpsAddr         string
	ShutdownTimeout time.Duration
}

// Worker is the shared body of a service that consumes: its JetStream
// context, its runner with the bus policy and metrics, and its ops endpoint.
// A service registers its handlers on Runner and calls Run.
type Worker struct {
	JS     jetstream.JetStream
	Runner *bus.Runner
	cfg    WorkerConfig
	deps   Deps
	tasks  []func(context.Context) error
}

// Go adds a task that Run runs beside the consumers, until its context ends.
// Call it before Run, or from Run's setup.
func (w *Worker) Go(task func(context.Context) error) { w.tasks = append(w.tasks, task) }

// NewWorker returns the worker of cfg.Service.
func NewWorker(cfg WorkerConfig, deps Deps) (*Worker, error) {
	deps, err := deps.WithDefaults()
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	metrics, err := bus.NewMetrics(deps.Registerer, cfg.Service)
	if err != nil {
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	runner, err := bus.NewRunner(js, bus.RunnerOptions{
		Service:         cfg.Service,
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
	return &Worker{JS: js, Runner: runner, cfg: cfg, deps: deps}, nil
}

// Run applies the declarations, runs setup (which may now use the declared
// buckets), then consumes and serves the ops endpoint until ctx is done, and
// drains.
func (w *Worker) Run(ctx context.Context, setup func(context.Context) error) error {
	if err := bus.Apply(ctx, w.JS, w.cfg.Bus.Topology()); err != nil {
		return err
	}
	if setup != nil {
		if err := setup(ctx); err != nil {
			return err
		}
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return w.Runner.Run(ctx) })
	for _, task := range w.tasks {
		eg.Go(func() error { return task(ctx) })
	}
	if w.cfg.OpsAddr != "" {
		eg.Go(func() error {
			h := opshttp.Handler(w.deps.Gatherer, map[string]opshttp.Check{"nats": w.Ready})
			return opshttp.ListenAndServe(ctx, w.cfg.OpsAddr, h, w.cfg.ShutdownTimeout)
		})
	}
	return eg.Wait()
}

// Ready reports whether NATS is connected.
func (w *Worker) Ready(ctx context.Context) error {
	return NATSReady(w.deps.NATS)(ctx)
}
