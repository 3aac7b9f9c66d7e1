// Command reporting keeps the reporting read model: every lead's journey
// from the streams, in SQLite, with a JSON API, CSV exports and metrics.
package main

import (
	"context"
	"io"
	"os"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

func main() {
	os.Exit(service.Main("reporting", "Keeps the reporting read model of every lead's journey.\nEvery setting is a REPORTING_* environment variable (see docs/reporting.md); there are no flags.", run))
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
