package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/telemetry"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

// TestHooks let a test simulate a crash. The zero value does nothing.
type TestHooks struct {
	mu   sync.Mutex
	any  int
	only map[string]int // by consumer
}

// SkipNextAcks makes the bus skip the ack of the next n successfully handled
// messages, as if the process died between the effect and the ack. JetStream
// then redelivers them after AckWait.
func (h *TestHooks) SkipNextAcks(n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.any += n
}

// SkipNextAcksOf is SkipNextAcks for the messages of one durable consumer.
func (h *TestHooks) SkipNextAcksOf(consumer string, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.only == nil {
		h.only = map[string]int{}
	}
	h.only[consumer] += n
}

func (h *TestHooks) takeSkip(consumer string) bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.only[consumer] > 0 {
		h.only[consumer]--
		return true
	}
	if h.any > 0 {
		h.any--
		return true
	}
	return false
}

// Runner runs a service's handlers on its durable consumers, and answers its
// redrive commands.
type Runner struct {
	js        jetstream.JetStream
	service   string
	topology  Topology
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
	spec    ConsumerSpec
	handler Handler
}

// RunnerOptions configure a Runner. Zero values take defaults.
type RunnerOptions struct {
	Service        string
	Topology       Topology
	Policy         Policy
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	Metrics        *Metrics
	Hooks          *TestHooks
	// Concurrency is the number of handlers running at once per consumer.
	Concurrency int
	// ShutdownTimeout bounds the wait for in-flight handlers at shutdown.
	ShutdownTimeout time.Duration
	// HandlerTimeout bounds one handler call.
	HandlerTimeout time.Duration
}

// NewRunner returns a Runner for opts.Service.
func NewRunner(js jetstream.JetStream, opts RunnerOptions) (*Runner, error) {
	if opts.Service == "" {
		return nil, errors.New("bus: runner needs a service name")
	}
	if opts.Topology == (Topology{}) {
		opts.Topology = DefaultTopology()
	}
	if err := opts.Topology.Validate(); err != nil {
		return nil, err
	}
	if opts.Policy.Schedule == nil {
		opts.Policy = DefaultPolicy()
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
		topology:        opts.Topology,
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

// Handle registers h for the declared consumer spec.
func (r *Runner) Handle(spec ConsumerSpec, h Handler) {
	if _, ok := r.handlers[spec.Durable]; !ok {
		r.order = append(r.order, spec.Durable)
	}
	r.handlers[spec.Durable] = route{spec: spec, handler: h}
}

// Run consumes until ctx is done, then drains: it stops taking messages,
// waits for in-flight handlers up to the shutdown timeout, and returns.
func (r *Runner) Run(ctx context.Context) error {
	if len(r.handlers) == 0 {
		return fmt.Errorf("bus: %s has no handlers", r.service)
	}
	workers := make([]*worker, 0, len(r.handlers)+1)
	for _, name := range r.order {
		rt := r.handlers[name]
		workers = append(workers, r.newWorker(rt.spec, r.wrap(rt.spec, rt.handler)))
	}
	redrive := RedriveConsumer(r.service)
	workers = append(workers, r.newWorker(redrive, r.wrap(redrive, r.redriveHandler)))

	errc := make(chan error, len(workers))
	for _, w := range workers {
		go func() { errc <- w.run(ctx) }()
	}
	var errs []error
	for range workers {
		if err := <-errc; err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// wrap composes the middleware every handler runs inside, in one place.
func (r *Runner) wrap(spec ConsumerSpec, h Handler) Handler {
	return Chain(h,
		r.tracing(spec),
		r.recoverPanic,
	)
}

func (r *Runner) recoverPanic(next Handler) Handler {
	return func(ctx context.Context, m *Message) (err error) {
		defer func() {
			if p := recover(); p != nil {
				logging.FromContext(ctx).Error("handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				err = Permanentf("handler panicked: %v", p)
			}
		}()
		return next(ctx, m)
	}
}

func (r *Runner) tracing(spec ConsumerSpec) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			ctx = telemetry.Extract(ctx, m.Header)
			ctx, span := r.tracer.Start(ctx, "process "+m.Subject,
				trace.WithSpanKind(trace.SpanKindConsumer),
				trace.WithAttributes(
					attribute.String("messaging.system", "nats"),
					attribute.String("messaging.destination.name", m.Subject),
					attribute.String("messaging.consumer.group.name", spec.Durable),
					attribute.Int64("messaging.nats.stream_sequence", int64(m.Sequence)),
					attribute.Int("messaging.nats.delivery", m.Attempt),
					attribute.Bool("brokerflow.redrive", m.Redrive),
				))
			defer span.End()
			logger := r.logger.With("consumer", spec.Durable, "stream", m.Stream, "seq", m.Sequence,
				"subject", m.Subject, "attempt", m.Attempt, "trace_id", span.SpanContext().TraceID().String())
			err := next(logging.WithLogger(ctx, logger), m)
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, r.policy.Classify(err).String())
			}
			return err
		}
	}
}

type worker struct {
	r       *Runner
	spec    ConsumerSpec
	handler Handler
}

func (r *Runner) newWorker(spec ConsumerSpec, h Handler) *worker {
	return &worker{r: r, spec: spec, handler: h}
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
	slots := min(w.r.concurrency, max(w.spec.MaxAckPending, 1))
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
				w.process(handlerCtx, ctx, msg)
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

// process runs the handler for one delivery and settles the message.
func (w *worker) process(handlerCtx, runCtx context.Context, msg jetstream.Msg) {
	start := time.Now()
	meta, err := msg.Metadata()
	if err != nil {
		w.r.logger.Error("message without metadata", "consumer", w.spec.Durable, "err", err)
		_ = msg.Term()
		return
	}
	m := &Message{
		Subject:     msg.Subject(),
		Header:      msg.Headers(),
		Data:        msg.Data(),
		Stream:      meta.Stream,
		Sequence:    meta.Sequence.Stream,
		Time:        meta.Timestamp,
		Attempt:     int(meta.NumDelivered),
		LastAttempt: int(meta.NumDelivered) >= w.r.topology.MaxDeliver,
		inProgress:  msg.InProgress,
	}
	ctx, cancel := context.WithTimeout(handlerCtx, w.r.handlerTimeout)
	defer cancel()
	stopProgress := keepAlive(ctx, msg, w.r.topology.AckWait)
	err = w.handler(ctx, m)
	stopProgress()

	outcome := w.settle(ctx, runCtx, msg, m, err)
	w.r.metrics.observe(w.spec.Durable, outcome, time.Since(start))
}

// keepAlive sends InProgress while a handler runs, so a slow but healthy
// handler is not redelivered to another replica.
func keepAlive(ctx context.Context, msg jetstream.Msg, ackWait time.Duration) (stop func()) {
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

func (w *worker) settle(ctx, runCtx context.Context, msg jetstream.Msg, m *Message, herr error) string {
	log := w.r.logger.With("consumer", w.spec.Durable, "stream", m.Stream, "seq", m.Sequence, "attempt", m.Attempt)
	if herr == nil {
		if w.r.hooks.takeSkip(w.spec.Durable) {
			log.Warn("test hook: ack skipped, message will be redelivered")
			return outcomeSkipped
		}
		if err := msg.DoubleAck(ctx); err != nil {
			log.Warn("ack failed; the message will be redelivered", "err", err)
		}
		return outcomeAck
	}
	if isShutdown(ctx, herr) || runCtx.Err() != nil && errors.Is(herr, context.Canceled) {
		_ = msg.NakWithDelay(time.Second)
		return outcomeRequeue
	}
	class := w.r.policy.Classify(herr)
	if class == Transient && !m.LastAttempt {
		delay := w.r.policy.Delay(m.Attempt, herr)
		w.pauseIfThrottled(ctx, herr, delay)
		log.Warn("handler failed, will retry", "err", herr, "delay", delay)
		if err := msg.NakWithDelay(delay); err != nil {
			log.Warn("nak failed; the message will be redelivered after ack wait", "err", err)
		}
		return outcomeRetry
	}
	f := w.r.failure(w.spec, m, class, herr)
	if err := w.r.recordFailure(ctx, f, fmt.Sprintf("%d", m.Attempt)); err != nil {
		// Without a record the message must not be terminated: hand it back.
		log.Error("cannot write failure record; message handed back", "err", err)
		_ = msg.NakWithDelay(w.r.policy.Delay(m.Attempt, herr))
		return outcomeRetry
	}
	log.Error("message failed", "class", class.String(), "err", herr)
	if err := msg.TermWithReason(truncate(herr.Error(), 256)); err != nil {
		log.Warn("term failed", "err", err)
	}
	return outcomeFailed
}

// pauseIfThrottled pauses the consumer on the server, for every replica,
// until a throttled vendor accepts calls again. Messages already in flight
// are nak'ed with the same delay by their own handlers.
func (w *worker) pauseIfThrottled(ctx context.Context, herr error, delay time.Duration) {
	var ra *RetryAfterError
	if !errors.As(herr, &ra) || !ra.Pause {
		return
	}
	until := time.Now().Add(delay)
	if _, err := w.r.js.PauseConsumer(ctx, w.spec.Stream, w.spec.Durable, until); err != nil {
		w.r.logger.Warn("cannot pause consumer", "consumer", w.spec.Durable, "err", err)
		return
	}
	w.r.logger.Warn("vendor throttled: consumer paused", "consumer", w.spec.Durable, "until", until)
	w.r.metrics.throttled.WithLabelValues(w.spec.Durable).Inc()
}

func (r *Runner) failure(spec ConsumerSpec, m *Message, class Class, err error) *opsv1.Failure {
	return &opsv1.Failure{
		Service:  r.service,
		Consumer: spec.Durable,
		Message: &commonv1.MessageRef{
			Stream:   m.Stream,
			Sequence: m.Sequence,
			Subject:  m.Subject,
		},
		Class:     class.proto(),
		Reason:    logging.RedactString(err.Error()),
		Attempts:  uint32(max(m.Attempt, 0)),
		FailedAt:  timestamppb.Now(),
		EventType: m.Header.Get(HeaderType),
		Redrive:   m.Redrive,
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
