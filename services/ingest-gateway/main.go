// Command ingest-gateway verifies lead, CRM and TMS webhooks and persists
// them to JetStream before answering.
package main

import (
	"context"
	"io"
	"os"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

func main() {
	os.Exit(service.Main("ingest-gateway", "Verifies lead, CRM and TMS webhooks and persists them to JetStream before answering.\nEvery setting is a GATEWAY_* environment variable (see the README); there are no flags.", run))
}

func run(ctx context.Context, environ []string, stderr io.Writer) error {
	cfg, err := gateway.ConfigFromEnv(environ)
	if err != nil {
		return err
	}
	opts := service.ServeOptions{Name: "ingest-gateway", NATS: cfg.NATS, Log: cfg.Log, DrainTimeout: cfg.ShutdownTimeout, Environ: environ}
	return service.Serve(ctx, opts, stderr, func(d service.Deps) (service.Service, error) {
		return gateway.New(cfg, d)
	})
}
