// Package otlptest is a local OTLP/HTTP trace receiver, for tests and
// benchmarks that look at the spans a system exports: serve a Receiver
// (httptest, or any listener) and point OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
// at its /v1/traces.
package otlptest

import (
	"encoding/hex"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

// Span is one exported span: the service that made it (its resource's
// service.name), its name, and when it started and ended.
type Span struct {
	Service, Name string
	Start, End    time.Time
}

// Took is the span's duration.
func (s Span) Took() time.Duration { return s.End.Sub(s.Start) }

// Receiver keeps every span it is sent, by trace id (lower-case hex).
type Receiver struct {
	mu     sync.Mutex
	traces map[string][]Span
}

// NewReceiver returns an empty Receiver.
func NewReceiver() *Receiver { return &Receiver{traces: map[string][]Span{}} }

// ServeHTTP takes an OTLP/HTTP protobuf trace export.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	var export collectortrace.ExportTraceServiceRequest
	if err != nil || req.URL.Path != "/v1/traces" || proto.Unmarshal(body, &export) != nil {
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rs := range export.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				id := hex.EncodeToString(sp.GetTraceId())
				r.traces[id] = append(r.traces[id], Span{
					Service: service, Name: sp.GetName(),
					Start: time.Unix(0, int64(sp.GetStartTimeUnixNano())), // #nosec G115 -- nanoseconds since 1970 fit
					End:   time.Unix(0, int64(sp.GetEndTimeUnixNano())),   // #nosec G115
				})
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
}

// Trace returns the spans received so far for the trace id.
func (r *Receiver) Trace(id string) []Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.traces[id])
}

// Services returns the services that sent spans of the trace id, each once.
func (r *Receiver) Services(id string) []string {
	var out []string
	for _, s := range r.Trace(id) {
		if !slices.Contains(out, s.Service) {
			out = append(out, s.Service)
		}
	}
	return out
}
