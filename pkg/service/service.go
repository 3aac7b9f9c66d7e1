// Package service holds what every Brokerflow service is given by its caller.
package service

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/telemetry"
)

// Deps is what the caller owns and hands to a service's New: the caller
// opens the NATS connection and drains it after Run returns.
type Deps struct {
	NATS *nats.Conn
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
	// Registerer is where the service registers its metrics; several
	// services may share one. Nil registers nothing.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics when the service runs its own ops listener.
	Gatherer prometheus.Gatherer
	// TracerProvider defaults to an in-process SDK provider.
	TracerProvider trace.TracerProvider
	// Hooks is for tests only: it simulates crashes.
	Hooks *bus.TestHooks
}

// ErrNoConnection is returned by WithDefaults when Deps has no NATS connection.
var ErrNoConnection = errors.New("service: deps need a NATS connection")

// WithDefaults validates d and fills what it may leave empty.
func (d Deps) WithDefaults() (Deps, error) {
	if d.NATS == nil {
		return d, ErrNoConnection
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	d.TracerProvider = telemetry.TracerProvider(d.TracerProvider)
	return d, nil
}

// NATSReady is the readiness check of a NATS connection.
func NATSReady(nc *nats.Conn) func(context.Context) error {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return errors.New("nats: " + nc.Status().String())
		}
		return nil
	}
}

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors, for a binary's /metrics.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	// A fresh registry cannot hold a colliding collector.
	_ = reg.Register(collectors.NewGoCollector())
	_ = reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}
