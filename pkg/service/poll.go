package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/logging"
)

// CursorBucket keeps each poller's cursor (a time), so that a restart or
// another replica resumes where the last poll ended. It is declared with
// the other buckets in pkg/bus.
const CursorBucket = "cursors"

// Cursor is one poller's cursor in CursorBucket, under its key (which
// starts with the service's name: its NATS user may write only there).
type Cursor struct {
	kv  jetstream.KeyValue
	key string
}

// BindCursor returns the cursor at key.
func BindCursor(ctx context.Context, js jetstream.JetStream, key string) (*Cursor, error) {
	kv, err := js.KeyValue(ctx, CursorBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", CursorBucket, err)
	}
	return &Cursor{kv: kv, key: key}, nil
}

// Load is where the last poll ended; the zero time before the first.
func (c *Cursor) Load(ctx context.Context) (time.Time, error) {
	e, err := c.kv.Get(ctx, c.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read cursor: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	if err != nil {
		return time.Time{}, fmt.Errorf("cursor %q: %w", e.Value(), err)
	}
	return t, nil
}

// Save moves the cursor to t.
func (c *Cursor) Save(ctx context.Context, t time.Time) error {
	if _, err := c.kv.Put(ctx, c.key, []byte(t.UTC().Format(time.RFC3339Nano))); err != nil {
		return fmt.Errorf("store cursor: %w", err)
	}
	return nil
}

// PollEvery runs poll at once and then every interval until ctx is done,
// from the cursor c. A failed poll is logged, naming what is polled, and
// tried again at the next tick: a poll that moves its cursor only past what
// it handled skips nothing. Each poll's outcome is kept in the poller's
// health record (PollHealth, under HealthKey of the cursor's key), which the
// alerter's poll_failing check reads.
//
// Replicas of a service take turns through a lease beside the cursor
// (LeaseKey): the one holding it polls, the others wait for it to lapse
// (three intervals), so the vendor is asked once per interval however many
// replicas run, and the health record is one poller's.
func PollEvery(ctx context.Context, c *Cursor, interval time.Duration, what string, poll func(context.Context) error) error {
	h := c.bindHealth(ctx, what, interval)
	lease := NewLease(c.kv, LeaseKey(c.key), 3*interval)
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := lease.Release(ctx); err != nil {
			logging.FromContext(ctx).Debug("poll lease not released; it lapses", "polled", what, "err", err)
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		held, err := lease.Hold(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			logging.FromContext(ctx).Warn("poll lease not read; will try again", "polled", what, "err", err)
		case held:
			err := poll(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				logging.FromContext(ctx).Warn("poll failed; will try again", "polled", what, "err", err)
			}
			if herr := h.record(ctx, time.Now(), err); herr != nil && ctx.Err() == nil {
				logging.FromContext(ctx).Warn("poll health not recorded", "polled", what, "err", herr)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
