// Package gateway is the ingest-gateway: it verifies each webhook, persists
// it to JetStream as a WebhookReceived, and only then answers 2xx.
package gateway

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/opshttp"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/telemetry"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// Deps is what the caller owns.
type Deps = service.Deps

// Gateway serves the webhook routes of its sources.
type Gateway struct {
	cfg      Config
	deps     Deps
	js       jetstream.JetStream
	pub      *bus.Publisher
	registry *Registry
	tracer   trace.Tracer
	log      *slog.Logger
	requests *prometheus.CounterVec
	now      func() time.Time
}

// New builds a gateway with the built-in sources configured from cfg.
func New(cfg Config, deps Deps) (*Gateway, error) {
	sources, err := BuiltinSources(cfg)
	if err != nil {
		return nil, err
	}
	return NewWithSources(cfg, deps, sources...)
}

// NewWithSources builds a gateway serving exactly sources.
func NewWithSources(cfg Config, deps Deps, sources ...Source) (*Gateway, error) {
	deps, err := deps.WithDefaults()
	if err != nil {
		return nil, err
	}
	registry, err := NewRegistry(sources...)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(deps.NATS)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	g := &Gateway{
		cfg:      cfg,
		deps:     deps,
		js:       js,
		pub:      bus.NewPublisher(js, bus.ServiceGateway, deps.TracerProvider),
		registry: registry,
		tracer:   deps.TracerProvider.Tracer("github.com/brokerflow/brokerflow/services/ingest-gateway"),
		log:      deps.Logger.With("service", bus.ServiceGateway),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brokerflow_gateway_requests_total",
			Help: "Webhook requests by source and HTTP status.",
		}, []string{"source", "code"}),
		now: time.Now,
	}
	if deps.Registerer != nil {
		if err := deps.Registerer.Register(g.requests); err != nil {
			return nil, fmt.Errorf("register metrics: %w", err)
		}
	}
	return g, nil
}

// Run applies the stream declarations, then serves webhooks (and the ops
// endpoints when OpsAddr is set) until ctx is done, then shuts down
// gracefully: requests in flight finish persisting before it returns.
func (g *Gateway) Run(ctx context.Context) error {
	if err := bus.Apply(ctx, g.js, g.cfg.Bus.Topology()); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", g.cfg.Addr, err)
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return g.Serve(ctx, ln) })
	if g.cfg.OpsAddr != "" {
		eg.Go(func() error {
			h := opshttp.Handler(g.deps.Gatherer, map[string]opshttp.Check{"jetstream": g.Ready})
			return opshttp.ListenAndServe(ctx, g.cfg.OpsAddr, h, g.cfg.ShutdownTimeout)
		})
	}
	return eg.Wait()
}

// Serve serves the webhook routes on ln until ctx is done, then shuts down
// gracefully. Run calls it; the all-in-one binary calls it with its own
// listener. The streams must already be declared.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	for _, s := range g.registry.Sources() {
		g.log.Info("accepting webhooks", "source", s.Name, "route", s.Route, "subject", s.Subject(), "addr", ln.Addr().String())
	}
	return opshttp.Serve(ctx, ln, g.Handler(), g.cfg.ShutdownTimeout)
}

// Ready reports whether the gateway can persist: NATS is connected and the
// WEBHOOKS stream answers.
func (g *Gateway) Ready(ctx context.Context) error {
	if err := service.NATSReady(g.deps.NATS)(ctx); err != nil {
		return err
	}
	if _, err := g.js.Stream(ctx, bus.StreamWebhooks); err != nil {
		return fmt.Errorf("stream %s: %w", bus.StreamWebhooks, err)
	}
	return nil
}

// Sources lists the configured sources.
func (g *Gateway) Sources() []Source { return g.registry.Sources() }

// Handler serves every source's route; anything else gets a JSON 404.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, s := range g.registry.Sources() {
		mux.Handle(s.Route, g.webhookHandler(s))
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "unknown_source", fmt.Sprintf("no source is configured at %s", r.URL.Path))
	})
	return mux
}

// Response is the JSON body of every answer.
type Response struct {
	Status     string `json:"status,omitempty"`
	Error      string `json:"error,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Source     string `json:"source,omitempty"`
	DeliveryID string `json:"delivery_id,omitempty"`
	Duplicate  bool   `json:"duplicate,omitempty"`
}

func writeJSON(w http.ResponseWriter, code int, body Response) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func writeError(w http.ResponseWriter, code int, kind, reason string) {
	writeJSON(w, code, Response{Error: kind, Reason: reason})
}

// statusRecorder keeps the status for the request metric.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (g *Gateway) webhookHandler(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := telemetry.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := g.tracer.Start(ctx, r.Method+" "+src.Route,
			trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("brokerflow.source", src.Name)))
		defer span.End()
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		g.serveWebhook(ctx, rec, r, src)
		g.requests.WithLabelValues(src.Name, strconv.Itoa(rec.code)).Inc()
		span.SetAttributes(attribute.Int("http.response.status_code", rec.code))
	})
}

func (g *Gateway) serveWebhook(ctx context.Context, w http.ResponseWriter, r *http.Request, src Source) {
	received := g.now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "webhooks are POSTed")
		return
	}
	if !src.acceptsContentType(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
			fmt.Sprintf("Content-Type %q is not accepted; send %s", r.Header.Get("Content-Type"), strings.Join(src.ContentTypes, " or ")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body exceeds %d bytes", tooBig.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "unreadable_body", "the body could not be read")
		return
	}
	deliveryID, err := src.verify(r.Header, body)
	if err != nil {
		g.log.WarnContext(ctx, "webhook rejected", "source", src.Name, "reason", err.Error())
		writeError(w, http.StatusUnauthorized, "unauthorized", err.Error())
		return
	}
	if src.JSON && !json.Valid(body) {
		writeError(w, http.StatusBadRequest, "malformed_json", "the body is not well-formed JSON")
		return
	}
	if deliveryID == "" {
		sum := sha256.Sum256(body)
		deliveryID = "sha256:" + hex.EncodeToString(sum[:])
	}
	event := &webhookv1.WebhookReceived{
		Body:        body,
		Source:      src.Name,
		Kind:        src.Kind,
		DeliveryId:  deliveryID,
		ReceivedAt:  timestamppb.New(received),
		Headers:     RedactHeaders(r.Header),
		Method:      r.Method,
		Path:        r.URL.Path,
		ContentType: r.Header.Get("Content-Type"),
	}
	pctx, cancel := context.WithTimeout(ctx, g.cfg.PublishTimeout)
	defer cancel()
	ack, err := g.pub.Publish(pctx, src.Subject(), MsgID(src.Name, deliveryID), event)
	if err != nil {
		g.log.ErrorContext(ctx, "cannot persist webhook; answering 503 so the provider retries", "source", src.Name, "err", err)
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the webhook could not be persisted; retry later")
		return
	}
	code := http.StatusAccepted
	if ack.Duplicate {
		code = http.StatusOK
	}
	writeJSON(w, code, Response{Status: "accepted", Source: src.Name, DeliveryID: deliveryID, Duplicate: ack.Duplicate})
}

// MsgID is the Nats-Msg-Id of a webhook: a provider retry of the same
// delivery gets the same id, and JetStream stores it once.
func MsgID(source, deliveryID string) string {
	return "webhook:" + source + ":" + deliveryID
}

// credentialHeaders are dropped whatever their value; headers whose names
// contain credentialWords are dropped too. Signatures are kept: they are not
// secrets, and they let a stored webhook be verified again.
var (
	credentialHeaders = map[string]bool{
		"authorization": true, "proxy-authorization": true, "cookie": true, "set-cookie": true,
		"x-api-key": true, "api-key": true, "x-auth-token": true,
	}
	credentialWords = []string{"token", "secret", "password", "passwd", "apikey", "api-key", "api_key", "credential", "session"}
)

// RedactHeaders returns the request headers without credentials, sorted by name.
func RedactHeaders(h http.Header) []*webhookv1.Header {
	out := make([]*webhookv1.Header, 0, len(h))
	for name, values := range h {
		if isCredential(name) {
			continue
		}
		out = append(out, &webhookv1.Header{Name: strings.ToLower(name), Values: values})
	}
	slices.SortFunc(out, func(a, b *webhookv1.Header) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return out
}

func isCredential(name string) bool {
	n := strings.ToLower(name)
	if credentialHeaders[n] {
		return true
	}
	for _, w := range credentialWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}
