// Package telemetry carries W3C trace context through NATS headers and
// provides the tracer provider every service uses by default.
package telemetry

import (
	"context"
	"sync"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Header names written on every message, lower-case as W3C Trace Context
// specifies, so non-Go clients find them. nats.Header keys are case-sensitive.
const (
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
)

// Propagator is the W3C Trace Context propagator used on NATS and HTTP.
var Propagator propagation.TextMapPropagator = propagation.TraceContext{}

// HeaderCarrier adapts nats.Header to propagation.TextMapCarrier without
// canonicalising keys, unlike propagation.HeaderCarrier.
type HeaderCarrier nats.Header

var _ propagation.TextMapCarrier = HeaderCarrier(nil)

// Get returns the first value for key, matching it exactly.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set replaces the value for key, keeping its case.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the header names.
func (c HeaderCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}

// Inject writes traceparent and tracestate for the span in ctx into h.
func Inject(ctx context.Context, h nats.Header) {
	Propagator.Inject(ctx, HeaderCarrier(h))
}

// Extract returns ctx carrying the remote span context found in h.
func Extract(ctx context.Context, h nats.Header) context.Context {
	return Propagator.Extract(ctx, HeaderCarrier(h))
}

var (
	defaultOnce sync.Once
	defaultTP   trace.TracerProvider
)

// TracerProvider returns tp, or when it is nil a process-wide SDK provider
// that samples every span and exports nowhere. A real provider is needed even
// without an exporter: the no-op provider makes invalid span contexts, and
// then no traceparent would be written.
func TracerProvider(tp trace.TracerProvider) trace.TracerProvider {
	if tp != nil {
		return tp
	}
	defaultOnce.Do(func() {
		defaultTP = sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	})
	return defaultTP
}
