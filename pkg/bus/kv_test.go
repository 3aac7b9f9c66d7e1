package bus_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
)

// On a replicated bucket, writers racing to create a key that was deleted
// (a claim given back) through different servers: one wins, and every
// other one is told it lost the race (ErrConflict), never handed an error
// it would take for a failure. nats.go passes the server's 10164 on
// unwrapped on that path.
func TestWriteAt_racingCreatesOfADeletedKeyOnAClusterLoseAsConflicts(t *testing.T) {
	t.Parallel()
	kvs := natstest.ClusterKV(t, natstest.StartCluster(t, 3), jetstream.KeyValueConfig{Bucket: "claims", Replicas: 3, History: 1})
	ctx := natstest.Context(t, time.Minute)
	const rounds, writers = 20, 6
	for r := range rounds {
		key := fmt.Sprintf("k%d", r)
		rev, err := kvs[0].Create(ctx, key, []byte("first"))
		if err != nil {
			t.Fatal(err)
		}
		if err := kvs[0].Delete(ctx, key, jetstream.LastRevision(rev)); err != nil {
			t.Fatal(err)
		}
		var (
			mu   sync.Mutex
			won  int
			errs []error
			wg   sync.WaitGroup
		)
		for w := range writers {
			wg.Go(func() {
				_, err := bus.WriteAt(ctx, kvs[w%len(kvs)], key, []byte("again"), 0)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					won++
				case !errors.Is(err, bus.ErrConflict):
					errs = append(errs, err)
				}
			})
		}
		wg.Wait()
		if len(errs) > 0 || won != 1 {
			t.Fatalf("round %d: %d writers won, want 1; errors that are not conflicts: %v", r, won, errs)
		}
	}
}
