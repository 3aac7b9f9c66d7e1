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
	"math"
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
	"golang.org/x/time/rate"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/opshttp"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/telemetry"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// Deps is what the caller owns.
type Deps = service.Deps

// Gateway serves the webhook routes of its sources.
type Gateway struct {
	cfg  Config
	deps Deps
	js   jetstream.JetStream
	pub  *bus.Publisher
	// commits is the group commit, nil when GroupCommit is off.
	commits  *committer
	registry *Registry
	limiters map[string]*rate.Limiter
	tracer   trace.Tracer
	log      *slog.Logger
	requests *prometheus.CounterVec
	now      func() time.Time
}

// New builds a gateway with the sources configured from cfg
// (ConfiguredSources): the sources file's, and the built-in ones.
func New(cfg Config, deps Deps) (*Gateway, error) {
	sources, err := ConfiguredSources(cfg)
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
	if len(sources) == 0 && cfg.GRPCAddr == "" {
		return nil, errors.New("no source is configured, and no gRPC intake")
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
		limiters: map[string]*rate.Limiter{},
		tracer:   deps.TracerProvider.Tracer("github.com/brokerflow/brokerflow/services/ingest-gateway"),
		log:      deps.Logger.With("service", bus.ServiceGateway),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brokerflow_gateway_requests_total",
			Help: "Webhook requests by source and HTTP status.",
		}, []string{"source", "code"}),
		now: time.Now,
	}
	for _, s := range registry.Sources() {
		if l := newLimiter(s, cfg); l != nil {
			g.limiters[s.Name] = l
		}
	}
	// How full WEBHOOKS (which refuses webhooks when full) and LEADS are,
	// for an alert before either fills.
	collectors := []prometheus.Collector{g.requests, bus.NewStreamUsage(js, g.log, bus.StreamWebhooks, bus.StreamLeads)}
	if cfg.GroupCommit {
		g.commits = newCommitter(js, cfg, g.log)
		collectors = append(collectors, g.commits.metrics.collectors()...)
	}
	if deps.Registerer != nil {
		for _, c := range collectors {
			if err := deps.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register metrics: %w", err)
			}
		}
	}
	return g, nil
}

// Run checks that the WEBHOOKS stream exists (it refuses to start, naming
// the apply command, when it does not: the gateway creates nothing), then
// serves webhooks (and the ops endpoints when OpsAddr is set) until ctx is
// done, then shuts down gracefully: requests in flight finish persisting
// before it returns.
func (g *Gateway) Run(ctx context.Context) error {
	if err := bus.VerifyStream(ctx, g.js, bus.StreamWebhooks); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", g.cfg.Addr, err)
	}
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return g.Serve(ctx, ln) })
	if g.cfg.GRPCAddr != "" {
		eg.Go(func() error { return g.ListenAndServeGRPC(ctx) })
	}
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
	if r.Method == http.MethodGet && src.VerifyToken != "" {
		g.serveHandshake(ctx, w, r, src)
		return
	}
	if r.Method != http.MethodPost {
		allow := http.MethodPost
		if src.VerifyToken != "" {
			allow = "GET, POST"
		}
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "webhooks are POSTed")
		return
	}
	if !src.acceptsContentType(r.Header.Get("Content-Type")) {
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
			fmt.Sprintf("Content-Type %q is not accepted; send %s", r.Header.Get("Content-Type"), strings.Join(src.ContentTypes, " or ")))
		return
	}
	if r.ContentLength > g.cfg.MaxBodyBytes {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", fmt.Sprintf("the body exceeds %d bytes", g.cfg.MaxBodyBytes))
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
	deliveryID, err := src.verify(r, body)
	if err != nil {
		g.log.WarnContext(ctx, "webhook rejected", "source", src.Name, "reason", err.Error())
		writeError(w, http.StatusUnauthorized, "unauthorized", err.Error())
		return
	}
	// The limit counts authenticated requests only, so that a flood of
	// forged ones cannot spend a real provider's allowance.
	if wait, ok := g.allow(src, received); !ok {
		secs := max(1, int(math.Ceil(wait.Seconds())))
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeError(w, http.StatusTooManyRequests, "rate_limited",
			fmt.Sprintf("source %s is over its rate limit; retry after %ds", src.Name, secs))
		return
	}
	if err := src.wellFormed(r.Header.Get("Content-Type"), body); err != nil {
		var bad *errMalformed
		kind := "malformed_body"
		if errors.As(err, &bad) {
			kind = bad.kind
		}
		writeError(w, http.StatusBadRequest, kind, err.Error())
		return
	}
	// Only an id the signature covers may tell deliveries apart. A
	// provider's delivery id in a header of its own (DeliveryIDHeader) is
	// not signed: whoever holds a signed body could replay it under a fresh
	// id as a new lead. So without a signed id, the id is the body's hash:
	// the same body twice is one delivery, and the header is kept among the
	// stored headers, as metadata.
	var logAttrs []any
	if deliveryID == "" {
		sum := sha256.Sum256(body)
		deliveryID = "sha256:" + hex.EncodeToString(sum[:])
		if id := headerDeliveryID(r.Header, src.DeliveryIDHeader); id != "" {
			logAttrs = []any{"provider_delivery_id", id}
		}
	}
	duplicate, err := g.accept(ctx, delivery{
		src:         src,
		id:          deliveryID,
		body:        body,
		received:    received,
		headers:     redactHeaders(r.Header, src.SecretHeaders),
		method:      r.Method,
		path:        r.URL.Path,
		contentType: r.Header.Get("Content-Type"),
		logAttrs:    logAttrs,
	})
	if err != nil {
		// The sender retries with the same delivery id: JetStream stores it once.
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the webhook could not be persisted; retry later")
		return
	}
	code := http.StatusAccepted
	if duplicate {
		code = http.StatusOK
	}
	writeJSON(w, code, Response{Status: "accepted", Source: src.Name, DeliveryID: deliveryID, Duplicate: duplicate})
}

// serveHandshake answers Facebook's verification request: the
// hub.challenge as text when hub.verify_token is the source's, else 403.
func (g *Gateway) serveHandshake(ctx context.Context, w http.ResponseWriter, r *http.Request, src Source) {
	challenge, err := webhooksig.FacebookChallenge(src.VerifyToken, r.URL.Query())
	if err != nil {
		g.log.WarnContext(ctx, "verification handshake refused", "source", src.Name, "reason", err.Error())
		writeError(w, http.StatusForbidden, "forbidden", err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, challenge)
}

// newLimiter is the source's rate limiter, or nil when it has no limit.
func newLimiter(s Source, cfg Config) *rate.Limiter {
	perSecond, burst := cfg.RatePerSource, cfg.RateBurst
	if s.RatePerSecond > 0 {
		perSecond = s.RatePerSecond
	}
	if s.RateBurst > 0 {
		burst = s.RateBurst
	}
	if perSecond <= 0 {
		return nil
	}
	if burst <= 0 {
		burst = max(1, int(math.Ceil(perSecond)))
	}
	return rate.NewLimiter(rate.Limit(perSecond), burst)
}

// allow takes one request from the source's allowance, or says how long
// until there is one.
func (g *Gateway) allow(src Source, now time.Time) (time.Duration, bool) {
	l := g.limiters[src.Name]
	if l == nil {
		return 0, true
	}
	res := l.ReserveN(now, 1)
	if !res.OK() {
		return time.Second, false
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return d, false
	}
	return 0, true
}

// headerDeliveryID is the provider's delivery id from the source's
// DeliveryIDHeader, for the logs: the value itself when it is short and
// plain, else its hash, which is as stable across retries. It is never the
// delivery's id: the signature does not cover it.
func headerDeliveryID(h http.Header, name string) string {
	if name == "" {
		return ""
	}
	v := strings.TrimSpace(h.Get(name))
	switch {
	case v == "":
		return ""
	case webhooksig.ValidDeliveryID(v):
		return v
	}
	sum := sha256.Sum256([]byte(v))
	return "header-sha256:" + hex.EncodeToString(sum[:])
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
func RedactHeaders(h http.Header) []*webhookv1.Header { return redactHeaders(h, nil) }

// redactHeaders is RedactHeaders without the source's own secret headers too.
func redactHeaders(h http.Header, secret []string) []*webhookv1.Header {
	out := make([]*webhookv1.Header, 0, len(h))
	for name, values := range h {
		lower := strings.ToLower(name)
		if isCredential(lower) || slices.ContainsFunc(secret, func(s string) bool { return strings.EqualFold(s, name) }) {
			continue
		}
		out = append(out, &webhookv1.Header{Name: lower, Values: values})
	}
	slices.SortFunc(out, func(a, b *webhookv1.Header) int { return cmp.Compare(a.GetName(), b.GetName()) })
	return out
}

// isCredential reports whether the header named lower (in lower case)
// carries a credential.
func isCredential(lower string) bool {
	if credentialHeaders[lower] {
		return true
	}
	for _, w := range credentialWords {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}
