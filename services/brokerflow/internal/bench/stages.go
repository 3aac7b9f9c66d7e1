package bench

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/opshttp"
	"github.com/brokerflow/brokerflow/pkg/telemetry/otlptest"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
)

// spanSink serves an OTLP/HTTP trace receiver on a loopback port: the
// system under measurement exports its spans to it
// (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT). The bench sends each lead with a
// traceparent of its own, so each lead's spans are its trace's.
type spanSink struct {
	*otlptest.Receiver
	URL  string
	stop func()
}

func startSpanSink(ctx context.Context) (*spanSink, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &spanSink{Receiver: otlptest.NewReceiver(), URL: "http://" + ln.Addr().String() + "/v1/traces"}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = opshttp.Serve(sctx, ln, s.Receiver, 5*time.Second); close(done) }()
	s.stop = func() { cancel(); <-done }
	return s, nil
}

type span = otlptest.Span

// traceOf is the trace id the bench gives the lead tag/i, and the
// traceparent header that starts it.
func traceOf(tag string, i int) (id, traceparent string) {
	h := fnv.New64a()
	_, _ = h.Write([]byte(tag))
	id = fmt.Sprintf("%016x%016x", h.Sum64(), i+1)
	return id, "00-" + id + "-" + fmt.Sprintf("%016x", i+1) + "-01"
}

// complete says whether a lead's trace holds crm-sync's handling.
func complete(spans []span) bool {
	return slices.ContainsFunc(spans, func(s span) bool {
		return s.Service == bus.ServiceCRMSync && s.Name == "crm-sync fence"
	})
}

// The stages of a lead's own time (its time to the CRM less the time its
// calls spent in the vendor), in the order the lead passes them.
var stages = []string{
	"client_to_gateway",  // the POST until the gateway's handler starts
	"gateway_persist",    // verified and stored in WEBHOOKS (the publish's ack: fsync, group commit)
	"webhooks_to_norm",   // stored until the normalizer's handler starts (delivery to a pull consumer)
	"normalizer_persist", // normalized and stored in LEADS
	"leads_to_crm_sync",  // stored until crm-sync's handler starts (queueing behind its handlers included)
	"crm_sync_kv",        // the lead's pending record, the identity claims, the fence before the call (KV reads and synced writes)
	"crm_sync_pacer",     // waiting for the pacer before counted calls
	"crm_sync_http",      // the vendor calls' own overhead: the client's part of each call, outside the vendor's time
	"crm_sync_other",     // the rest: between the steps of crm-sync's handler
}

// leadStages splits the own time of one lead, posted at sent and recorded
// in the CRM at recorded, after its calls spent inVendor in the vendor,
// into stages, from its trace. ok is false when a span is missing.
func leadStages(spans []span, sent, recorded time.Time, inVendor time.Duration) (map[string]time.Duration, bool) {
	find := func(service, name string) (span, bool) {
		for _, s := range spans {
			if s.Service == service && s.Name == name {
				return s, true
			}
		}
		return span{}, false
	}
	gw, ok1 := find(bus.ServiceGateway, "POST /webhooks/idx")
	whPub, ok2 := find(bus.ServiceGateway, "publish webhook.received.lead.idx")
	norm, ok3 := find(bus.ServiceNormalizer, "process webhook.received.lead.idx")
	leadPub, ok4 := find(bus.ServiceNormalizer, "publish lead.normalized.idx")
	crm, ok5 := find(bus.ServiceCRMSync, "process lead.normalized.idx")
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return nil, false
	}
	out := map[string]time.Duration{
		"client_to_gateway":  gw.Start.Sub(sent),
		"gateway_persist":    whPub.End.Sub(gw.Start),
		"webhooks_to_norm":   norm.Start.Sub(whPub.End),
		"normalizer_persist": leadPub.End.Sub(norm.Start),
		"leads_to_crm_sync":  crm.Start.Sub(leadPub.End),
	}
	var calls time.Duration
	for _, s := range spans {
		if s.Service != bus.ServiceCRMSync || !s.Start.Before(recorded) {
			continue
		}
		switch {
		case strings.HasPrefix(s.Name, "crm-sync "):
			out["crm_sync_kv"] += s.Took()
		case strings.HasPrefix(s.Name, "pace "):
			out["crm_sync_pacer"] += s.Took()
		case strings.HasPrefix(s.Name, "followupboss "):
			// The call that recorded the lead counts until its answer was written.
			end := s.End
			if end.After(recorded) {
				end = recorded
			}
			calls += end.Sub(s.Start)
		}
	}
	// A call's span holds its pacer wait.
	out["crm_sync_http"] = calls - out["crm_sync_pacer"] - inVendor
	own := recorded.Sub(sent) - inVendor
	rest := own
	for _, name := range stages[:len(stages)-1] {
		rest -= out[name]
	}
	out["crm_sync_other"] = rest
	return out, true
}

// printStages prints, for each stage, its p50 and p99 over the leads, and
// its mean over the slowest 1% of leads by own time (the tail): which
// stage the tail is made of.
func printStages(w io.Writer, per []map[string]time.Duration, own []time.Duration) {
	if len(per) == 0 {
		fmt.Fprintln(w, "# speed-to-lead stages: no trace complete")
		return
	}
	order := make([]int, len(per))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return int(own[a] - own[b]) })
	tail := order[len(order)-max(1, len(order)/100):]
	fmt.Fprintf(w, "bench: speed_to_lead_traced %d count\n", len(per))
	for _, name := range stages {
		var r result
		var sum time.Duration
		for _, m := range per {
			r.latencies = append(r.latencies, m[name])
		}
		for _, i := range tail {
			sum += per[i][name]
		}
		fmt.Fprintf(w, "bench: speed_to_lead_stage_%s_p50_ms %.1f ms\n", name, r.percentile(0.50))
		fmt.Fprintf(w, "bench: speed_to_lead_stage_%s_p99_ms %.1f ms\n", name, r.percentile(0.99))
		fmt.Fprintf(w, "bench: speed_to_lead_tail_%s_ms %.1f ms\n", name, float64((sum/time.Duration(len(tail))).Microseconds())/1000)
	}
}

// probeStorage publishes one message every 50 ms, each waiting for its ack,
// to an embedded JetStream of its own under policy, with its files beside
// the system's: how long one stored (under sync always: fsynced) write
// takes on this machine while the system runs. stop ends it and returns
// the latencies.
func probeStorage(ctx context.Context, policy app.SyncPolicy) (stop func() result, err error) {
	_, js, cleanup, err := startJetStream(ctx, policy)
	if err != nil {
		return nil, err
	}
	msgs := &rawMessages{pub: bus.NewPublisher(js, bus.ServiceGateway, nil), start: "probe" + strconv.FormatInt(time.Now().UnixNano(), 36)}
	pctx, cancel := context.WithCancel(ctx)
	done := make(chan result)
	go func() {
		var r result
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-pctx.Done():
				done <- r
				return
			case <-tick.C:
			}
			m, err := msgs.next(pctx)
			if err != nil {
				r.errors++
				continue
			}
			t0 := time.Now()
			if _, err := js.PublishMsg(pctx, m); err != nil {
				r.errors++
				continue
			}
			r.latencies = append(r.latencies, time.Since(t0))
		}
	}()
	var (
		once sync.Once
		r    result
	)
	return func() result {
		once.Do(func() {
			cancel()
			r = <-done
			cleanup()
		})
		return r
	}, nil
}
