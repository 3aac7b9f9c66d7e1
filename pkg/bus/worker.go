package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/telemetry"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

// Runner runs a service's handlers on its durable consumers, and answers its
// redrive commands.
type Runner struct {
	js        jetstream.JetStream
	service   string
	declared  []ConsumerSpec
	policy    Policy
	publisher *Publisher
	logger    *slog.Logger
	tracer    trace.Tracer
	metrics   *Metrics
	hooks     *TestHooks

	concurrency     int
	shutdownTimeout time.Duration
	handlerTimeout  time.Duration

	handlers map[string]route // by durable name
	order    []string
}

type route struct {
	spec            ConsumerSpec
	handler         Handler
	middleware      []Middleware
	pauseOnThrottle bool
	// server is the consumer as the server has it, read at Run.
	server ServerConsumer
	// wrapped is handler inside the whole chain.
	wrapped Handler
}

// RunnerOptions configure a Runner. Zero values take defaults.
type RunnerOptions struct {
	Service string
	// Consumers are the consumers the service must handle, every one of
	// them; default ConsumersOf(Service).
	Consumers      []ConsumerSpec
	Policy         Policy
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	Metrics        *Metrics
	Hooks          *TestHooks
	// Concurrency is the number of handlers running at once per consumer.
	Concurrency int
	// ShutdownTimeout bounds the wait for in-flight handlers at shutdown.
	ShutdownTimeout time.Duration
	// HandlerTimeout bounds one handler call; default 5 minutes.
	HandlerTimeout time.Duration
}

// NewRunner returns a Runner for opts.Service.
func NewRunner(js jetstream.JetStream, opts RunnerOptions) (*Runner, error) {
	if opts.Service == "" {
		return nil, errors.New("bus: runner needs a service name")
	}
	if opts.Consumers == nil {
		opts.Consumers = ConsumersOf(opts.Service)
	}
	if opts.Policy.Schedule == nil {
		opts.Policy.Schedule = DefaultSchedule
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		m, err := NewMetrics(nil, opts.Service)
		if err != nil {
			return nil, err
		}
		opts.Metrics = m
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 20 * time.Second
	}
	if opts.HandlerTimeout <= 0 {
		opts.HandlerTimeout = 5 * time.Minute
	}
	tp := telemetry.TracerProvider(opts.TracerProvider)
	return &Runner{
		js:              js,
		service:         opts.Service,
		declared:        opts.Consumers,
		policy:          opts.Policy,
		publisher:       NewPublisher(js, opts.Service, tp),
		logger:          opts.Logger.With("service", opts.Service),
		tracer:          tp.Tracer("github.com/brokerflow/brokerflow/pkg/bus"),
		metrics:         opts.Metrics,
		hooks:           opts.Hooks,
		concurrency:     opts.Concurrency,
		shutdownTimeout: opts.ShutdownTimeout,
		handlerTimeout:  opts.HandlerTimeout,
		handlers:        map[string]route{},
	}, nil
}

// Publisher returns the runner's publisher, whose ce-source is the service.
func (r *Runner) Publisher() *Publisher { return r.publisher }

// ErrUnbound is returned by Run when the handlers and the declared consumers
// of the service do not match one to one.
var ErrUnbound = errors.New("bus: handlers do not match the declared consumers")

// Handle registers h for the declared consumer spec. Bind with the typed
// values of the topology (CRMSyncLeads, …), so that a renamed consumer
// fails to compile rather than leave a handler unbound.
func (r *Runner) Handle(spec ConsumerSpec, h Handler, opts ...HandlerOption) {
	if _, ok := r.handlers[spec.Durable]; !ok {
		r.order = append(r.order, spec.Durable)
	}
	rt := route{spec: spec, handler: h}
	for _, o := range opts {
		o(&rt)
	}
	r.handlers[spec.Durable] = rt
}

// bindings checks that every declared consumer has exactly one handler and
// every handler a declared consumer.
func (r *Runner) bindings() error {
	var errs []error
	for _, spec := range r.declared {
		rt, ok := r.handlers[spec.Durable]
		switch {
		case !ok || rt.handler == nil:
			errs = append(errs, fmt.Errorf("%w: declared consumer %s of %s has no handler", ErrUnbound, spec.Durable, r.service))
		case !slices.Equal(rt.spec.FilterSubjects, spec.FilterSubjects) || rt.spec.Stream != spec.Stream:
			errs = append(errs, fmt.Errorf("%w: handler of %s is bound to a spec that differs from its declaration", ErrUnbound, spec.Durable))
		}
	}
	for _, name := range r.order {
		if !slices.ContainsFunc(r.declared, func(s ConsumerSpec) bool { return s.Durable == name }) {
			errs = append(errs, fmt.Errorf("%w: %s is not a declared consumer of %s", ErrUnbound, name, r.service))
		}
	}
	if len(r.order) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%w: %s has no handlers", ErrUnbound, r.service))
	}
	return errors.Join(errs...)
}

// Run checks the bindings and that every consumer exists on the server as
// declared, then consumes until ctx is done, then drains: it stops taking
// messages, waits for in-flight handlers up to the shutdown timeout, and
// returns. It creates and changes nothing on the server: that is the apply
// step's job (Apply).
func (r *Runner) Run(ctx context.Context) error {
	if err := r.bindings(); err != nil {
		return err
	}
	redrive := route{spec: RedriveConsumer(r.service), handler: r.redriveHandler}
	routes := make([]route, 0, len(r.order)+1)
	for _, name := range r.order {
		routes = append(routes, r.handlers[name])
	}
	routes = append(routes, redrive)
	for i := range routes {
		sc, err := Verify(ctx, r.js, routes[i].spec)
		if err != nil {
			return err
		}
		routes[i].server = sc
		routes[i].wrapped = r.wrap(routes[i])
		if routes[i].spec.Durable != redrive.spec.Durable {
			r.handlers[routes[i].spec.Durable] = routes[i]
		}
	}

	errc := make(chan error, len(routes))
	for _, rt := range routes {
		w := &worker{r: r, route: rt}
		go func() { errc <- w.run(ctx) }()
	}
	var errs []error
	for range routes {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

type worker struct {
	r *Runner
	route
}

func (w *worker) run(ctx context.Context) error {
	cons, err := w.r.js.Consumer(ctx, w.spec.Stream, w.spec.Durable)
	if err != nil {
		return fmt.Errorf("consumer %s on %s: %w", w.spec.Durable, w.spec.Stream, err)
	}
	// A message is pulled only when a handler is free to run it: a message
	// waiting in a client-side buffer has its ack timer running with nobody
	// to send progress, and would be redelivered to another replica while
	// this one still means to handle it. So never more than the free slots,
	// and never more than MaxAckPending.
	slots := min(w.r.concurrency, max(w.server.MaxAckPending, 1))
	sem := make(chan struct{}, slots)
	var inflight sync.WaitGroup
	// Handlers outlive ctx so that shutdown lets them finish; hardStop ends
	// them once the shutdown timeout has passed.
	handlerCtx, hardStop := context.WithCancel(context.WithoutCancel(ctx))
	defer hardStop()

	for ctx.Err() == nil {
		free := w.acquire(ctx, sem)
		if free == 0 {
			break
		}
		msgs, err := w.fetch(cons, free)
		got := 0
		for _, msg := range msgs {
			got++
			inflight.Add(1)
			go func() {
				defer func() { <-sem; inflight.Done() }()
				w.process(handlerCtx, ctx.Done(), msg)
			}()
		}
		for range free - got {
			<-sem
		}
		if err != nil && ctx.Err() == nil {
			w.r.logger.Warn("fetch failed", "consumer", w.spec.Durable, "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	done := make(chan struct{})
	go func() { inflight.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.r.shutdownTimeout):
		hardStop()
		w.r.logger.Warn("shutdown timeout: handlers canceled; their messages will be redelivered", "consumer", w.spec.Durable)
		<-done
	}
	return nil
}

// acquire waits for at least one free handler slot and takes every other
// free one; it returns how many it took, or 0 once ctx is done.
func (w *worker) acquire(ctx context.Context, sem chan struct{}) int {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return 0
	}
	n := 1
	for n < cap(sem) {
		select {
		case sem <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

// fetchWait bounds a pull that waits for messages, and so how long a
// shutdown waits for the pull in flight.
const fetchWait = time.Second

// fetch takes up to n messages: what is there now, or else the next one to
// arrive within fetchWait.
func (w *worker) fetch(cons jetstream.Consumer, n int) ([]jetstream.Msg, error) {
	collect := func(b jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
		if err != nil {
			return nil, err
		}
		var out []jetstream.Msg
		for m := range b.Messages() {
			out = append(out, m)
		}
		if err := b.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return out, err
		}
		return out, nil
	}
	msgs, err := collect(cons.FetchNoWait(n))
	if err != nil || len(msgs) > 0 {
		return msgs, err
	}
	return collect(cons.Fetch(1, jetstream.FetchMaxWait(fetchWait)))
}

// process runs one delivery through the handler chain and carries out its
// settlement.
func (w *worker) process(ctx context.Context, stop <-chan struct{}, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		w.r.logger.Error("message without metadata", "consumer", w.spec.Durable, "err", err)
		_ = msg.Term()
		return
	}
	m := &Message{
		Subject:  msg.Subject(),
		Header:   msg.Headers(),
		Data:     msg.Data(),
		Stream:   meta.Stream,
		Sequence: meta.Sequence.Stream,
		Time:     meta.Timestamp,
		Attempt:  int(meta.NumDelivered),
		// The server's MaxDeliver, not a service's idea of it, decides the
		// last delivery.
		LastAttempt: w.server.MaxDeliver > 0 && int(meta.NumDelivered) >= w.server.MaxDeliver,
		inProgress:  msg.InProgress,
		stop:        stop,
	}
	stopProgress := keepAlive(ctx, msg, w.server.AckWait)
	herr := w.wrapped(ctx, m)
	stopProgress()
	w.carryOut(ctx, msg, m, w.r.settled(m, herr))
}

// keepAlive sends InProgress while a handler runs, so a slow but healthy
// handler is not redelivered to another replica.
func keepAlive(ctx context.Context, msg jetstream.Msg, ackWait time.Duration) (stop func()) {
	if ackWait <= 0 {
		ackWait = 30 * time.Second
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// carryOut acks, naks, records and terminates, or does nothing, as the
// settlement says. Logging and metrics happened in the chain.
func (w *worker) carryOut(ctx context.Context, msg jetstream.Msg, m *Message, s *settlement) {
	log := w.r.logger.With("consumer", w.spec.Durable, "stream", m.Stream, "seq", m.Sequence, "attempt", m.Attempt)
	ctx = context.WithoutCancel(ctx)
	switch s.act {
	case actAck:
		if err := msg.DoubleAck(ctx); err != nil {
			log.Warn("ack failed; the message will be redelivered", "err", err)
		}
	case actRetry, actRequeue:
		if err := msg.NakWithDelay(s.delay); err != nil {
			log.Warn("nak failed; the message will be redelivered after ack wait", "err", err)
		}
	case actCrash:
		// As if the process died: nothing is sent.
	case actFail:
		f := w.r.failure(w.spec, m, s)
		if err := w.r.recordFailure(ctx, f, fmt.Sprintf("%d", m.Attempt)); err != nil {
			// Without a record the message must not be terminated: hand it back.
			log.Error("cannot write failure record; message handed back", "err", err)
			_ = msg.NakWithDelay(w.r.policy.Delay(m.Attempt, s.err))
			return
		}
		if err := msg.TermWithReason(f.GetReasonCode() + ": " + logging.Truncate(f.GetReason(), 200)); err != nil {
			log.Warn("term failed", "err", err)
		}
	}
}

func (r *Runner) failure(spec ConsumerSpec, m *Message, s *settlement) *opsv1.Failure {
	return &opsv1.Failure{
		Service:  r.service,
		Consumer: spec.Durable,
		Message: &commonv1.MessageRef{
			Stream:   m.Stream,
			Sequence: m.Sequence,
			Subject:  m.Subject,
		},
		Class:      s.class.proto(),
		Reason:     logging.RedactString(s.err.Error()),
		ReasonCode: s.code,
		Attempts:   uint32(max(m.Attempt, 0)),
		FailedAt:   timestamppb.Now(),
		EventType:  m.Header.Get(HeaderType),
		Redrive:    m.Redrive,
	}
}

// recordFailure publishes f on ops.failure.<service>. attemptKey makes the id
// unique per failing delivery, so one failure makes one record.
func (r *Runner) recordFailure(ctx context.Context, f *opsv1.Failure, attemptKey string) error {
	id := fmt.Sprintf("failure:%s:%s:%d:%s", r.service, f.GetMessage().GetStream(), f.GetMessage().GetSequence(), attemptKey)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := r.publisher.Publish(pctx, FailureSubject(r.service), id, f)
	return err
}
