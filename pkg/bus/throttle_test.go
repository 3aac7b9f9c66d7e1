package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

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
	})
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
