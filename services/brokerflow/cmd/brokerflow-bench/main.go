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
	fs.Float64Var(&o.LeadRate, "lead-rate", 10, "leads per second for speed-to-lead; Follow Up Boss allows 25 calls/s and a new lead costs up to 2 searches")
	fs.DurationVar(&o.LeadDuration, "lead-duration", 10*time.Second, "how long leads are sent for speed-to-lead")
	fs.IntVar(&o.CRMLeads, "crm-leads", 2000, "burst of leads for the CRM quota measurement (drained at Follow Up Boss's 25 calls/s)")
	fs.IntVar(&o.ReplayEvents, "replay-events", 100_000, "events the reporting rebuild reads (replay_events_per_s)")
	fs.IntVar(&o.AlertLeads, "alert-leads", 1000, "leads a CRM outage fails, for the alerter's measurement (one alert, then one summary per 10 s window)")
	fs.IntVar(&o.StageChanges, "stage-changes", 20, "contacts moved to Active Client one after another (stage_to_transaction)")
	fs.StringVar(&o.Only, "only", "", `"replay", "alerter" or "tms" runs only that measurement (the reporting rebuild, the alerter's outage, stage_to_transaction)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	return bench.Run(ctx, o, stdout)
}
