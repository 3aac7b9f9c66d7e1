package bus

import (
	"context"
	"errors"
	"sync"
)

// CrashPoint names a place in a handler where a process could die with
// consequences: "after the CRM call, before its outcome is recorded". A
// service declares its points as constants and marks them with Crash; a test
// arms one with TestHooks and sees the process behave as if killed there.
type CrashPoint string

// PointBeforeAck is marked by the bus itself: the handler succeeded and its
// message is about to be acked.
const PointBeforeAck CrashPoint = "bus.before_ack"

// ErrCrashed is how the bus sees a handler that crashed at an armed point:
// the message is neither acked nor nak'ed, and is redelivered after AckWait.
var ErrCrashed = errors.New("bus: test hook: crashed at a crash point")

// TestHooks let a test simulate a crash at a named point. The zero value
// does nothing, and production code passes nil.
type TestHooks struct {
	mu    sync.Mutex
	armed map[hookKey]int
}

type hookKey struct {
	consumer string // "" arms the point for every consumer
	point    CrashPoint
}

// CrashAt arms point for the next n times any handler reaches it.
func (h *TestHooks) CrashAt(point CrashPoint, n int) { h.arm(hookKey{point: point}, n) }

// CrashAtOf arms point for the next n times a handler of the durable
// consumer reaches it.
func (h *TestHooks) CrashAtOf(consumer string, point CrashPoint, n int) {
	h.arm(hookKey{consumer: consumer, point: point}, n)
}

// SkipNextAcks makes the next n successfully handled messages crash before
// their ack (PointBeforeAck): JetStream redelivers them after AckWait.
func (h *TestHooks) SkipNextAcks(n int) { h.CrashAt(PointBeforeAck, n) }

// SkipNextAcksOf is SkipNextAcks for the messages of one durable consumer.
func (h *TestHooks) SkipNextAcksOf(consumer string, n int) {
	h.CrashAtOf(consumer, PointBeforeAck, n)
}

func (h *TestHooks) arm(k hookKey, n int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.armed == nil {
		h.armed = map[hookKey]int{}
	}
	h.armed[k] += n
}

// Armed returns how many more times point will crash a handler of the
// durable consumer: a test checks that the crashes it armed happened.
func (h *TestHooks) Armed(consumer string, point CrashPoint) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.armed[hookKey{consumer, point}]
}

// take reports whether point is armed for consumer, and disarms it once.
func (h *TestHooks) take(consumer string, point CrashPoint) bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range []hookKey{{consumer, point}, {"", point}} {
		if h.armed[k] > 0 {
			h.armed[k]--
			return true
		}
	}
	return false
}

// crashState is what Crash needs from the delivery it runs in.
type crashState struct {
	hooks    *TestHooks
	consumer string
	kill     context.CancelFunc
}

type crashKey struct{}

// crashSignal is the panic value of a simulated crash; recoverPanic turns it
// into ErrCrashed.
type crashSignal struct{ point CrashPoint }

// Crash marks point in a handler. When a test armed it, the handler stops
// here as if the process were killed: its context is canceled, so no further
// call goes out, the rest of the handler does not run, and the message is
// not settled. Deferred calls still run, as they would not after a real
// kill, so a handler must not defer an effect it relies on for safety.
// Without a test hook it does nothing.
func Crash(ctx context.Context, point CrashPoint) {
	st, ok := ctx.Value(crashKey{}).(*crashState)
	if !ok || !st.hooks.take(st.consumer, point) {
		return
	}
	st.kill()
	panic(crashSignal{point: point})
}
