package bus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/telemetry"
)

// The chain every handler runs inside, outermost first (Runner.wrap):
//
//	begin        span, logger and crash state on ctx
//	metrics      handled messages by outcome, handler duration
//	logOutcome   one log line per retry, failure or requeue
//	pause        only with PauseOnThrottle: a throttled vendor pauses the consumer
//	classify     the policy turns the error into a settlement
//	recoverPanic a panic is a permanent failure; a crash point is ErrCrashed
//	timeout      the handler timeout
//	...          the service's own middleware for this handler
//	handler
//
// Everything outside classify sees a *settlement, which the worker carries
// out: ack, nak with a delay, failure record then term, or nothing.

// action is what the worker does with a delivery.
type action int

const (
	actAck     action = iota + 1
	actRetry          // nak with delay
	actFail           // failure record, then term
	actRequeue        // the service is stopping: hand it back
	actCrash          // a test crash point: no ack, no nak, no record
)

// Outcome labels of the brokerflow_bus_messages_handled_total metric.
func (a action) String() string {
	switch a {
	case actAck:
		return "ack"
	case actRetry:
		return "retry"
	case actFail:
		return "failed"
	case actRequeue:
		return "requeue"
	case actCrash:
		return "crashed"
	}
	return "unknown"
}

// settlement is the classified result of a handler, as an error so that it
// passes through middleware; it wraps the handler's error.
type settlement struct {
	act   action
	class Class
	code  string
	delay time.Duration
	err   error
}

func (s *settlement) Error() string {
	if s.err == nil {
		return s.act.String()
	}
	return s.err.Error()
}
func (s *settlement) Unwrap() error { return s.err }

// settled returns the settlement of a handler's result. A nil error is an
// ack; a result that no classify middleware saw is classified here.
func (r *Runner) settled(m *Message, err error) *settlement {
	if err == nil {
		return &settlement{act: actAck}
	}
	var s *settlement
	if errors.As(err, &s) {
		return s
	}
	return r.settle(m, err)
}

// settle applies the policy to a handler error.
func (r *Runner) settle(m *Message, err error) *settlement {
	switch {
	case errors.Is(err, ErrCrashed):
		return &settlement{act: actCrash, err: err}
	case stopping(m, err):
		return &settlement{act: actRequeue, delay: time.Second, err: err}
	}
	class := r.policy.classify(err)
	s := &settlement{class: class, code: ReasonCode(err, class), err: err}
	if class == Transient && !m.LastAttempt {
		s.act, s.delay = actRetry, r.policy.Delay(m.Attempt, err)
	} else {
		s.act = actFail
	}
	return s
}

// HandlerOption configures one handler at Handle.
type HandlerOption func(*route)

// WithMiddleware adds a service's own middleware around one handler, inside
// the bus's: it sees the handler's raw error, before classification.
func WithMiddleware(mw ...Middleware) HandlerOption {
	return func(rt *route) { rt.middleware = append(rt.middleware, mw...) }
}

// PauseOnThrottle pauses the whole consumer, on every replica, when the
// handler returns a Throttled error: use it only when every message of the
// consumer goes to the same vendor account, whose quota ran out. Without it
// a throttled message alone is delayed.
func PauseOnThrottle() HandlerOption {
	return func(rt *route) { rt.pauseOnThrottle = true }
}

// wrap composes the middleware every handler runs inside, in one place.
func (r *Runner) wrap(rt route) Handler {
	mw := []Middleware{r.begin(rt.spec), r.metered(rt.spec), r.logOutcome}
	if rt.pauseOnThrottle {
		mw = append(mw, r.pause(rt.spec))
	}
	mw = append(mw, r.classify, recoverPanic, r.timeout)
	mw = append(mw, rt.middleware...)
	return Chain(rt.handler, mw...)
}

// begin starts the span, puts the delivery's logger on ctx, and the crash
// state that Crash reads.
func (r *Runner) begin(spec ConsumerSpec) Middleware {
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
			ctx, kill := context.WithCancel(logging.WithLogger(ctx, logger))
			defer kill()
			ctx = context.WithValue(ctx, crashKey{}, &crashState{hooks: r.hooks, consumer: spec.Durable, kill: kill})
			err := next(ctx, m)
			if s := r.settled(m, err); s.act != actAck {
				span.RecordError(err)
				span.SetStatus(codes.Error, s.act.String())
			}
			return err
		}
	}
}

// metered counts each delivery by outcome and times its handler.
func (r *Runner) metered(spec ConsumerSpec) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			start := time.Now()
			err := next(ctx, m)
			r.metrics.observe(spec.Durable, r.settled(m, err).act.String(), time.Since(start))
			return err
		}
	}
}

// logOutcome writes one line for each delivery that did not succeed.
func (r *Runner) logOutcome(next Handler) Handler {
	return func(ctx context.Context, m *Message) error {
		err := next(ctx, m)
		if err == nil {
			return nil
		}
		s := r.settled(m, err)
		log := logging.FromContext(ctx)
		switch s.act {
		case actRetry:
			log.Warn("handler failed, will retry", "err", s.err, "reason_code", s.code, "delay", s.delay)
		case actFail:
			log.Error("message failed", "class", s.class.String(), "reason_code", s.code, "err", s.err)
		case actRequeue:
			log.Info("service stopping: message handed back", "err", s.err)
		case actCrash:
			log.Warn("test hook: crashed at a crash point; the message will be redelivered", "err", s.err)
		}
		return err
	}
}

// pause pauses the consumer on the server, for every replica, until a
// throttled vendor accepts calls again. Messages already in flight are
// nak'ed with the same delay by their own deliveries.
func (r *Runner) pause(spec ConsumerSpec) Middleware {
	return func(next Handler) Handler {
		return func(ctx context.Context, m *Message) error {
			err := next(ctx, m)
			var ra *RetryAfterError
			if err == nil || !errors.As(err, &ra) || !ra.Throttle {
				return err
			}
			s := r.settled(m, err)
			if s.act != actRetry || m.Redrive {
				return err
			}
			until := time.Now().Add(s.delay)
			if _, perr := r.js.PauseConsumer(context.WithoutCancel(ctx), spec.Stream, spec.Durable, until); perr != nil {
				logging.FromContext(ctx).Warn("cannot pause consumer", "err", perr)
				return err
			}
			logging.FromContext(ctx).Warn("vendor throttled: consumer paused", "until", until)
			r.metrics.throttled.WithLabelValues(spec.Durable).Inc()
			return err
		}
	}
}

// classify turns the handler's result into a settlement under the policy.
// A success reaches the before-ack crash point here.
func (r *Runner) classify(next Handler) Handler {
	return func(ctx context.Context, m *Message) error {
		err := next(ctx, m)
		if err == nil {
			if m.Redrive {
				return nil
			}
			if st, ok := ctx.Value(crashKey{}).(*crashState); ok && st.hooks.take(st.consumer, PointBeforeAck) {
				return &settlement{act: actCrash, err: ErrCrashed}
			}
			return nil
		}
		return r.settle(m, err)
	}
}

// recoverPanic turns a panic into a permanent failure, and a simulated
// crash into ErrCrashed.
func recoverPanic(next Handler) Handler {
	return func(ctx context.Context, m *Message) (err error) {
		defer func() {
			p := recover()
			if p == nil {
				return
			}
			if c, ok := p.(crashSignal); ok {
				err = fmt.Errorf("%w: %s", ErrCrashed, c.point)
				return
			}
			logging.FromContext(ctx).Error("handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			err = WithCode(CodeHandlerPanic, Permanentf("handler panicked: %v", p))
		}()
		return next(ctx, m)
	}
}

// timeout bounds one handler call by the handler timeout. A handler that
// runs past it failed with ErrHandlerTimeout, a transient error: it is
// retried on the schedule and recorded on its last delivery, like any other.
func (r *Runner) timeout(next Handler) Handler {
	return func(ctx context.Context, m *Message) error {
		tctx, cancel := context.WithTimeoutCause(ctx, r.handlerTimeout, ErrHandlerTimeout)
		defer cancel()
		err := next(tctx, m)
		if err != nil && errors.Is(context.Cause(tctx), ErrHandlerTimeout) && ctx.Err() == nil {
			return fmt.Errorf("%w after %s: %w", ErrHandlerTimeout, r.handlerTimeout, err)
		}
		return err
	}
}
