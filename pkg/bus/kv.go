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
	case Conflict(err):
		return 0, fmt.Errorf("write %s/%s: %w", kv.Bucket(), key, ErrConflict)
	case err != nil:
		return 0, fmt.Errorf("write %s/%s: %w", kv.Bucket(), key, err)
	}
	return next, nil
}

// Conflict reports whether err is a KV write that lost to another writer:
// a create of a key that exists, or a write at a revision the record has
// moved on from. It also knows the server's own "wrong last sequence"
// errors, which nats.go passes on unwrapped when a create finds the key
// deleted and another writer gets there first (a replicated bucket
// answers 10164 rather than 10071).
func Conflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
