package bus

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
)

// Message is what a handler sees: one stream message, whether it came from
// the consumer or from a redrive.
type Message struct {
	Subject  string
	Header   nats.Header
	Data     []byte
	Stream   string
	Sequence uint64
	// Time is when the stream stored the message.
	Time time.Time
	// Attempt is the 1-based delivery count.
	Attempt int
	// LastAttempt is true when a transient failure now will not be retried.
	LastAttempt bool
	// Redrive is true when an operator asked for the message to run again.
	Redrive bool

	inProgress func() error
	// stop is closed when the service is stopping.
	stop <-chan struct{}
}

// stopRequested reports whether the service is stopping.
func (m *Message) stopRequested() bool {
	select {
	case <-m.stop:
		return true
	default:
		return false
	}
}

// InProgress tells JetStream the handler is still working, resetting the ack
// timer. The consume loop already does this periodically; call it before a
// wait known to be long.
func (m *Message) InProgress() error {
	if m.inProgress == nil {
		return nil
	}
	return m.inProgress()
}

// Handler processes one message. Its error is classified by the Policy.
type Handler func(ctx context.Context, m *Message) error

// Middleware wraps a Handler.
type Middleware func(Handler) Handler

// Chain applies mw so that the first is outermost.
func Chain(h Handler, mw ...Middleware) Handler {
	for i := len(mw) - 1; i >= 0; i-- {
		h = mw[i](h)
	}
	return h
}
