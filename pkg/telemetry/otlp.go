package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// ExportConfig is where spans go: the standard OTLP variables, read from the
// environment the caller was given.
//   - OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT with
//     /v1/traces appended: an http(s) URL of an OTLP/HTTP receiver;
//   - OTEL_EXPORTER_OTLP_TRACES_HEADERS or OTEL_EXPORTER_OTLP_HEADERS:
//     key=value pairs, comma-separated (an API key);
//   - OTEL_SDK_DISABLED=true turns export off.
//
// Neither endpoint set: spans are made and propagated, and exported nowhere.
type ExportConfig struct {
	Endpoint string
	Headers  map[string]string
}

// ExportConfigFrom reads the OTLP variables from env.
func ExportConfigFrom(env map[string]string) (ExportConfig, error) {
	if strings.EqualFold(env["OTEL_SDK_DISABLED"], "true") {
		return ExportConfig{}, nil
	}
	endpoint := env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
	if endpoint == "" && env["OTEL_EXPORTER_OTLP_ENDPOINT"] != "" {
		endpoint = strings.TrimRight(env["OTEL_EXPORTER_OTLP_ENDPOINT"], "/") + "/v1/traces"
	}
	if endpoint == "" {
		return ExportConfig{}, nil
	}
	if u, err := url.Parse(endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ExportConfig{}, fmt.Errorf("OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT %q is not an http(s) URL", endpoint)
	}
	headers := env["OTEL_EXPORTER_OTLP_TRACES_HEADERS"]
	if headers == "" {
		headers = env["OTEL_EXPORTER_OTLP_HEADERS"]
	}
	h := map[string]string{}
	for pair := range strings.SplitSeq(headers, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(pair), "="); ok {
			kk, _ := url.QueryUnescape(strings.TrimSpace(k))
			vv, _ := url.QueryUnescape(strings.TrimSpace(v))
			h[kk] = vv
		}
	}
	return ExportConfig{Endpoint: endpoint, Headers: h}, nil
}

// Enabled says whether spans are exported.
func (c ExportConfig) Enabled() bool { return c.Endpoint != "" }

// NewProvider returns the tracer provider of service: exporting over
// OTLP/HTTP when c is enabled, and shutdown flushes and stops it. When c is
// not enabled it returns nil (the process-wide provider that exports
// nowhere) and a shutdown that does nothing.
func NewProvider(ctx context.Context, service string, c ExportConfig) (trace.TracerProvider, func(context.Context) error, error) {
	if !c.Enabled() {
		return nil, func(context.Context) error { return nil }, nil
	}
	opts := []otlptracehttp.Option{otlptracehttp.WithEndpointURL(c.Endpoint)}
	if len(c.Headers) > 0 {
		opts = append(opts, otlptracehttp.WithHeaders(c.Headers))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("otlp exporter: %w", err)
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil && !errors.Is(err, resource.ErrSchemaURLConflict) {
		return nil, nil, fmt.Errorf("otlp resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
		sdktrace.WithResource(res),
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second)),
	)
	return tp, tp.Shutdown, nil
}
