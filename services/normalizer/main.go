// Command normalizer maps verified lead webhooks to canonical leads.
package main

import (
	"context"
	"io"
	"os"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/normalizer/normalizer"
)

func main() {
	os.Exit(service.Main("normalizer", "Maps verified lead webhooks to canonical leads.\nEvery setting is a NORMALIZER_* environment variable (see the README); there are no flags.", run))
}

func run(ctx context.Context, environ []string, stderr io.Writer) error {
	cfg, err := normalizer.ConfigFromEnv(environ)
	if err != nil {
		return err
	}
	opts := service.ServeOptions{Name: "normalizer", NATS: cfg.NATS, Log: cfg.Log, DrainTimeout: cfg.ShutdownTimeout, Environ: environ}
	return service.Serve(ctx, opts, stderr, func(d service.Deps) (service.Service, error) {
		return normalizer.New(cfg, d)
	})
}
