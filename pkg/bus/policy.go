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

// RetryAfterError is a transient error that says when to try again, as a
// vendor's Retry-After header does.
type RetryAfterError struct {
	Err   error
	After time.Duration
	// Pause stops the whole consumer, on every replica, until After has
	// passed: the quota that ran out is shared, so no other message should
	// be taken meanwhile.
	Pause bool
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %s)", e.Err, e.After)
}
func (e *RetryAfterError) Unwrap() error { return e.Err }

// RetryAfter wraps err with a delay the next attempt must wait for.
func RetryAfter(err error, after time.Duration) error {
	return &RetryAfterError{Err: err, After: after}
}

// Throttled wraps a vendor's 429: the message is retried after after, and
// the consumer takes no new message until then.
func Throttled(err error, after time.Duration) error {
	return &RetryAfterError{Err: err, After: after, Pause: true}
}

// Policy is the one value that decides what happens to a failed message.
type Policy struct {
	// Schedule is the delay before retry n (0-based). The last entry repeats.
	Schedule []time.Duration
	// MaxDelay caps any delay, including a Retry-After.
	MaxDelay time.Duration
}

// DefaultPolicy retries transient errors on DefaultSchedule.
func DefaultPolicy() Policy {
	return Policy{Schedule: DefaultSchedule, MaxDelay: time.Hour}
}

// Classify says whether err is worth retrying. Unknown errors are transient:
// the schedule bounds them, and then a failure record is written, so nothing
// is lost by retrying.
func (p Policy) Classify(err error) Class {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return Permanent
	}
	return Transient
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

// isShutdown reports whether err comes from the service stopping rather than
// from the message: such a message is handed back, not counted as failed.
func isShutdown(ctx context.Context, err error) bool {
	return ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded))
}
