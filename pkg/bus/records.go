package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Records reads and writes a service's JSON records in one KV bucket,
// each write a compare-and-swap (WriteAt). The bucket is bound on first
// use, so that a service starts before the bucket is applied.
type Records struct {
	js     jetstream.JetStream
	bucket string
	// claims is the consumer whose messages hold claims in these records.
	claims ConsumerSpec

	mu         sync.Mutex
	kv         jetstream.KeyValue
	staleAfter time.Duration
}

// NewRecords returns the records of bucket, in which the messages of the
// consumer claims hold claims (see StaleAfter).
func NewRecords(js jetstream.JetStream, bucket string, claims ConsumerSpec) *Records {
	return &Records{js: js, bucket: bucket, claims: claims}
}

// StaleAfter is when a claim held by a message of the claims consumer may
// be taken over: five of its ack waits, by when JetStream has redelivered
// the holder's message had its holder died. It checks the consumer exists
// (once).
func (r *Records) StaleAfter(ctx context.Context) (time.Duration, error) {
	if _, err := r.KV(ctx); err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.staleAfter > 0 {
		return r.staleAfter, nil
	}
	sc, err := Verify(ctx, r.js, r.claims)
	if err != nil {
		return 0, err
	}
	r.staleAfter = 5 * sc.AckWait
	return r.staleAfter, nil
}

// KV returns the bound bucket.
func (r *Records) KV(ctx context.Context) (jetstream.KeyValue, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kv != nil {
		return r.kv, nil
	}
	kv, err := r.js.KeyValue(ctx, r.bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", r.bucket, err)
	}
	r.kv = kv
	return kv, nil
}

// Load reads the JSON record at key into v, and returns its revision: 0
// when there is none. A record that does not decode is a permanent error.
func (r *Records) Load(ctx context.Context, key string, v any) (uint64, error) {
	kv, err := r.KV(ctx)
	if err != nil {
		return 0, err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, Permanentf("decode %s: %w", key, err)
	}
	return e.Revision(), nil
}

// Store writes v at key if the record is still at rev (absent for 0);
// ErrConflict when it moved on.
func (r *Records) Store(ctx context.Context, key string, v any, rev uint64) (uint64, error) {
	kv, err := r.KV(ctx)
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0, err
	}
	return WriteAt(ctx, kv, key, b, rev)
}

var plainKeyRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// KeyPart is id as one token of a KV key: id itself when it is plain, else
// a hash of it (a key token cannot hold dots, spaces or wildcards).
func KeyPart(id string) string {
	if plainKeyRe.MatchString(id) {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "h" + hex.EncodeToString(sum[:12])
}

// Put writes v at key whatever is there.
func (r *Records) Put(ctx context.Context, key string, v any) error {
	kv, err := r.KV(ctx)
	if err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}
