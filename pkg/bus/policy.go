package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

// DefaultSchedule is the delay before each retry of a transient error, from
// seconds to an hour. A consumer's BackOff applies only to ack timeouts, so
// the consume loop naks with these delays itself.
var DefaultSchedule = []time.Duration{
	time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute,
	10 * time.Minute, 30 * time.Minute, time.Hour,
}

// Class is how an error is treated.
type Class int

// Classes of error.
const (
	Transient Class = iota + 1
	Permanent
)

func (c Class) String() string {
	switch c {
	case Transient:
		return "transient"
	case Permanent:
		return "permanent"
	}
	return "unknown"
}

func (c Class) proto() opsv1.ErrorClass {
	if c == Permanent {
		return opsv1.ErrorClass_ERROR_CLASS_PERMANENT
	}
	return opsv1.ErrorClass_ERROR_CLASS_TRANSIENT
}

// Reason codes the bus itself gives. A code is stable, has no ids or personal
// data in it, and names what went wrong, so that failures can be grouped and
// alerted on: "<area>.<what>", lower case.
const (
	CodeHandlerTimeout = "handler.timeout"
	CodeHandlerPanic   = "handler.panic"
	// CodeDecode is a message that does not decode: it will never succeed.
	CodeDecode = "message.decode"
	// CodeTransient and CodePermanent are the fallbacks for an error that
	// carries no code of its own.
	CodeTransient = "handler.transient"
	CodePermanent = "handler.permanent"
)

// CodedError carries a stable reason code beside an error.
type CodedError struct {
	Code string
	Err  error
}

func (e *CodedError) Error() string { return e.Err.Error() }
func (e *CodedError) Unwrap() error { return e.Err }

// WithCode attaches a reason code to err; nil stays nil. The outermost code
// in a chain wins, so a caller can refine what an adapter said.
func WithCode(code string, err error) error {
	if err == nil {
		return nil
	}
	return &CodedError{Code: code, Err: err}
}

// ReasonCode returns the reason code of err: the outermost one attached with
// WithCode, else one derived from its class.
func ReasonCode(err error, class Class) string {
	var ce *CodedError
	if errors.As(err, &ce) && ce.Code != "" {
		return ce.Code
	}
	if errors.Is(err, ErrHandlerTimeout) {
		return CodeHandlerTimeout
	}
	if class == Permanent {
		return CodePermanent
	}
	return CodeTransient
}

// ErrHandlerTimeout is returned when a handler runs past the handler timeout.
// It is transient: the next delivery may be quicker.
var ErrHandlerTimeout = errors.New("handler timed out")

// PermanentError marks an error that retrying cannot fix: validation, a 4xx
// other than 429, a message that does not decode.
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanentf returns a PermanentError.
func Permanentf(format string, args ...any) error {
	return &PermanentError{Err: fmt.Errorf(format, args...)}
}

// AsPermanent marks err permanent; nil stays nil.
func AsPermanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// Undecodable marks a message that cannot be decoded: permanent, with
// CodeDecode.
func Undecodable(format string, args ...any) error {
	return WithCode(CodeDecode, Permanentf(format, args...))
}

// RetryAfterError is a transient error that says when to try again, as a
// vendor's Retry-After header does.
type RetryAfterError struct {
	Err   error
	After time.Duration
	// Throttle says a vendor's quota ran out. A handler registered with
	// PauseOnThrottle then pauses its whole consumer, on every replica,
	// until After has passed; others only delay this message.
	Throttle bool
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err with a delay the next attempt must wait for.
func RetryAfter(err error, after time.Duration) error {
	return &RetryAfterError{Err: err, After: after}
}

// Throttled wraps a vendor's 429 or rate-limit answer: the message is retried
// after after, and a consumer registered with PauseOnThrottle takes no new
// message until then.
func Throttled(err error, after time.Duration) error {
	return &RetryAfterError{Err: err, After: after, Throttle: true}
}

// Policy is the one value that decides what happens to a failed message.
type Policy struct {
	// Schedule is the delay before retry n (0-based). The last entry repeats.
	Schedule []time.Duration
	// MaxDelay caps any delay, including a Retry-After.
	MaxDelay time.Duration
	// Classify says whether an error is worth retrying. Nil means
	// DefaultClassify; a service may supply its own, usually one that
	// handles its own typed errors and falls back to DefaultClassify.
	Classify func(error) Class
}

// DefaultPolicy retries transient errors on DefaultSchedule.
func DefaultPolicy() Policy {
	return Policy{Schedule: DefaultSchedule, MaxDelay: time.Hour, Classify: DefaultClassify}
}

// DefaultClassify is the classification built from the bus's typed errors:
// a *PermanentError is permanent; everything else, including an unknown
// error, is transient. Retrying an unknown error loses nothing: the schedule
// bounds it, and then a failure record is written.
func DefaultClassify(err error) Class {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return Permanent
	}
	return Transient
}

func (p Policy) classify(err error) Class {
	if p.Classify == nil {
		return DefaultClassify(err)
	}
	return p.Classify(err)
}

// Delay is how long to wait before the next delivery after a transient
// failure of delivery attempt (1-based). A Retry-After in err wins over the
// schedule when it is longer.
func (p Policy) Delay(attempt int, err error) time.Duration {
	var d time.Duration
	if len(p.Schedule) > 0 {
		i := min(max(attempt-1, 0), len(p.Schedule)-1)
		d = p.Schedule[i]
	}
	var ra *RetryAfterError
	if errors.As(err, &ra) && ra.After > d {
		d = ra.After
	}
	if p.MaxDelay > 0 && d > p.MaxDelay {
		d = p.MaxDelay
	}
	return d
}

// stopping reports whether err comes from the service stopping rather than
// from the message: the run context is done and the handler was canceled.
// Such a message is handed back, not counted as failed. A handler that ran
// past its own timeout is not stopping: that is ErrHandlerTimeout.
func stopping(m *Message, err error) bool {
	return m.stopRequested() && errors.Is(err, context.Canceled) && !errors.Is(err, ErrHandlerTimeout)
}
