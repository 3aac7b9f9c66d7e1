package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// SpeedToLead posts leads to the whole system at a fixed rate and measures,
// for each, the time from the webhook POST to the person existing in the
// sandbox's Follow Up Boss.
func SpeedToLead(ctx context.Context, o Options, w io.Writer) error {
	a, stop, err := startSystem(ctx, o)
	if err != nil {
		return err
	}
	defer stop()

	var (
		mu      sync.Mutex
		sent    = map[string]time.Time{}
		arrived = map[string]time.Duration{}
		all     = make(chan struct{})
	)
	total := int(o.LeadRate * o.LeadDuration.Seconds())
	a.Sandbox.FUB().OnPersonCreated(func(p sandbox.FUBPerson) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		for _, e := range p.Emails {
			if t0, ok := sent[e.Value]; ok {
				arrived[e.Value] = now.Sub(t0)
			}
		}
		if len(arrived) == total {
			close(all)
		}
	})

	client := &http.Client{Timeout: 30 * time.Second}
	tick := time.NewTicker(time.Duration(float64(time.Second) / o.LeadRate))
	defer tick.Stop()
	var wg sync.WaitGroup
	errs := 0
	var errMu sync.Mutex
	for i := range total {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		email := fmt.Sprintf("lead%05d@speed.example", i)
		body := fmt.Sprintf(`{"type":"lead.created","data":{"name":"Speed Lead%d","email":"%s","inquiry_type":"buy"}}`, i, email)
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			sent[email] = time.Now()
			mu.Unlock()
			if !postSigned(ctx, client, a.WebhookURL+"/webhooks/idx", app.DevIDXSecret, fmt.Sprintf("msg_stl_%d", i), body) {
				errMu.Lock()
				errs++
				errMu.Unlock()
			}
		}()
	}
	wg.Wait()
	select {
	case <-all:
	case <-time.After(2 * time.Minute):
	case <-ctx.Done():
		return ctx.Err()
	}
	mu.Lock()
	lat := make([]time.Duration, 0, len(arrived))
	for _, d := range arrived {
		lat = append(lat, d)
	}
	mu.Unlock()
	slices.Sort(lat)
	r := result{latencies: lat}
	fmt.Fprintf(w, "bench: speed_to_lead_rate %.0f leads/s\n", o.LeadRate)
	fmt.Fprintf(w, "bench: speed_to_lead_arrived %d count\n", len(lat))
	fmt.Fprintf(w, "bench: speed_to_lead_sent %d count\n", total)
	fmt.Fprintf(w, "bench: speed_to_lead_post_errors %d count\n", errs)
	fmt.Fprintf(w, "bench: speed_to_lead_p50_ms %.1f ms\n", r.percentile(0.50))
	fmt.Fprintf(w, "bench: speed_to_lead_p99_ms %.1f ms\n", r.percentile(0.99))
	return nil
}

// startSystem runs the whole system against the sandbox, on random ports
// and a temporary directory, with the sync policy of o.
func startSystem(ctx context.Context, o Options, extra ...string) (*app.App, func(), error) {
	dir, err := os.MkdirTemp("", "brokerflow-bench-")
	if err != nil {
		return nil, nil, err
	}
	cfg, err := app.ConfigFromEnv(append([]string{
		"BROKERFLOW_NATS_PORT=-1", "BROKERFLOW_DATA_DIR=" + dir, "BROKERFLOW_NATS_SYNC=" + o.Sync,
		"BROKERFLOW_OPS_ADDR=127.0.0.1:0", "BROKERFLOW_SANDBOX_ADDR=127.0.0.1:0", "REPORTING_ADDR=127.0.0.1:0", "GATEWAY_ADDR=127.0.0.1:0",
		// The bursts are the point: no per-source rate limit at the door.
		"GATEWAY_RATE_PER_SOURCE=0",
	}, extra...), app.Mode{Sandbox: true})
	if err == nil {
		var a *app.App
		if a, err = app.Start(ctx, cfg, io.Discard, nil); err == nil {
			return a, func() { a.Stop(); _ = a.Wait(); _ = os.RemoveAll(dir) }, nil
		}
	}
	_ = os.RemoveAll(dir)
	return nil, nil, err
}
