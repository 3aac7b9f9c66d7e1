// Command ingest-gateway verifies lead, CRM and TMS webhooks and persists
// them to JetStream before answering.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Environ(), os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "ingest-gateway:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, environ []string, stderr io.Writer) error {
	cfg, err := gateway.ConfigFromEnv(environ)
	if err != nil {
		return err
	}
	logger := logging.New(stderr, logging.Options{Level: slog.LevelInfo})
	nc, err := cfg.NATS.Connect("ingest-gateway")
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	reg := service.NewRegistry()
	g, err := gateway.New(cfg, service.Deps{NATS: nc, Logger: logger, Registerer: reg, Gatherer: reg})
	if err != nil {
		return err
	}
	return g.Run(ctx)
}
