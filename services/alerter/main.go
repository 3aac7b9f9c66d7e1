// Command alerter tells a person when something failed: to Slack, PagerDuty or a signed webhook.
package main

import (
	"context"
	"io"
	"os"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/alerter/alerter"
)

func main() {
	os.Exit(service.Main("alerter", "Alerts a person on failures, crashed handlers, rejected leads, stuck consumers, full streams and silent sources.\nEvery setting is an ALERTER_* environment variable (see docs/alerts.md); there are no flags.", run))
}

func run(ctx context.Context, environ []string, stderr io.Writer) error {
	cfg, err := alerter.ConfigFromEnv(environ)
	if err != nil {
		return err
	}
	opts := service.ServeOptions{Name: "alerter", NATS: cfg.NATS, Log: cfg.Log, DrainTimeout: cfg.ShutdownTimeout, Environ: environ}
	return service.Serve(ctx, opts, stderr, func(d service.Deps) (service.Service, error) {
		return alerter.New(cfg, d)
	})
}
