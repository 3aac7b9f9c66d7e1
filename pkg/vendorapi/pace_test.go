package vendorapi_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/vendorapi"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// quotaAccount is a Follow Up Boss account with a small quota: 20 counted
// calls per second.
func quotaAccount(t *testing.T) string {
	t.Helper()
	_, base := startSandbox(t, sandbox.Options{FUB: sandbox.FUBOptions{Window: time.Second, GlobalLimit: 20}})
	return base
}

// fubEventsExempt is Follow Up Boss's uncounted call, POST /v1/events.
func fubEventsExempt(req *http.Request) bool {
	return req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/v1/events")
}

func paced(base string) *vendorapi.Client {
	pacer := vendorapi.NewPacer(vendorapi.PacerConfig{Limit: 20, Window: time.Second, Exempt: fubEventsExempt})
	return fubClient(base, func(c *vendorapi.Config) { c.Pacer, c.Timeout = pacer, 30*time.Second })
}

// searchStorm makes calls that Follow Up Boss counts against the quota
// from 8 goroutines, and returns how many failed.
func searchStorm(ctx context.Context, c *vendorapi.Client, calls int) int64 {
	var (
		failed atomic.Int64
		next   atomic.Int64
		wg     sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(calls) {
				if err := search(ctx, c, "nobody@example.com"); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return failed.Load()
}

func TestPacer_keepsTheAccountUnderItsQuota(t *testing.T) {
	t.Parallel()
	// Without the pacer, a storm of searches runs into 429s: the test
	// below can tell the difference.
	if failed := searchStorm(t.Context(), fubClient(quotaAccount(t)), 60); failed == 0 {
		t.Fatal("the unpaced storm met no 429: the quota is not being exercised")
	}
	if failed := searchStorm(t.Context(), paced(quotaAccount(t)), 60); failed != 0 {
		t.Fatalf("%d paced calls failed; the pacer must keep every call inside the quota", failed)
	}
}

func TestPacer_leavesTheOtherReplicasTheirShare(t *testing.T) {
	t.Parallel()
	base := quotaAccount(t)
	// Another replica, paced too, wants half the account's quota, steadily.
	ctx, stop := context.WithCancel(t.Context())
	other := paced(base)
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
				if err := search(ctx, other, "other@example.com"); err != nil && ctx.Err() == nil {
					otherFailed.Add(1)
				}
			}
		}
	}()
	failed := searchStorm(t.Context(), paced(base), 40)
	stop()
	<-done
	if failed != 0 || otherFailed.Load() != 0 {
		t.Fatalf("paced replica: %d failed calls; other replica: %d; the account must never be over quota", failed, otherFailed.Load())
	}
}

func TestPacer_aThrottledAnswerStopsEveryCallUntilItsRetryAfter(t *testing.T) {
	t.Parallel()
	sb, base := startSandbox(t, sandbox.Options{})
	c := paced(base)
	sb.FUB().InjectFault(sandbox.Fault{Status: http.StatusTooManyRequests, RetryAfter: 2})
	if err := search(t.Context(), c, "a@example.com"); err == nil {
		t.Fatal("the 429 must be an error")
	}
	start := time.Now()
	if err := search(t.Context(), c, "a@example.com"); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 1500*time.Millisecond {
		t.Fatalf("the next call went out after %s, before the 429's Retry-After of 2s", waited)
	}
}

func TestPacer_readsTheVendorsOwnHeaderNames(t *testing.T) {
	t.Parallel()
	// A vendor that names its headers differently: what the pacer learns
	// from them is visible as the wait the next calls get.
	srv := newHeaderServer(t, http.Header{"Ratelimit-Limit": {"1"}, "Ratelimit-Remaining": {"0"}, "Ratelimit-Window": {"10"}})
	pacer := vendorapi.NewPacer(vendorapi.PacerConfig{Limit: 1000, Window: time.Second,
		Headers: vendorapi.RateHeaders{Limit: "RateLimit-Limit", Remaining: "RateLimit-Remaining", Window: "RateLimit-Window"}})
	c := vendorapi.New(vendorapi.Config{Vendor: "v", Area: "v", BaseURL: srv, Pacer: pacer})
	if _, err := c.Do(t.Context(), "first", http.MethodGet, "/", nil, nil); err != nil {
		t.Fatal(err)
	}
	// Nothing left in a 10 s window: the next call waits at least a second.
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, "second", http.MethodGet, "/", nil, nil); err == nil {
		t.Fatal("the second call went out although the vendor reported no calls left")
	}
}

// Two replicas share one account, each pacer starting from a documented
// quota that is wrong (50 per 10 s against the account's 100 per 4 s): they
// learn the real one from the headers, meet no 429, and use at least 95% of
// the quota. Each runs 4 callers, as crm-sync's default concurrency, that
// always have a call waiting.
//
// Use is what the sandbox counted in whole windows, on its own clock,
// divided by the limit times the windows: its sliding window holds at most
// the limit, so only the pacers' restraint keeps use below 1. The first
// window is not measured: the pacers learn the quota and each other in it.
// The quota is small for its window (25 calls a second) so that a loaded
// machine cannot cost 5% of it: a call's round trip and a late wake-up,
// which a pacer must count against itself, are a few ms of a 4 s window,
// and each caller has about 300 ms for a call.
func TestPacer_twoReplicasOnOneAccountUseTheQuotaWithoutA429(t *testing.T) {
	t.Parallel()
	const (
		limit   = 100
		window  = 4 * time.Second
		windows = 2
	)
	sb, base := startSandbox(t, sandbox.Options{FUB: sandbox.FUBOptions{Window: window, GlobalLimit: limit}})
	var (
		mu      sync.Mutex
		counted []sandbox.Call
	)
	sb.FUB().OnCall(func(c sandbox.Call) {
		if c.Counted {
			mu.Lock()
			counted = append(counted, c)
			mu.Unlock()
		}
	})
	replica := func() *vendorapi.Client {
		pacer := vendorapi.NewPacer(vendorapi.PacerConfig{Limit: 50, Window: 10 * time.Second, Exempt: fubEventsExempt})
		return fubClient(base, func(c *vendorapi.Config) { c.Pacer, c.Timeout = pacer, 30*time.Second })
	}
	var (
		failed atomic.Int64
		wg     sync.WaitGroup
		first  sync.Once
	)
	t0 := time.Now()
	// The first window is the pacers' to learn the quota and each other;
	// the next ones are measured.
	from, to := t0.Add(window), t0.Add((1+windows)*window)
	// The storm stops a little after the last measured window, canceling
	// the calls then waiting for their pacer (not with a deadline: the rate
	// limiter refuses at once a wait that would pass one).
	ctx, cancel := context.WithCancel(t.Context())
	defer time.AfterFunc(time.Until(to.Add(100*time.Millisecond)), cancel).Stop()
	for _, name := range []string{"a", "b"} {
		c := replica()
		for range 4 {
			wg.Go(func() {
				for ctx.Err() == nil {
					if err := search(ctx, c, name+"@example.com"); err != nil && ctx.Err() == nil {
						failed.Add(1)
						first.Do(func() { t.Logf("first failure after %s: %v", time.Since(t0), err) })
					}
				}
			})
		}
	}
	wg.Wait()
	if u := sb.FUB().Usage(); u.Refused != 0 || failed.Load() != 0 {
		t.Fatalf("%d calls refused with 429, %d failed: two replicas must share the account without exceeding it", u.Refused, failed.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	byReplica := map[string]int{}
	n := 0
	for _, c := range counted {
		if !c.CountedAt.Before(from) && c.CountedAt.Before(to) {
			n++
			byReplica[c.Query.Get("email")]++
		}
	}
	use := float64(n) / (limit * windows)
	t.Logf("%d counted calls in %d windows of %s (%v by replica): %.3f of the quota", n, windows, window, byReplica, use)
	if use < 0.95 {
		t.Fatalf("the two replicas used %.3f of the quota, want at least 0.95", use)
	}
	// Both share it: one that made few calls would make this a test of one.
	for _, name := range []string{"a", "b"} {
		if got := byReplica[name+"@example.com"]; got < n/4 {
			t.Fatalf("replica %s made %d of the %d calls: both replicas must be using the account", name, got, n)
		}
	}
}
