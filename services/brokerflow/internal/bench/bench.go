// Package bench holds the measurements behind make bench.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/opshttp"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

// Options of a run.
type Options struct {
	Duration    time.Duration
	Concurrency int
	Sync        string
	// LeadRate and LeadDuration drive the speed-to-lead measurement.
	LeadRate     float64
	LeadDuration time.Duration
	// CRMLeads is the burst of the CRM quota measurement.
	CRMLeads int
}

const benchSecret = "whsec_YmVuY2gtc2VjcmV0LWZvci10aGUtYnJva2VyZmxvdy1nYXRld2F5"

// A realistic IDX website lead, about 600 bytes.
const leadBody = `{"type":"lead.created","timestamp":"2026-11-26T20:00:00Z","data":{"first_name":"Ada","last_name":"Lovelace","email":"ada@example.com","phone":"(415) 555-0134","message":"Hello, I would like to see 12 Main St this weekend. Is it still available? We are pre-approved.","inquiry_type":"buy","property":{"address":"12 Main St","city":"Springfield","state":"IL","postal_code":"62701","mls_number":"MLS123456","price":850000,"url":"https://brokerage.example/listing/MLS123456"},"agent":{"name":"Jane Agent","email":"jane@brokerage.example"},"utm":{"source":"google","medium":"cpc","campaign":"spring-open-house"},"page_url":"https://brokerage.example/listing/MLS123456"}}`

// Run measures and prints every figure.
func Run(ctx context.Context, o Options, w io.Writer) error {
	policy, err := app.ParseSyncPolicy(o.Sync)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "# machine: %s/%s, %d CPUs, %s; %d clients, %s per measurement\n",
		runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), o.Concurrency, o.Duration)
	fmt.Fprintf(w, "bench: jetstream_sync %s policy\n", policy)

	baseline, err := measure(ctx, o, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	}))
	if err != nil {
		return fmt.Errorf("baseline: %w", err)
	}

	gw, cleanup, err := startGateway(ctx, policy)
	if err != nil {
		return err
	}
	accepted, err := measure(ctx, o, gw)
	cleanup()
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}

	fmt.Fprintf(w, "bench: gateway_baseline_rate %.0f req/s\n", baseline.rate())
	fmt.Fprintf(w, "bench: gateway_accept_rate %.0f req/s\n", accepted.rate())
	fmt.Fprintf(w, "bench: gateway_accept_ratio %.3f x\n", accepted.rate()/baseline.rate())
	fmt.Fprintf(w, "bench: gateway_accept_p50_ms %.2f ms\n", accepted.percentile(0.50))
	fmt.Fprintf(w, "bench: gateway_accept_p99_ms %.2f ms\n", accepted.percentile(0.99))
	fmt.Fprintf(w, "bench: gateway_errors %d count\n", accepted.errors+baseline.errors)
	if err := SpeedToLead(ctx, o, w); err != nil {
		return err
	}
	return CRMQuota(ctx, o, w)
}

// startGateway runs the real gateway on an embedded JetStream server with
// file storage in a temporary directory.
func startGateway(ctx context.Context, sync app.SyncPolicy) (http.Handler, func(), error) {
	dir, err := os.MkdirTemp("", "brokerflow-bench-")
	if err != nil {
		return nil, nil, err
	}
	ns, err := app.StartEmbedded(app.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: dir, Sync: sync})
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns))
	cleanup := func() {
		if nc != nil {
			nc.Close()
		}
		ns.Shutdown()
		ns.WaitForShutdown()
		_ = os.RemoveAll(dir)
	}
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	cfg := gateway.Config{
		IDXSecrets:         []string{benchSecret},
		TimestampTolerance: 5 * time.Minute,
		MaxBodyBytes:       1 << 20,
		PublishTimeout:     10 * time.Second,
		Bus:                service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: 30 * time.Second},
	}
	js, err := jetstream.New(nc)
	if err == nil {
		err = bus.Apply(ctx, js, cfg.Bus.Topology())
	}
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	g, err := gateway.New(cfg, service.Deps{NATS: nc, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return g.Handler(), cleanup, nil
}

type result struct {
	ok, errors int64
	elapsed    time.Duration
	latencies  []time.Duration
}

func (r result) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

func (r result) percentile(p float64) float64 {
	if len(r.latencies) == 0 {
		return 0
	}
	sorted := append([]time.Duration(nil), r.latencies...)
	slices.Sort(sorted)
	i := min(int(p*float64(len(sorted))), len(sorted)-1)
	return float64(sorted[i].Microseconds()) / 1000
}

// measure serves h on a loopback listener and posts signed webhooks to it
// from o.Concurrency clients for o.Duration. The clients do the same work
// for the baseline and for the gateway: sign, post, read the answer.
func measure(ctx context.Context, o Options, h http.Handler) (_ result, err error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return result{}, err
	}
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- opshttp.Serve(sctx, ln, h, 10*time.Second) }()
	defer func() {
		stop()
		if serr := <-served; serr != nil && err == nil {
			err = serr
		}
	}()

	url := "http://" + ln.Addr().String() + "/webhooks/idx"
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: o.Concurrency, MaxIdleConnsPerHost: o.Concurrency}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()

	var (
		ok, failed atomic.Int64
		seq        atomic.Int64
		mu         sync.Mutex
		lat        []time.Duration
		wg         sync.WaitGroup
	)
	deadline := time.Now().Add(o.Duration)
	start := time.Now()
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				id := "msg_bench_" + strconv.FormatInt(seq.Add(1), 10) + "_" + strconv.FormatInt(start.UnixNano(), 36)
				t0 := time.Now()
				if postSigned(ctx, client, url, benchSecret, id, leadBody) {
					ok.Add(1)
					mine = append(mine, time.Since(t0))
				} else {
					failed.Add(1)
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return result{ok: ok.Load(), errors: failed.Load(), elapsed: time.Since(start), latencies: lat}, ctx.Err()
}

// postSigned signs body as delivery id with secret, posts it to url and
// reports whether the answer was 202 Accepted.
func postSigned(ctx context.Context, client *http.Client, url, secret, id, body string) bool {
	h, err := webhooksig.SignedHeaders(secret, id, time.Now(), []byte(body))
	if err != nil {
		return false
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return false
	}
	req.Header = h
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusAccepted
}
