// Command brokerflow-bench measures and prints; it asserts nothing. Each
// figure is one line, "bench: <name> <value> <unit>". Ratios compare against
// a baseline measured in the same run, on the same machine.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/brokerflow/brokerflow/services/brokerflow/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "brokerflow-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("brokerflow-bench", flag.ContinueOnError)
	var o bench.Options
	fs.DurationVar(&o.Duration, "duration", 5*time.Second, "how long each measurement runs")
	fs.IntVar(&o.Concurrency, "concurrency", 32, "concurrent HTTP clients")
	fs.StringVar(&o.Sync, "sync", "always", `JetStream sync policy: "always" (the embedded default) or an interval such as 2m`)
	fs.Float64Var(&o.LeadRate, "lead-rate", 12, "leads per second for speed-to-lead; Follow Up Boss allows 25 counted calls/s, a new lead costs 2 searches and 30% of the leads are from returning people, who cost none")
	fs.DurationVar(&o.LeadDuration, "lead-duration", 85*time.Second, "how long leads are sent for speed-to-lead (lead-rate × lead-duration leads, at least 1,000 for the p99)")
	fs.DurationVar(&o.FUBLatency, "fub-latency", 50*time.Millisecond, "how long the sandbox's Follow Up Boss takes to answer each call")
	fs.IntVar(&o.CRMConcurrency, "crm-concurrency", 8, "crm-sync's handlers (CRMSYNC_CONCURRENCY) in the CRM runs: with the vendor's latency, 4 cannot keep 25 calls/s going")
	fs.IntVar(&o.CRMLeads, "crm-leads", 2000, "burst of leads for the CRM quota measurement (drained at Follow Up Boss's 25 calls/s)")
	fs.IntVar(&o.ReplayEvents, "replay-events", 100_000, "events the reporting rebuild reads (replay_events_per_s)")
	fs.IntVar(&o.AlertLeads, "alert-leads", 1000, "leads a CRM outage fails, for the alerter's measurement (one alert, then one summary per 10 s window)")
	fs.IntVar(&o.StageChanges, "stage-changes", 20, "contacts moved to Active Client one after another (stage_to_transaction)")
	fs.StringVar(&o.Only, "only", "", `"gateway", "replay", "alerter", "tms", "speed", "crm" or "ledger" runs only that measurement (the gateway against JetStream alone and bare HTTP, the reporting rebuild, the alerter's outage, stage_to_transaction, speed-to-lead, speed-to-lead and the CRM quota burst, or the QuickBooks quota)`)
	fs.IntVar(&o.LedgerWorkers, "ledger-workers", 4, "closings booked at a time in the QuickBooks quota measurement")
	fs.DurationVar(&o.LedgerDuration, "ledger-duration", 24*time.Second, "how long closings are booked back to back in the QuickBooks quota measurement (4 of its 6 s windows)")
	fs.IntVar(&o.GroupCommitInFlight, "group-commit-in-flight", 0, "the gateway's GATEWAY_GROUP_COMMIT_IN_FLIGHT: atomic batches committing at once (0: the gateway's default)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	return bench.Run(ctx, o, stdout)
}
