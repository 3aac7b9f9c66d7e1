// Command crm-sync puts normalized leads into the brokerage's CRM.
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
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
)

func main() {
	// Every setting is an environment variable; the only flag is -h/--help (exit 0).
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), "Usage: crm-sync\n\nPuts normalized leads into the brokerage's CRM.\nEvery setting is a CRMSYNC_* environment variable (see the README); there are no flags.\n")
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Environ(), os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "crm-sync:", err)
		os.Exit(1)
	}
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
