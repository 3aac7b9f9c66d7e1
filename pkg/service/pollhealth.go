package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
)

// HealthKeys is the pattern of every poller's health key in CursorBucket:
// "<service>.health.<poller>", in the service's own prefix, beside its
// cursor. The alerter may read these keys and no other there.
const HealthKeys = bus.PollHealthKeys

// healthyEvery: a poller that keeps succeeding writes its health at most
// once per this many intervals, so an idle healthy poller does not write
// on every tick.
const healthyEvery = 10

// maxErrorText bounds the last error kept in a health record.
const maxErrorText = 500

// PollHealth is a poller's state, kept in CursorBucket under HealthKey of
// its cursor's key. It is written when a poll fails, when a failing poller
// succeeds again, and, while it succeeds, at most every ten intervals.
type PollHealth struct {
	// Service is the service that polls (its cursor's key prefix).
	Service string `json:"service"`
	// Polled says what is polled ("CRM liondesk").
	Polled string `json:"polled"`
	// Interval is the time between polls.
	Interval time.Duration `json:"interval_ns"`
	// LastSuccess is the last successful poll written (up to ten
	// intervals behind while the poller is healthy); zero if none yet.
	LastSuccess time.Time `json:"last_success,omitzero"`
	// Failures is the number of failed polls in a row; 0 when the last
	// poll succeeded.
	Failures int `json:"consecutive_failures"`
	// FailingSince is the first of those failed polls; zero when healthy.
	FailingSince time.Time `json:"failing_since,omitzero"`
	// LastFailure and LastError are the last failed poll and its error,
	// personal data redacted, kept after a recovery.
	LastFailure time.Time `json:"last_failure,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	// Updated is when the record was written.
	Updated time.Time `json:"updated"`
}

// HealthKey is the health key of the poller whose cursor is at cursorKey:
// "crm-sync.liondesk" keeps its health at "crm-sync.health.liondesk".
func HealthKey(cursorKey string) string { return besideCursor(cursorKey, "health") }

// LeaseKey is the key of the lease the replicas of the poller whose cursor
// is at cursorKey take turns with: "crm-sync.liondesk" polls under
// "crm-sync.lease.liondesk".
func LeaseKey(cursorKey string) string { return besideCursor(cursorKey, "lease") }

// besideCursor names a poller's record of kind, in its service's prefix.
func besideCursor(cursorKey, kind string) string {
	service, rest, ok := strings.Cut(cursorKey, ".")
	if !ok {
		return cursorKey + "." + kind + ".poller"
	}
	return service + "." + kind + "." + rest
}

// pollHealth records one poller's health.
type pollHealth struct {
	kv      jetstream.KeyValue
	key     string
	cur     PollHealth
	written bool // cur was written by this process
	saved   time.Time
}

// bindHealth starts from the stored record, so that a restart keeps a
// failing poller's count and first failure; an unreadable record is
// replaced.
func (c *Cursor) bindHealth(ctx context.Context, what string, interval time.Duration) *pollHealth {
	h := &pollHealth{kv: c.kv, key: HealthKey(c.key)}
	if e, err := c.kv.Get(ctx, h.key); err == nil {
		if err := json.Unmarshal(e.Value(), &h.cur); err != nil {
			h.cur = PollHealth{}
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		logging.FromContext(ctx).Warn("poll health not read", "polled", what, "err", err)
	}
	service, _, _ := strings.Cut(c.key, ".")
	h.cur.Service, h.cur.Polled, h.cur.Interval = service, what, interval
	return h
}

// record notes one poll's outcome, and writes the record when it matters:
// a failure, a recovery, the first outcome since start, or a success ten
// intervals after the last one written.
func (h *pollHealth) record(ctx context.Context, now time.Time, err error) error {
	if err != nil {
		if h.cur.Failures == 0 {
			h.cur.FailingSince = now
		}
		h.cur.Failures++
		h.cur.LastFailure = now
		h.cur.LastError = logging.Truncate(logging.RedactString(err.Error()), maxErrorText)
		return h.save(ctx, now)
	}
	recovered := h.cur.Failures > 0
	h.cur.Failures, h.cur.FailingSince, h.cur.LastSuccess = 0, time.Time{}, now
	if recovered || !h.written || now.Sub(h.saved) >= healthyEvery*h.cur.Interval {
		return h.save(ctx, now)
	}
	return nil
}

func (h *pollHealth) save(ctx context.Context, now time.Time) error {
	h.cur.Updated = now
	b, err := json.Marshal(h.cur)
	if err != nil {
		return err
	}
	if _, err := h.kv.Put(ctx, h.key, b); err != nil {
		return fmt.Errorf("store poll health: %w", err)
	}
	h.written, h.saved = true, now
	return nil
}

// ReadPollHealth returns every poller's health record in CursorBucket, by
// key. It reads only the keys HealthKeys matches.
func ReadPollHealth(ctx context.Context, js jetstream.JetStream) (map[string]PollHealth, error) {
	kv, err := js.KeyValue(ctx, CursorBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", CursorBucket, err)
	}
	s, err := js.Stream(ctx, "KV_"+CursorBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", CursorBucket, err)
	}
	prefix := "$KV." + CursorBucket + "."
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(prefix+HealthKeys))
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", CursorBucket, err)
	}
	out := map[string]PollHealth{}
	var errs []error
	for subject := range info.State.Subjects {
		key := strings.TrimPrefix(subject, prefix)
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // deleted
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("poll health %s: %w", key, err))
			continue
		}
		var h PollHealth
		if err := json.Unmarshal(e.Value(), &h); err != nil {
			errs = append(errs, fmt.Errorf("poll health %s: %w", key, err))
			continue
		}
		out[key] = h
	}
	return out, errors.Join(errs...)
}
