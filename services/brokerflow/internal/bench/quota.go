package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// CRMQuota posts a burst of leads at once, each with an email and a phone,
// 30% of them from people who sent a lead before (their first leads are
// sent and recorded beforehand), lets the stream absorb it, and measures
// while crm-sync drains it: the counted Follow Up Boss calls per new and
// per returning lead, how much of the documented quota (250 counted calls
// per 10 s for a registered system) it used, and the 429s it met.
func CRMQuota(ctx context.Context, o Options, w io.Writer) error {
	a, stop, err := startSystem(ctx, o)
	if err != nil {
		return err
	}
	defer stop()
	fub := a.Sandbox.FUB()
	fub.SetLatency(o.FUBLatency)
	leads, seed := workload(o.CRMLeads, "burst", 617)
	calls := watchFUB(fub, append(leads, seed...))

	url := a.WebhookURL + "/webhooks/idx"
	if _, failed := send(ctx, url, seed, "seed"); failed > 0 {
		return fmt.Errorf("crm quota: %d seed leads not accepted", failed)
	}
	if err := waitRecorded(ctx, calls, seed, len(seed), 5*time.Minute); err != nil {
		return fmt.Errorf("crm quota seed: %w", err)
	}
	time.Sleep(2 * time.Second) // the seed leads' identity records settle
	calls.reset()
	before := fub.Usage()

	start := time.Now()
	_, failed := send(ctx, url, leads, "burst")
	accepted := time.Since(start)
	if err := waitRecorded(ctx, calls, leads, len(leads)-failed, 10*time.Minute); err != nil {
		return fmt.Errorf("crm quota: %w", err)
	}
	drained := time.Since(start)
	time.Sleep(2 * time.Second) // the last webhooks come back
	calls.resolve()
	u := fub.Usage()
	counted, refused := u.Counted-before.Counted, u.Refused-before.Refused

	var newLeads, backLeads, newCalls, backCalls int
	seen := map[string]bool{}
	for _, p := range leads {
		if p.returning {
			backLeads++
		} else {
			newLeads++
		}
		if seen[p.email] {
			continue
		}
		seen[p.email] = true
		if p.returning {
			backCalls += calls.counted[p.email]
		} else {
			newCalls += calls.counted[p.email]
		}
	}
	calls.mu.Lock()
	busy := calls.last.Sub(start)
	other := calls.other
	countedAt := slices.Clone(calls.countedAt)
	calls.mu.Unlock()
	perSecond := float64(sandbox.DefaultFUBGlobalLimit) / 10
	fmt.Fprintf(w, "bench: crm_burst_leads %d count\n", len(leads))
	fmt.Fprintf(w, "bench: crm_burst_new_leads %d count\n", newLeads)
	fmt.Fprintf(w, "bench: crm_burst_returning_leads %d count\n", backLeads)
	fmt.Fprintf(w, "bench: crm_burst_post_errors %d count\n", failed)
	fmt.Fprintf(w, "bench: crm_burst_accepted_s %.1f s\n", accepted.Seconds())
	fmt.Fprintf(w, "bench: crm_burst_drained_s %.1f s\n", drained.Seconds())
	fmt.Fprintf(w, "bench: crm_burst_leads_per_s %.1f leads/s\n", float64(len(leads))/drained.Seconds())
	fmt.Fprintf(w, "bench: crm_counted_calls %d count\n", counted)
	fmt.Fprintf(w, "bench: crm_counted_calls_unattributed %d count\n", other)
	fmt.Fprintf(w, "bench: crm_calls_per_new_lead %.2f calls\n", float64(newCalls)/float64(max(newLeads, 1)))
	fmt.Fprintf(w, "bench: crm_calls_per_returning_lead %.2f calls\n", float64(backCalls)/float64(max(backLeads, 1)))
	// Use is measured from the burst's first post to the last counted call
	// (the returning leads that end the drain make none).
	fmt.Fprintf(w, "bench: crm_quota_utilization %.3f x\n", float64(counted)/busy.Seconds()/perSecond)
	fmt.Fprintf(w, "bench: crm_429_count %d count\n", refused)
	// Where use was lost: before the first counted call, or in the whole
	// windows of the drain (the pacer aims at vendorapi.Target of each).
	if len(countedAt) > 0 {
		first, least := quotaWindows(countedAt, 10*time.Second)
		fmt.Fprintf(w, "bench: crm_burst_first_call_ms %.0f ms\n", first.Sub(start).Seconds()*1000)
		fmt.Fprintf(w, "bench: crm_quota_window_min %.3f x\n", float64(least)/float64(sandbox.DefaultFUBGlobalLimit))
	}
	return nil
}

// quotaWindows takes when the vendor counted each call and returns the
// first, and the fewest calls counted in one of the whole windows that
// follow it back to back (the last, partial window is left out).
func quotaWindows(countedAt []time.Time, window time.Duration) (first time.Time, least int) {
	first = slices.MinFunc(countedAt, time.Time.Compare)
	whole := int(slices.MaxFunc(countedAt, time.Time.Compare).Sub(first) / window)
	if whole == 0 {
		return first, 0
	}
	per := make([]int, whole)
	for _, t := range countedAt {
		if i := int(t.Sub(first) / window); i < whole {
			per[i]++
		}
	}
	return first, slices.Min(per)
}

// postBurst posts n signed IDX leads for distinct people, 32 at a time, and
// returns once every post was answered; name tells the bursts apart.
func postBurst(ctx context.Context, a *app.App, n int, name string) {
	client := &http.Client{Timeout: 30 * time.Second}
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			body := fmt.Sprintf(`{"type":"lead.created","data":{"name":"%s Lead%d","email":"%s%05d@burst.example","inquiry_type":"buy"}}`, name, i, name, i)
			postSigned(ctx, client, a.WebhookURL+"/webhooks/idx", app.DevIDXSecret, fmt.Sprintf("msg_%s_%d", name, i), body)
		}()
	}
	wg.Wait()
}
