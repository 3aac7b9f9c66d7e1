package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrConflict is a compare-and-swap on a KV record that lost to another
// writer: the record changed since it was read.
var ErrConflict = errors.New("bus: the record changed since it was read")

// WriteAt writes value at key only if the record is still at rev, the
// revision it was read at; rev 0 means the key must be absent. A record
// that moved on meanwhile is ErrConflict: read it again and decide again.
func WriteAt(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, rev uint64) (uint64, error) {
	var (
		next uint64
		err  error
	)
	if rev == 0 {
		next, err = kv.Create(ctx, key, value)
	} else {
		next, err = kv.Update(ctx, key, value, rev)
	}
	switch {
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, fmt.Errorf("write %s/%s: %w", kv.Bucket(), key, ErrConflict)
	case err != nil:
		return 0, fmt.Errorf("write %s/%s: %w", kv.Bucket(), key, err)
	}
	return next, nil
}
