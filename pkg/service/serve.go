package service

import (
	"context"
	"io"
	"log/slog"

	"github.com/brokerflow/brokerflow/pkg/logging"
)

// Service is what a service's New returns.
type Service interface {
	Run(ctx context.Context) error
}

// Serve is the body of every service's main: it opens the NATS connection,
// builds the service with its deps, runs it until ctx is done, and drains
// the connection after Run returns.
func Serve(ctx context.Context, name string, nats NATSConfig, stderr io.Writer, build func(Deps) (Service, error)) error {
	logger := logging.New(stderr, logging.Options{Level: slog.LevelInfo})
	nc, err := nats.Connect(name)
	if err != nil {
		return err
	}
	defer func() { _ = nc.Drain() }()
	reg := NewRegistry()
	svc, err := build(Deps{NATS: nc, Logger: logger, Registerer: reg, Gatherer: reg})
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}
