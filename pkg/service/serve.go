package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brokerflow/brokerflow/pkg/telemetry"
)

// Service is what a service's New returns.
type Service interface {
	Run(ctx context.Context) error
}

// ServeOptions are what every service's main hands to Serve, from its Config.
type ServeOptions struct {
	// Name is the service's name, also its NATS connection name.
	Name string
	NATS NATSConfig
	Log  LogConfig
	// DrainTimeout bounds the drain of the NATS connection after Run returns.
	DrainTimeout time.Duration
	// Environ is the process environment, for the standard
	// OTEL_EXPORTER_OTLP_* variables: with an endpoint, spans are exported.
	Environ []string
}

// Serve is the body of every service's main: it opens the NATS connection,
// builds the service with its deps, runs it until ctx is done, and then
// drains the connection and waits for it to close.
func Serve(ctx context.Context, opts ServeOptions, stderr io.Writer, build func(Deps) (Service, error)) (err error) {
	logger := opts.Log.Logger(stderr)
	nc, err := opts.NATS.Connect(opts.Name)
	if err != nil {
		return err
	}
	defer func() {
		if derr := Drain(nc, opts.DrainTimeout); derr != nil {
			logger.Warn("nats drain", "err", derr)
			err = errors.Join(err, derr)
		}
	}()
	export, err := telemetry.ExportConfigFrom(EnvMap(opts.Environ))
	if err != nil {
		return err
	}
	tp, shutdownTracing, err := telemetry.NewProvider(ctx, opts.Name, export)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if terr := shutdownTracing(sctx); terr != nil {
			logger.Warn("flush traces", "err", terr)
		}
	}()
	reg := NewRegistry()
	svc, err := build(Deps{NATS: nc, Logger: logger, Registerer: reg, Gatherer: reg, TracerProvider: tp})
	if err != nil {
		return err
	}
	return svc.Run(ctx)
}

// ErrDrainTimeout is returned by Drain when the connection did not close in time.
var ErrDrainTimeout = errors.New("nats: drain did not finish in time; connection closed")

// Drain drains nc, as nats.go documents it: the subscriptions stop, pending
// messages are handled, publishes are flushed, and the connection closes.
// It waits on the closed callback for up to timeout (default 30 s), then
// closes the connection itself.
func Drain(nc *nats.Conn, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if nc.IsClosed() {
		return nil
	}
	if err := nc.Drain(); err != nil {
		nc.Close()
		if errors.Is(err, nats.ErrConnectionClosed) {
			return nil
		}
		return fmt.Errorf("nats drain: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-closed:
		return nil
	case <-t.C:
		nc.Close()
		return ErrDrainTimeout
	}
}
