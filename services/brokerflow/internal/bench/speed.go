package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
)

// SpeedToLead posts leads to the whole system at a fixed rate, under the
// CRM's quota, each with an email and a phone, 30% of them from returning
// people, and measures for each the time from the webhook POST to its
// activity recorded in the sandbox's Follow Up Boss (the answer to POST
// /v1/events): as measured, and with the time its CRM calls spent in the
// vendor subtracted (Brokerflow's own share).
func SpeedToLead(ctx context.Context, o Options, w io.Writer) error {
	sink, err := startSpanSink(ctx)
	if err != nil {
		return err
	}
	defer sink.stop()
	a, stop, err := startSystem(ctx, o, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="+sink.URL)
	if err != nil {
		return err
	}
	defer stop()
	policy, err := app.ParseSyncPolicy(o.Sync)
	if err != nil {
		return err
	}
	fub := a.Sandbox.FUB()
	fub.SetLatency(o.FUBLatency)
	total := int(o.LeadRate * o.LeadDuration.Seconds())
	leads, seed := workload(total, "speed", 415)
	calls := watchFUB(fub, append(leads, seed...))
	url := a.WebhookURL + "/webhooks/idx"
	if _, failed := send(ctx, url, seed, "seed"); failed > 0 {
		return fmt.Errorf("speed to lead: %d seed leads not accepted", failed)
	}
	if err := waitRecorded(ctx, calls, seed, len(seed), 5*time.Minute); err != nil {
		return fmt.Errorf("speed to lead seed: %w", err)
	}
	time.Sleep(2 * time.Second)
	calls.reset()

	// Each returning person writes twice: the two leads are kept apart, so
	// that each lead's calls and time are its own.
	first, again := []person{}, []person{}
	seen := map[string]bool{}
	for _, p := range leads {
		if seen[p.email] {
			again = append(again, p)
		} else {
			seen[p.email] = true
			first = append(first, p)
		}
	}
	errs := 0
	var stagesOf []map[string]time.Duration
	var stagesOwn []time.Duration
	measure := func(batch []person, tag string) ([]time.Duration, []time.Duration, error) {
		calls.reset()
		sent := make([]time.Time, len(batch))
		tick := time.NewTicker(time.Duration(float64(time.Second) / o.LeadRate))
		defer tick.Stop()
		client := newClient()
		for i, p := range batch {
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-tick.C:
			}
			sent[i] = time.Now()
			_, traceparent := traceOf(tag, i)
			sign := signStandard(app.DevIDXSecret)
			traced := func(h http.Header, id string, body []byte) error {
				h.Set("traceparent", traceparent)
				return sign(h, id, body)
			}
			go func() {
				if !postWith(ctx, client, url, traced, fmt.Sprintf("msg_stl_%s_%d", tag, i), p.body(i)) {
					calls.mu.Lock()
					errs++
					calls.mu.Unlock()
				}
			}()
		}
		if err := waitRecorded(ctx, calls, batch, len(batch), 2*time.Minute); err != nil {
			return nil, nil, err
		}
		time.Sleep(time.Second)
		calls.resolve()
		// The spans are exported in batches, every few seconds.
		traced := func(i int) []span { id, _ := traceOf(tag, i); return sink.Trace(id) }
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
			if complete(traced(len(batch)-1)) && complete(traced(0)) {
				break
			}
		}
		calls.mu.Lock()
		defer calls.mu.Unlock()
		var all, own []time.Duration
		for i, p := range batch {
			r := calls.recorded[p.email]
			if len(r) == 0 {
				continue
			}
			d := r[0].Sub(sent[i])
			all = append(all, d)
			own = append(own, max(0, d-calls.inVendor[p.email]))
			if st, ok := leadStages(traced(i), sent[i], r[0], calls.inVendor[p.email]); ok {
				stagesOf = append(stagesOf, st)
				stagesOwn = append(stagesOwn, own[len(own)-1])
			}
		}
		return all, own, nil
	}
	stopProbe, err := probeStorage(ctx, policy)
	if err != nil {
		return err
	}
	defer stopProbe()
	all, own, err := measure(first, "a")
	if err != nil {
		return fmt.Errorf("speed to lead: %w", err)
	}
	all2, own2, err := measure(again, "b")
	if err != nil {
		return fmt.Errorf("speed to lead: %w", err)
	}
	probe := stopProbe()
	all, own = append(all, all2...), append(own, own2...)
	slices.Sort(all)
	slices.Sort(own)
	r, ro := result{latencies: all}, result{latencies: own}
	fmt.Fprintf(w, "bench: speed_to_lead_rate %.0f leads/s\n", o.LeadRate)
	fmt.Fprintf(w, "bench: speed_to_lead_sent %d count\n", total)
	fmt.Fprintf(w, "bench: speed_to_lead_arrived %d count\n", len(all))
	fmt.Fprintf(w, "bench: speed_to_lead_post_errors %d count\n", errs)
	fmt.Fprintf(w, "bench: speed_to_lead_p50_ms %.1f ms\n", r.percentile(0.50))
	fmt.Fprintf(w, "bench: speed_to_lead_p99_ms %.1f ms\n", r.percentile(0.99))
	fmt.Fprintf(w, "bench: speed_to_lead_own_p50_ms %.1f ms\n", ro.percentile(0.50))
	fmt.Fprintf(w, "bench: speed_to_lead_own_p99_ms %.1f ms\n", ro.percentile(0.99))
	printStages(w, stagesOf, stagesOwn)
	// The floor under the stages that store: one write, alone, at the same time.
	fmt.Fprintf(w, "bench: storage_write_p50_ms %.2f ms\n", probe.percentile(0.50))
	fmt.Fprintf(w, "bench: storage_write_p99_ms %.2f ms\n", probe.percentile(0.99))
	fmt.Fprintf(w, "bench: storage_write_max_ms %.2f ms\n", probe.percentile(1))
	fmt.Fprintf(w, "bench: storage_writes %d count\n", len(probe.latencies))
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
		fmt.Sprintf("CRMSYNC_CONCURRENCY=%d", o.CRMConcurrency),
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
