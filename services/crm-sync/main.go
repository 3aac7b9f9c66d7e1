// Command crm-sync puts normalized leads into the brokerage's CRM.
package main

import (
	"context"
	"io"
	"os"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
)

func main() {
	os.Exit(service.Main("crm-sync", "Puts normalized leads into the brokerage's CRM.\nEvery setting is a CRMSYNC_* environment variable (see the README); there are no flags.", run))
}

func run(ctx context.Context, environ []string, stderr io.Writer) error {
	cfg, err := crmsync.ConfigFromEnv(environ)
	if err != nil {
		return err
	}
	opts := service.ServeOptions{Name: "crm-sync", NATS: cfg.NATS, Log: cfg.Log, DrainTimeout: cfg.ShutdownTimeout, Environ: environ}
	return service.Serve(ctx, opts, stderr, func(d service.Deps) (service.Service, error) {
		return crmsync.New(cfg, d)
	})
}
