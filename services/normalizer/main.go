// Command normalizer maps verified lead webhooks to canonical leads.
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
	"github.com/brokerflow/brokerflow/services/normalizer/normalizer"
)

func main() {
	// Every setting is an environment variable; the only flag is -h/--help (exit 0).
	flag.Usage = func() {
		fmt.Fprint(flag.CommandLine.Output(), "Usage: normalizer\n\nMaps verified lead webhooks to canonical leads.\nEvery setting is a NORMALIZER_* environment variable (see the README); there are no flags.\n")
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Environ(), os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "normalizer:", err)
		os.Exit(1)
	}
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
