package bus_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
)

// TestRecords_compareAndSwap: a record is created once, updated only at the
// revision it was read at, and the claims go stale after five ack waits of
// the consumer that holds them.
func TestRecords_compareAndSwap(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: 2 * time.Second}.Topology())
	ctx := natstest.Context(t, 10*time.Second)
	r := bus.NewRecords(js, "idempotency", bus.LedgerSyncClosings)
	type rec struct{ N int }
	var got rec
	if rev, err := r.Load(ctx, "ledger-sync.x", &got); err != nil || rev != 0 {
		t.Fatalf("absent record: rev %d, %v", rev, err)
	}
	rev, err := r.Store(ctx, "ledger-sync.x", rec{1}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Store(ctx, "ledger-sync.x", rec{2}, 0); !errors.Is(err, bus.ErrConflict) {
		t.Fatalf("a second create: %v, want ErrConflict", err)
	}
	if _, err := r.Store(ctx, "ledger-sync.x", rec{3}, rev); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Store(ctx, "ledger-sync.x", rec{4}, rev); !errors.Is(err, bus.ErrConflict) {
		t.Fatalf("an update at an old revision: %v, want ErrConflict", err)
	}
	if err := r.Put(ctx, "ledger-sync.y", rec{5}); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int{"ledger-sync.x": 3, "ledger-sync.y": 5} {
		if _, err := r.Load(ctx, key, &got); err != nil || got.N != want {
			t.Fatalf("%s = %+v, %v; want %d", key, got, err, want)
		}
	}
	if stale, err := r.StaleAfter(ctx); err != nil || stale != 10*time.Second {
		t.Fatalf("StaleAfter = %s, %v; want five ack waits", stale, err)
	}
	if _, err := bus.NewRecords(js, "idempotency", bus.ConsumerSpec{Stream: bus.StreamTMS, Durable: "nobody"}).StaleAfter(ctx); !errors.Is(err, bus.ErrNotApplied) {
		t.Fatalf("StaleAfter of a consumer not applied: %v", err)
	}
	for id, plain := range map[string]bool{"34308": true, "a_b-C": true, "a.b": false, "x y": false, strings.Repeat("a", 65): false} {
		k := bus.KeyPart(id)
		if (k == id) != plain || strings.ContainsAny(k, ". *>") {
			t.Errorf("KeyPart(%q) = %q", id, k)
		}
	}
}
