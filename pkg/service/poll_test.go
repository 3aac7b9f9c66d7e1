package service_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
)

// Two replicas of one poller take turns: while both run, the vendor is
// polled about once an interval, not twice; when the one polling stops,
// the other takes over.
func TestPollEvery_replicasTakeTurns(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	if _, err := js.CreateKeyValue(natstest.Context(t, 10*time.Second), jetstream.KeyValueConfig{Bucket: service.CursorBucket}); err != nil {
		t.Fatal(err)
	}
	const interval = 50 * time.Millisecond
	var polls [2]atomic.Int64
	stops := make([]func(), 2)
	for i := range polls {
		ctx, cancel := context.WithCancel(context.Background())
		c, err := service.BindCursor(ctx, js, "crm-sync.liondesk")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			done <- service.PollEvery(ctx, c, interval, "CRM liondesk", func(context.Context) error {
				polls[i].Add(1)
				return nil
			})
		}()
		stops[i] = once(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("PollEvery: %v", err)
			}
		})
		t.Cleanup(stops[i])
	}
	const period = time.Second
	time.Sleep(period)
	a, b := polls[0].Load(), polls[1].Load()
	// One poller alone makes about period/interval+1 polls (21); a stalled
	// machine makes fewer (a ticker drops the ticks it missed). Two
	// pollers polling on their own would make about twice as many.
	if total, one := a+b, int64(period/interval)+1; total > one*3/2 {
		t.Fatalf("%d and %d polls in %s of %s: both replicas polled, want about %d in all", a, b, period, interval, one)
	}
	first := 0
	if b > a {
		first = 1
	}
	stops[first]()
	other := &polls[1-first]
	before := other.Load()
	natstest.Eventually(t, 10*time.Second, "the other replica polls", func() bool { return other.Load() > before+2 })
}

// once makes stop safe to call twice: by the test, then by its cleanup.
func once(stop func()) func() {
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			stop()
		}
	}
}
