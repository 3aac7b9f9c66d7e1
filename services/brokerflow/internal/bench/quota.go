package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// CRMQuota posts a burst of leads for distinct people at once, lets the
// stream absorb it, and measures how much of Follow Up Boss's documented
// quota (250 counted calls per 10 s for a registered system) crm-sync used
// while draining it, and how many 429s it met.
func CRMQuota(ctx context.Context, o Options, w io.Writer) error {
	a, stop, err := startSystem(ctx, o)
	if err != nil {
		return err
	}
	defer stop()
	fub := a.Sandbox.FUB()
	var (
		mu      sync.Mutex
		created int
		last    time.Time
		all     = make(chan struct{})
	)
	fub.OnPersonCreated(func(sandbox.FUBPerson) {
		mu.Lock()
		defer mu.Unlock()
		created++
		last = time.Now()
		if created == o.CRMLeads {
			close(all)
		}
	})
	start := time.Now()
	postBurst(ctx, a, o.CRMLeads, "quota")
	accepted := time.Since(start)
	select {
	case <-all:
	case <-time.After(10 * time.Minute):
	case <-ctx.Done():
		return ctx.Err()
	}
	mu.Lock()
	elapsed, n := last.Sub(start), created
	mu.Unlock()
	u := fub.Usage()
	limitPerSecond := float64(sandbox.DefaultFUBGlobalLimit) / 10
	fmt.Fprintf(w, "bench: crm_burst_leads %d count\n", o.CRMLeads)
	fmt.Fprintf(w, "bench: crm_burst_accepted_s %.1f s\n", accepted.Seconds())
	fmt.Fprintf(w, "bench: crm_burst_drained_s %.1f s\n", elapsed.Seconds())
	fmt.Fprintf(w, "bench: crm_contacts_created %d count\n", n)
	fmt.Fprintf(w, "bench: crm_counted_calls %d count\n", u.Counted)
	fmt.Fprintf(w, "bench: crm_quota_utilization %.3f x\n", float64(u.Counted)/elapsed.Seconds()/limitPerSecond)
	fmt.Fprintf(w, "bench: crm_429_count %d count\n", u.Refused)
	return nil
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
