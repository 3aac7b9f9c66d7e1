// Package bench holds the measurements behind make bench.
package bench

import (
	"context"
	"encoding/base64"
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
	"github.com/prometheus/client_golang/prometheus"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/opshttp"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/sources"
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
	// FUBLatency is how long the sandbox's Follow Up Boss takes to answer.
	FUBLatency time.Duration
	// CRMConcurrency is crm-sync's CRMSYNC_CONCURRENCY in the CRM runs.
	CRMConcurrency int
	// ReplayEvents is how many events the reporting rebuild reads.
	ReplayEvents int
	// AlertLeads is the burst of leads the CRM outage fails (the alerter's measurement).
	AlertLeads int
	// StageChanges is how many contacts stage_to_transaction moves to Active Client.
	StageChanges int
	// Only, when "gateway", "replay", "alerter", "tms", "speed", "crm" or
	// "ledger", runs that measurement alone ("crm": speed-to-lead and the
	// CRM quota burst).
	Only string
	// GroupCommitInFlight is the gateway's GATEWAY_GROUP_COMMIT_IN_FLIGHT
	// (0: its default).
	GroupCommitInFlight int
	// LedgerWorkers closings are booked at a time for LedgerDuration in the
	// QuickBooks quota measurement.
	LedgerWorkers  int
	LedgerDuration time.Duration
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
	fmt.Fprintf(w, "bench: fub_latency_ms %d ms\n", o.FUBLatency.Milliseconds())
	fmt.Fprintf(w, "bench: crm_sync_concurrency %d handlers\n", o.CRMConcurrency)
	switch o.Only {
	case "replay":
		return Replay(ctx, o, w)
	case "alerter":
		return AlerterOutage(ctx, o, w)
	case "tms":
		return StageToTransaction(ctx, o, w)
	case "speed":
		return SpeedToLead(ctx, o, w)
	case "ledger":
		return LedgerQuota(ctx, o, w)
	case "crm":
		if err := SpeedToLead(ctx, o, w); err != nil {
			return err
		}
		return CRMQuota(ctx, o, w)
	case "gateway":
		return Gateway(ctx, o, policy, w)
	}
	if err := Gateway(ctx, o, policy, w); err != nil {
		return err
	}
	if err := SpeedToLead(ctx, o, w); err != nil {
		return err
	}
	if err := StageToTransaction(ctx, o, w); err != nil {
		return err
	}
	if err := CRMQuota(ctx, o, w); err != nil {
		return err
	}
	if err := AlerterOutage(ctx, o, w); err != nil {
		return err
	}
	if err := LedgerQuota(ctx, o, w); err != nil {
		return err
	}
	return Replay(ctx, o, w)
}

// Gateway measures, in one run and under one sync policy, JetStream alone
// (synchronous publishes, atomic batches), a bare HTTP handler, and the
// gateway with group commit off and on, from o.Concurrency clients and from
// one, and per auth scheme.
func Gateway(ctx context.Context, o Options, policy app.SyncPolicy, w io.Writer) error {
	idx := schemes[0]
	// The figures that are compared are measured in turns: the baseline,
	// JetStream alone, and the gateway with group commit off and on, from
	// o.Concurrency clients, one second each, five times.
	baselineHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusAccepted)
	})
	baselineM := &meter{close: func() {}, slice: func(ctx context.Context, o Options) (result, error) {
		return measure(ctx, o, baselineHandler, "/webhooks/idx", idx.auth)
	}}
	rawSyncM, err := measureSyncPublish(ctx, policy)
	if err != nil {
		return fmt.Errorf("raw sync publish: %w", err)
	}
	defer rawSyncM.close()
	rawBatchM, err := measureAtomicBatch(ctx, policy)
	if err != nil {
		return fmt.Errorf("raw atomic batch: %w", err)
	}
	defer rawBatchM.close()
	// With several batches in flight, JetStream alone with as many.
	inFlight := o.GroupCommitInFlight
	if inFlight == 0 {
		inFlight = gateway.DefaultGroupCommitInFlight
	}
	meters := []*meter{baselineM, rawSyncM, rawBatchM}
	var rawInFlightM *meter
	if inFlight > 1 {
		if rawInFlightM, err = measureAtomicBatchInFlight(ctx, policy, inFlight); err != nil {
			return fmt.Errorf("raw atomic batches in flight: %w", err)
		}
		defer rawInFlightM.close()
		meters = append(meters, rawInFlightM)
	}
	var gw [2]*gatewayMeter // group commit off, on
	for j, groupCommit := range []bool{false, true} {
		if gw[j], err = newGatewayMeter(ctx, policy, groupCommit, o.GroupCommitInFlight); err != nil {
			return err
		}
		defer gw[j].close()
	}
	if err := inTurns(ctx, o, 5, append(meters, &gw[0].meter, &gw[1].meter)...); err != nil {
		return err
	}
	baseline, rawSync, rawBatch := baselineM.total, rawSyncM.total, rawBatchM.total
	// Then from one client, off and on, one after the other.
	one := o
	one.Concurrency = 1
	var runs [2][2]gatewayRun // [clients: o.Concurrency, 1][group commit: off, on]
	for j := range gw {
		runs[0][j] = gatewayRun{result: gw[j].total, batchMean: batchMean(gw[j].reg)}
	}
	for j, groupCommit := range []bool{false, true} {
		if runs[1][j], err = measureGateway(ctx, one, policy, groupCommit); err != nil {
			return err
		}
	}
	perScheme, err := measureSchemes(ctx, o, policy)
	if err != nil {
		return err
	}

	off, on := runs[0][0], runs[0][1]
	fmt.Fprintf(w, "bench: jetstream_sync_publish_rate %.0f msg/s\n", rawSync.rate())
	fmt.Fprintf(w, "bench: jetstream_atomic_batch_rate %.0f msg/s\n", rawBatch.rate())
	fmt.Fprintf(w, "bench: jetstream_atomic_batch_size %d msgs\n", o.Concurrency)
	if rawInFlightM != nil {
		fmt.Fprintf(w, "bench: jetstream_atomic_batch_rate_in_flight %.0f msg/s\n", rawInFlightM.total.rate())
		fmt.Fprintf(w, "bench: jetstream_atomic_batch_in_flight %d batches of %d msgs\n", inFlight, max(o.Concurrency/inFlight, 1))
	}
	fmt.Fprintf(w, "bench: gateway_baseline_rate %.0f req/s\n", baseline.rate())
	fmt.Fprintf(w, "bench: gateway_accept_rate_group_commit_off %.0f req/s\n", off.rate())
	fmt.Fprintf(w, "bench: gateway_accept_ratio_group_commit_off %.3f x\n", off.rate()/baseline.rate())
	fmt.Fprintf(w, "bench: gateway_accept_rate %.0f req/s\n", on.rate())
	fmt.Fprintf(w, "bench: gateway_accept_ratio %.3f x\n", on.rate()/baseline.rate())
	fmt.Fprintf(w, "bench: gateway_accept_vs_atomic_batch %.3f x\n", on.rate()/rawBatch.rate())
	if rawInFlightM != nil {
		fmt.Fprintf(w, "bench: gateway_accept_vs_atomic_batch_in_flight %.3f x\n", on.rate()/rawInFlightM.total.rate())
	}
	fmt.Fprintf(w, "bench: gateway_commit_batch_mean %.1f msgs\n", on.batchMean)
	fmt.Fprintf(w, "bench: gateway_commit_in_flight %d batches\n", inFlight)
	for i, clients := range []string{"", "_1client"} {
		for j, mode := range []string{"_group_commit_off", ""} {
			r := runs[i][j]
			fmt.Fprintf(w, "bench: gateway_accept%s_p50_ms%s %.2f ms\n", clients, mode, r.percentile(0.50))
			fmt.Fprintf(w, "bench: gateway_accept%s_p99_ms%s %.2f ms\n", clients, mode, r.percentile(0.99))
		}
	}
	fmt.Fprintf(w, "bench: gateway_accept_1client_rate_group_commit_off %.0f req/s\n", runs[1][0].rate())
	fmt.Fprintf(w, "bench: gateway_accept_1client_rate %.0f req/s\n", runs[1][1].rate())
	errs := baseline.errors
	for _, r := range []gatewayRun{runs[0][0], runs[0][1], runs[1][0], runs[1][1]} {
		errs += r.errors
	}
	for i, r := range perScheme {
		fmt.Fprintf(w, "bench: gateway_accept_rate_%s %.0f req/s\n", schemes[i].name, r.rate())
		fmt.Fprintf(w, "bench: gateway_accept_ratio_%s %.3f x\n", schemes[i].name, r.rate()/baseline.rate())
		errs += r.errors
	}
	if rawInFlightM != nil {
		errs += rawInFlightM.total.errors
	}
	fmt.Fprintf(w, "bench: gateway_errors %d count\n", errs+rawSync.errors+rawBatch.errors)
	return nil
}

// gatewayRun is a measurement of the IDX gateway, with the mean size of
// its group commit's publishes.
type gatewayRun struct {
	result
	batchMean float64
}

// gatewayMeter measures a gateway serving the IDX source, with group
// commit on or off, in slices; its metrics are on reg.
type gatewayMeter struct {
	meter
	reg *prometheus.Registry
}

func newGatewayMeter(ctx context.Context, policy app.SyncPolicy, groupCommit bool, inFlight int) (*gatewayMeter, error) {
	reg := prometheus.NewRegistry()
	gw, cleanup, err := startGateway(ctx, policy, reg, func(cfg gateway.Config, deps service.Deps) (*gateway.Gateway, error) {
		cfg.IDXSecrets = []string{benchSecret}
		cfg.GroupCommit = groupCommit
		cfg.GroupCommitInFlight = inFlight
		return gateway.New(cfg, deps)
	})
	if err != nil {
		return nil, err
	}
	return &gatewayMeter{reg: reg, meter: meter{close: cleanup, slice: func(ctx context.Context, o Options) (result, error) {
		r, err := measure(ctx, o, gw, "/webhooks/idx", schemes[0].auth)
		if err != nil {
			return r, fmt.Errorf("gateway (group commit %v, %d clients): %w", groupCommit, o.Concurrency, err)
		}
		return r, nil
	}}}, nil
}

// measureGateway measures a gateway serving the IDX source, with group
// commit on or off, for o.Duration.
func measureGateway(ctx context.Context, o Options, policy app.SyncPolicy, groupCommit bool) (gatewayRun, error) {
	m, err := newGatewayMeter(ctx, policy, groupCommit, o.GroupCommitInFlight)
	if err != nil {
		return gatewayRun{}, err
	}
	defer m.close()
	r, err := m.slice(ctx, o)
	return gatewayRun{result: r, batchMean: batchMean(m.reg)}, err
}

// scheme is how the clients authenticate to a source of one auth scheme.
type scheme struct {
	name string
	// auth adds the scheme's credentials to a request for body.
	auth func(h http.Header, id string, body []byte) error
	// spec is the source the gateway serves, as a sources file declares it.
	spec sources.Auth
}

const benchKey = "bench-key-for-the-brokerflow-gateway"

// schemes are measured one by one, each on its own gateway serving one
// source built as a sources file's entry is; the first is also the IDX
// source's scheme, which the baseline's clients sign with.
var schemes = []scheme{
	{sources.SchemeStandardWebhooks, signStandard(benchSecret), sources.Auth{Secrets: []string{benchSecret}}},
	{sources.SchemeHMACSHA256, func(h http.Header, _ string, body []byte) error {
		h.Set("X-Signature", webhooksig.SignHMACSHA256(benchKey, webhooksig.Hex, "sha256=", body))
		return nil
	}, sources.Auth{Header: "X-Signature", Prefix: "sha256=", Encoding: "hex"}},
	{sources.SchemeAPIKey, func(h http.Header, _ string, _ []byte) error {
		h.Set(webhooksig.HeaderAPIKey, benchKey)
		return nil
	}, sources.Auth{Header: webhooksig.HeaderAPIKey}},
	{sources.SchemeSharedSecret, func(h http.Header, _ string, _ []byte) error {
		h.Set("X-Shared-Secret", benchKey)
		return nil
	}, sources.Auth{Header: "X-Shared-Secret"}},
	{sources.SchemeFacebook, func(h http.Header, _ string, body []byte) error {
		h.Set(webhooksig.HeaderHubSignature256, webhooksig.SignFacebook(benchKey, body))
		return nil
	}, sources.Auth{VerifyToken: "bench-verify-token"}},
	{sources.SchemeBasic, func(h http.Header, _ string, _ []byte) error {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("bench:"+benchKey)))
		return nil
	}, sources.Auth{Secrets: []string{"bench:" + benchKey}}},
	{sources.SchemeFUBSignature, func(h http.Header, _ string, body []byte) error {
		h.Set(webhooksig.HeaderFUBSignature, webhooksig.SignFUB(benchKey, body))
		return nil
	}, sources.Auth{}},
}

// measureSchemes measures the gateway accepting webhooks of each scheme.
func measureSchemes(ctx context.Context, o Options, sync app.SyncPolicy) ([]result, error) {
	out := make([]result, 0, len(schemes))
	for _, s := range schemes {
		a := s.spec
		a.Scheme = s.name
		if len(a.Secrets) == 0 {
			a.Secrets = []string{benchKey}
		}
		src, err := gateway.FromSpec(sources.Spec{Name: s.name, Kind: "lead", Route: "/webhooks/" + s.name, Format: sources.FormatJSON, Auth: a})
		if err != nil {
			return nil, err
		}
		gw, cleanup, err := startGateway(ctx, sync, nil, func(cfg gateway.Config, deps service.Deps) (*gateway.Gateway, error) {
			return gateway.NewWithSources(cfg, deps, src)
		})
		if err != nil {
			return nil, err
		}
		r, err := measure(ctx, o, gw, src.Route, s.auth)
		cleanup()
		if err != nil {
			return nil, fmt.Errorf("gateway, %s: %w", s.name, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// startGateway runs a real gateway, made by build, on an embedded JetStream
// server with file storage in a temporary directory. Its metrics are on reg.
func startGateway(ctx context.Context, sync app.SyncPolicy, reg *prometheus.Registry, build func(gateway.Config, service.Deps) (*gateway.Gateway, error)) (http.Handler, func(), error) {
	nc, _, cleanup, err := startJetStream(ctx, sync)
	if err != nil {
		return nil, nil, err
	}
	// No rate limit: the figure is what the gateway can accept.
	cfg := gateway.Config{
		TimestampTolerance: 5 * time.Minute,
		MaxBodyBytes:       1 << 20,
		PublishTimeout:     10 * time.Second,
		// As brokerflow run decides it (internal/app), unless build does.
		GroupCommit: sync.Always,
	}
	deps := service.Deps{NATS: nc, Logger: slog.New(slog.DiscardHandler)}
	if reg != nil {
		deps.Registerer, deps.Gatherer = reg, reg
	}
	g, err := build(cfg, deps)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return g.Handler(), cleanup, nil
}

// startJetStream runs an embedded JetStream server with file storage in a
// temporary directory, under sync, with the streams applied, and connects.
func startJetStream(ctx context.Context, sync app.SyncPolicy) (*nats.Conn, jetstream.JetStream, func(), error) {
	dir, err := os.MkdirTemp("", "brokerflow-bench-")
	if err != nil {
		return nil, nil, nil, err
	}
	ns, err := app.StartEmbedded(app.EmbeddedOptions{Host: "127.0.0.1", Port: -1, StoreDir: dir, Sync: sync})
	if err != nil {
		return nil, nil, nil, err
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
		return nil, nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		err = bus.Apply(ctx, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: 30 * time.Second}.Topology())
	}
	if err != nil {
		cleanup()
		return nil, nil, nil, err
	}
	return nc, js, cleanup, nil
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

// measure serves h on a loopback listener and posts webhooks authenticated
// with auth to route from o.Concurrency clients for o.Duration. The clients
// do the same work for the baseline and for the gateway: sign, post, read
// the answer. Each body is distinct, as each real lead is, so that schemes
// without a delivery id (whose id is the body's hash) are not dedup'ed.
func measure(ctx context.Context, o Options, h http.Handler, route string, auth func(http.Header, string, []byte) error) (_ result, err error) {
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

	url := "http://" + ln.Addr().String() + route
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
				if postWith(ctx, client, url, auth, id, `{"id":"`+id+`",`+leadBody[1:]) {
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
	return postWith(ctx, client, url, signStandard(secret), id, body)
}

// signStandard signs with Standard Webhooks, now, under secret.
func signStandard(secret string) func(http.Header, string, []byte) error {
	return func(h http.Header, id string, body []byte) error {
		sig, err := webhooksig.SignedHeaders(secret, id, time.Now(), body)
		for k, v := range sig {
			h[k] = v
		}
		return err
	}
}

// postWith posts body to url with the credentials auth adds and reports
// whether the answer was 202 Accepted.
func postWith(ctx context.Context, client *http.Client, url string, auth func(http.Header, string, []byte) error, id, body string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return false
	}
	if auth(req.Header, id, []byte(body)) != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusAccepted
}
