// Command reporting keeps the reporting read model: every lead's journey
// from the streams, in SQLite, with a JSON API, CSV exports and metrics.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

func main() {
	// Every setting is an environment variable; the only flag is -h/--help (exit 0).
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), "Usage: reporting\n\nKeeps the reporting read model of every lead's journey.\nEvery setting is a REPORTING_* environment variable (see docs/reporting.md); there are no flags.\n")
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Environ(), os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "reporting:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, environ []string, stderr io.Writer) error {
	cfg, err := reporting.ConfigFromEnv(environ)
	if err != nil {
		return err
	}
	opts := service.ServeOptions{Name: bus.ServiceReporting, NATS: cfg.NATS, Log: cfg.Log, DrainTimeout: cfg.ShutdownTimeout}
	return service.Serve(ctx, opts, stderr, func(d service.Deps) (service.Service, error) {
		return reporting.New(cfg, d)
	})
}
