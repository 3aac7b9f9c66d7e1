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
	Consume         ConsumeConfig
	Concurrency     int
	OpsAddr         string
	ShutdownTimeout time.Duration
	// Policy overrides the policy of Consume, for a service that
	// classifies its own errors; its zero Schedule takes Consume's.
	Policy *bus.Policy
}

// Worker is the shared body of a service that consumes: its JetStream
// context, its runner with the bus policy and metrics, and its ops
// endpoint. A service holds one in an unexported field, registers its
// handlers with Handle, and calls Run.
type Worker struct {
	js     jetstream.JetStream
	runner *bus.Runner
	cfg    WorkerConfig
	deps   Deps
	tasks  []func(context.Context) error
}

// NewWorker returns the worker of cfg.Service.
func NewWorker(cfg WorkerConfig, deps Deps) (*Worker, error) {
	deps, err := deps.WithDefaults()
	if err != nil {
		return nil, err
	}
	if err := cfg.Consume.Validate(); err != nil {
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
	policy := cfg.Consume.Policy()
	if cfg.Policy != nil {
		schedule := policy.Schedule
		policy = *cfg.Policy
		if policy.Schedule == nil {
			policy.Schedule = schedule
		}
	}
	runner, err := bus.NewRunner(js, bus.RunnerOptions{
		Service:         cfg.Service,
		Policy:          policy,
		Logger:          deps.Logger,
		TracerProvider:  deps.TracerProvider,
		Metrics:         metrics,
		Hooks:           deps.Hooks,
		Concurrency:     cfg.Concurrency,
		ShutdownTimeout: cfg.ShutdownTimeout,
		HandlerTimeout:  cfg.Consume.HandlerTimeout,
	})
	if err != nil {
		return nil, err
	}
	return &Worker{js: js, runner: runner, cfg: cfg, deps: deps}, nil
}

// JetStream is the worker's JetStream context, for the service's KV buckets.
func (w *Worker) JetStream() jetstream.JetStream { return w.js }

// Publisher publishes the service's events, with its ce-source.
func (w *Worker) Publisher() *bus.Publisher { return w.runner.Publisher() }

// Handle binds h to one of the service's declared consumers (a typed value
// of the bus topology, such as bus.CRMSyncLeads). Run refuses to start
// unless every declared consumer of the service has a handler.
func (w *Worker) Handle(spec bus.ConsumerSpec, h bus.Handler, opts ...bus.HandlerOption) {
	w.runner.Handle(spec, h, opts...)
}

// Go adds a task that Run runs beside the consumers, until its context ends.
// Call it before Run.
func (w *Worker) Go(task func(context.Context) error) { w.tasks = append(w.tasks, task) }

// Run consumes and serves the ops endpoint until ctx is done, then drains.
// It creates nothing on the server: it refuses to start, naming the apply
// command, when a consumer of the service is missing or differs from its
// declaration.
func (w *Worker) Run(ctx context.Context) error {
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return w.runner.Run(ctx) })
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
