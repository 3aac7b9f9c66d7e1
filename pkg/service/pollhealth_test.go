package service_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
)

// scripted is a poll whose outcomes the test hands it one at a time.
type scripted chan error

func (s scripted) poll(ctx context.Context) error {
	select {
	case err := <-s:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// startPoller runs PollEvery on the cursor at key until stop.
func startPoller(t *testing.T, js jetstream.JetStream, key string, interval time.Duration, s scripted) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, err := service.BindCursor(ctx, js, key)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- service.PollEvery(ctx, c, interval, "CRM liondesk", s.poll) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("PollEvery: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

// health is the stored record and its revision; nil before the first write.
func health(t *testing.T, kv jetstream.KeyValue) (*service.PollHealth, uint64) {
	t.Helper()
	e, err := kv.Get(natstest.Context(t, 5*time.Second), "crm-sync.health.liondesk")
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0
	}
	if err != nil {
		t.Fatal(err)
	}
	var h service.PollHealth
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		t.Fatal(err)
	}
	return &h, e.Revision()
}

// A failing poller's record counts its failures from the first one, keeps
// the error (redacted), survives a restart, and shows the recovery; a
// healthy poller then writes only every ten intervals, not every tick.
func TestPollEvery_recordsFailuresRecoveryAndFewWritesWhileHealthy(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx := natstest.Context(t, 30*time.Second)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: service.CursorBucket})
	if err != nil {
		t.Fatal(err)
	}
	const interval = 100 * time.Millisecond
	polls := make(scripted)
	stop := startPoller(t, js, "crm-sync.liondesk", interval, polls)
	failure := errors.New("liondesk list contacts: HTTP 401: token expired for ada.lovelace@example.com")
	failures := func(n int) func() bool {
		return func() bool { h, _ := health(t, kv); return h != nil && h.Failures == n }
	}

	polls <- failure
	natstest.Eventually(t, 10*time.Second, "the first failure recorded", failures(1))
	first, _ := health(t, kv)
	if first.Service != "crm-sync" || first.Polled != "CRM liondesk" || first.Interval != interval || first.FailingSince.IsZero() ||
		!first.LastSuccess.IsZero() || !first.FailingSince.Equal(first.LastFailure) {
		t.Fatalf("after one failure: %+v", first)
	}
	if !strings.Contains(first.LastError, "HTTP 401: token expired") || strings.Contains(first.LastError, "ada.lovelace") {
		t.Errorf("last error %q: want the vendor's answer without the email", first.LastError)
	}
	polls <- failure
	natstest.Eventually(t, 10*time.Second, "the second failure recorded", failures(2))

	// A restart goes on counting from the stored record.
	stop()
	startPoller(t, js, "crm-sync.liondesk", interval, polls)
	polls <- failure
	natstest.Eventually(t, 10*time.Second, "the third failure recorded", failures(3))
	third, _ := health(t, kv)
	if !third.FailingSince.Equal(first.FailingSince) || !third.LastFailure.After(first.LastFailure) {
		t.Fatalf("failing since %v (want the first failure's %v), last failure %v", third.FailingSince, first.FailingSince, third.LastFailure)
	}

	polls <- nil
	natstest.Eventually(t, 10*time.Second, "the recovery recorded", failures(0))
	recovered, rev := health(t, kv)
	if recovered.LastSuccess.IsZero() || !recovered.FailingSince.IsZero() || recovered.LastError == "" {
		t.Fatalf("after the recovery: %+v (want a last success, no failing since, the last error kept)", recovered)
	}

	// Healthy polls within ten intervals of the last write write nothing.
	for range 3 {
		polls <- nil
	}
	polls <- nil // the third has been recorded once the fourth is taken
	if since := time.Since(recovered.Updated); since < 10*interval {
		if _, now := health(t, kv); now != rev {
			t.Fatalf("a healthy poller wrote its record again %v after the last write (revision %d, then %d)", since, rev, now)
		}
	} else {
		t.Logf("the machine is slow: %v passed, the check of no write is skipped", since)
	}
	// Ten intervals on, a success is written again.
	deadline := time.Now().Add(natstest.Scale(10 * time.Second))
	for {
		if h, now := health(t, kv); now != rev {
			if !h.LastSuccess.After(recovered.LastSuccess) || h.Failures != 0 {
				t.Fatalf("the periodic write: %+v", h)
			}
			if gap := h.Updated.Sub(recovered.Updated); gap < 10*interval {
				t.Fatalf("written again after %v, before ten intervals", gap)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a healthy poller never wrote its last success again")
		}
		polls <- nil
	}
}

func TestHealthKey_isInTheServicePrefix(t *testing.T) {
	t.Parallel()
	for cursor, want := range map[string]string{
		"crm-sync.liondesk":          "crm-sync.health.liondesk",
		"ledger-sync.quickbooks.cdc": "ledger-sync.health.quickbooks.cdc",
	} {
		if got := service.HealthKey(cursor); got != want {
			t.Errorf("HealthKey(%q) = %q, want %q", cursor, got, want)
		}
	}
}
