package crmsync_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// quotaAccount is a Follow Up Boss account with a small quota: 20 counted
// calls per second.
func quotaAccount(t *testing.T) string {
	t.Helper()
	sb := sandbox.New(sandbox.Options{FUB: sandbox.FUBOptions{Window: time.Second, GlobalLimit: 20}})
	hs := httptest.NewServer(sb.Handler())
	t.Cleanup(hs.Close)
	return hs.URL + "/fub"
}

func fubOn(base string, client *http.Client) *crmsync.FollowUpBoss {
	return crmsync.NewFollowUpBoss(crmsync.FUBConfig{
		BaseURL: base, APIKey: sandbox.DefaultFUBAPIKey,
		System: sandbox.DefaultFUBSystem, SystemKey: sandbox.DefaultFUBSystemKey,
	}, client)
}

// searchStorm makes calls that Follow Up Boss counts against the quota
// from 8 goroutines, and returns how many failed.
func searchStorm(ctx context.Context, crm *crmsync.FollowUpBoss, calls int) int64 {
	var (
		failed atomic.Int64
		next   atomic.Int64
		wg     sync.WaitGroup
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(calls) {
				if _, _, err := crm.Find(ctx, crmsync.Identity{Email: "nobody@example.com"}); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return failed.Load()
}

func paced() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: crmsync.NewPacer(nil, 20, time.Second, crmsync.FUBExempt)}
}

func TestPacer_keepsTheAccountUnderItsQuota(t *testing.T) {
	t.Parallel()
	// Without the pacer, a storm of searches runs into 429s: the test
	// below can tell the difference.
	unpaced := fubOn(quotaAccount(t), &http.Client{Timeout: 10 * time.Second})
	if failed := searchStorm(t.Context(), unpaced, 60); failed == 0 {
		t.Fatal("the unpaced storm met no 429: the quota is not being exercised")
	}
	if failed := searchStorm(t.Context(), fubOn(quotaAccount(t), paced()), 60); failed != 0 {
		t.Fatalf("%d paced calls failed; the pacer must keep every call inside the quota", failed)
	}
}

func TestPacer_leavesTheOtherReplicasTheirShare(t *testing.T) {
	t.Parallel()
	base := quotaAccount(t)
	// Another replica, paced too, wants half the account's quota, steadily.
	ctx, stop := context.WithCancel(t.Context())
	other := fubOn(base, paced())
	var otherFailed atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if _, _, err := other.Find(ctx, crmsync.Identity{Email: "other@example.com"}); err != nil && ctx.Err() == nil {
					otherFailed.Add(1)
				}
			}
		}
	}()
	failed := searchStorm(t.Context(), fubOn(base, paced()), 40)
	stop()
	<-done
	if failed != 0 || otherFailed.Load() != 0 {
		t.Fatalf("paced replica: %d failed calls; other replica: %d; the account must never be over quota", failed, otherFailed.Load())
	}
}
