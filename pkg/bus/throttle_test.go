package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
)

func TestRunner_throttledErrorPausesTheConsumer(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var c calls
	e.run(t, func(_ context.Context, m *bus.Message) error {
		if c.add(m) == 1 {
			return bus.Throttled(errors.New("HTTP 429"), 2*time.Second)
		}
		return nil
	}, bus.PauseOnThrottle())
	e.publish(t, "throttle-1")
	natstest.Eventually(t, 30*time.Second, "the consumer paused", func() bool {
		cons, err := e.js.Consumer(context.Background(), bus.StreamLeads, testService)
		if err != nil {
			return false
		}
		info, err := cons.Info(context.Background())
		return err == nil && info.Paused
	})
	// Taken again once the pause is over, and never dropped.
	natstest.Eventually(t, 30*time.Second, "the retry after the pause", func() bool { return c.count() == 2 })
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("a throttled message wrote %d failure records", len(f))
	}
}

func TestRunner_throttledErrorWithoutPauseDelaysOnlyItsMessage(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var c calls
	e.run(t, func(_ context.Context, m *bus.Message) error {
		if c.add(m) == 1 {
			// One vendor among several answered 429 with a long Retry-After:
			// other messages of the consumer go elsewhere and must keep flowing.
			return bus.Throttled(errors.New("HTTP 429"), time.Hour)
		}
		return nil
	})
	first := e.publish(t, "throttle-a")
	natstest.Eventually(t, 30*time.Second, "the throttled call", func() bool { return c.count() == 1 })
	second := e.publish(t, "throttle-b")
	natstest.Eventually(t, 30*time.Second, "the other message, while the throttled one waits", func() bool { return c.count() == 2 })
	// The other message is acked; the throttled one waits for its retry.
	var info *jetstream.ConsumerInfo
	natstest.Eventually(t, 30*time.Second, "the other message acked", func() bool {
		cons, err := e.js.Consumer(context.Background(), bus.StreamLeads, testService)
		if err != nil {
			return false
		}
		info = cons.CachedInfo()
		return info.NumAckPending == 1 && info.NumPending == 0
	})
	if info.Paused {
		t.Fatal("a throttled message paused a consumer registered without PauseOnThrottle")
	}
	got := c.all()
	if got[0].Sequence != first || got[1].Sequence != second {
		t.Fatalf("calls: seq %d then %d", got[0].Sequence, got[1].Sequence)
	}
	if len(e.failures(t)) != 0 {
		t.Fatalf("the throttled message must wait for its retry, not fail: %d failures", len(e.failures(t)))
	}
}
