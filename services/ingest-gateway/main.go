// Command ingest-gateway verifies lead, CRM and TMS webhooks and persists
// them to JetStream before answering.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

func main() {
	// Every setting is an environment variable; the only flag is -h/--help (exit 0).
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), "Usage: ingest-gateway\n\nVerifies lead, CRM and TMS webhooks and persists them to JetStream before answering.\nEvery setting is a GATEWAY_* environment variable (see the README); there are no flags.\n")
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Environ(), os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingest-gateway:", err)
		os.Exit(1)
	}
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
