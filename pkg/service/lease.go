package service

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
)

// Lease makes a piece of work one replica's at a time: the replica that
// holds the lease record in a KV bucket does it, the others wait for the
// record to lapse. It is taken and renewed with compare-and-swap, so two
// replicas never both hold it by their own clocks; the holder renews it
// before each step of the work, and a lease lasts longer than one step can
// take, so a live holder's lease does not lapse in the middle of a step.
type Lease struct {
	kv     jetstream.KeyValue
	key    string
	holder string
	// For is how long the lease holds without renewal.
	For time.Duration
	now func() time.Time
}

// leaseRecord is what the bucket holds at the lease's key.
type leaseRecord struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// NewLease returns this replica's handle on the lease at key in kv.
func NewLease(kv jetstream.KeyValue, key string, d time.Duration) *Lease {
	return &Lease{kv: kv, key: key, holder: rand.Text(), For: d, now: time.Now}
}

// Hold takes the lease, or renews it when this replica holds it, and
// reports whether this replica holds it now.
func (l *Lease) Hold(ctx context.Context) (bool, error) {
	for {
		var cur leaseRecord
		var rev uint64
		e, err := l.kv.Get(ctx, l.key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return false, fmt.Errorf("read lease %s: %w", l.key, err)
		default:
			if err := json.Unmarshal(e.Value(), &cur); err != nil {
				return false, fmt.Errorf("decode lease %s: %w", l.key, err)
			}
			rev = e.Revision()
		}
		now := l.now()
		if cur.Holder != "" && cur.Holder != l.holder && now.Before(cur.Until) {
			return false, nil
		}
		b, _ := json.Marshal(leaseRecord{Holder: l.holder, Until: now.Add(l.For)})
		if rev == 0 {
			_, err = l.kv.Create(ctx, l.key, b)
		} else {
			_, err = l.kv.Update(ctx, l.key, b, rev)
		}
		if bus.Conflict(err) {
			continue // another replica renewed or took it: read again
		}
		if err != nil {
			return false, fmt.Errorf("hold lease %s: %w", l.key, err)
		}
		return true, nil
	}
}

// Release gives the lease back when this replica holds it, so that
// another takes it at once rather than when it lapses.
func (l *Lease) Release(ctx context.Context) error {
	e, err := l.kv.Get(ctx, l.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read lease %s: %w", l.key, err)
	}
	var cur leaseRecord
	if json.Unmarshal(e.Value(), &cur) != nil || cur.Holder != l.holder {
		return nil
	}
	b, _ := json.Marshal(leaseRecord{Holder: l.holder})
	if _, err := l.kv.Update(ctx, l.key, b, e.Revision()); err != nil && !bus.Conflict(err) {
		return fmt.Errorf("release lease %s: %w", l.key, err)
	}
	return nil
}
