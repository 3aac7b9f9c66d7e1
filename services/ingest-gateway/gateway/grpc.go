package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/ratelimit"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/recovery"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/validator"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/sources"
	"github.com/brokerflow/brokerflow/pkg/telemetry"
	intakev1 "github.com/brokerflow/brokerflow/proto/brokerflow/intake/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// firstParty is the source the gRPC intake publishes as
// (sources.FirstParty): its leads are persisted on
// webhook.received.lead.first_party, like webhooks of that source. It has no
// route and no verifier: it is never in the HTTP registry, only its subject
// is used.
var firstParty = Source{Name: sources.FirstParty, Kind: webhookv1.Kind_KIND_LEAD}

const (
	// grpcMaxRecvBytes bounds a request; the field limits add up to far less.
	grpcMaxRecvBytes = 64 << 10
	// grpcMinTokenLen rejects tokens short enough to guess.
	grpcMinTokenLen = 16
	// healthRecheck re-reads the NATS status even without a status event
	// (the connection drops events when nobody reads them in time).
	healthRecheck = 5 * time.Second
)

// validateGRPC checks the GATEWAY_GRPC_* settings; Validate calls it.
func (c Config) validateGRPC() error {
	if c.GRPCAddr == "" {
		return nil
	}
	if !(c.GRPCRate > 0) || math.IsInf(c.GRPCRate, 0) {
		return fmt.Errorf("%w: GATEWAY_GRPC_RATE must be a positive number of requests per second", ErrConfig)
	}
	tokens, err := service.Secrets(c.GRPCTokens, c.GRPCTokensFile)
	if err != nil {
		return fmt.Errorf("%w: GATEWAY_GRPC_TOKENS_FILE: %w", ErrConfig, err)
	}
	if len(tokens) == 0 {
		return fmt.Errorf("%w: GATEWAY_GRPC_ADDR is set but no bearer token is: set GATEWAY_GRPC_TOKENS (or _FILE)", ErrConfig)
	}
	for i, t := range tokens {
		if len(t) < grpcMinTokenLen {
			return fmt.Errorf("%w: GATEWAY_GRPC_TOKENS: token %d is shorter than %d characters", ErrConfig, i+1, grpcMinTokenLen)
		}
	}
	return nil
}

// ListenAndServeGRPC serves IntakeService and the gRPC health service on
// GRPCAddr until ctx is done. Run calls it when GRPCAddr is set.
func (g *Gateway) ListenAndServeGRPC(ctx context.Context) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", g.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen GATEWAY_GRPC_ADDR %s: %w", g.cfg.GRPCAddr, err)
	}
	return g.ServeGRPC(ctx, ln)
}

// ServeGRPC serves IntakeService and the gRPC health service on ln, in
// plaintext (terminate TLS in front of it), until ctx is done; then it
// reports NOT_SERVING and stops gracefully within ShutdownTimeout. The
// streams must already be declared.
func (g *Gateway) ServeGRPC(ctx context.Context, ln net.Listener) error {
	return g.serveGRPC(ctx, ln, &intakeServer{g: g})
}

func (g *Gateway) serveGRPC(ctx context.Context, ln net.Listener, intake intakev1.IntakeServiceServer) error {
	srv, hs, err := g.newGRPCServer(intake)
	if err != nil {
		_ = ln.Close()
		return err
	}
	g.log.Info("accepting first-party leads over gRPC", "source", firstParty.Name,
		"method", intakev1.IntakeService_SubmitLead_FullMethodName, "subject", firstParty.Subject(), "addr", ln.Addr().String())
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("serve gRPC on %s: %w", ln.Addr(), err)
		}
		return nil
	})
	eg.Go(func() error {
		g.reportHealth(ctx, hs)
		hs.Shutdown() // NOT_SERVING first, so balancers stop sending
		stopped := make(chan struct{})
		go func() { srv.GracefulStop(); close(stopped) }()
		timer := time.NewTimer(g.cfg.ShutdownTimeout)
		defer timer.Stop()
		select {
		case <-stopped:
		case <-timer.C:
			g.log.Warn("gRPC calls still running at the shutdown timeout; closing them")
			srv.Stop()
			<-stopped
		}
		return nil
	})
	return eg.Wait()
}

// reportHealth keeps the health service at SERVING while NATS is connected
// and NOT_SERVING otherwise, until ctx is done.
func (g *Gateway) reportHealth(ctx context.Context, hs *health.Server) {
	nc := g.deps.NATS
	changed := nc.StatusChanged()
	defer nc.RemoveStatusListener(changed)
	ticker := time.NewTicker(healthRecheck)
	defer ticker.Stop()
	for {
		st := healthpb.HealthCheckResponse_SERVING
		if service.NATSReady(nc)(ctx) != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		hs.SetServingStatus("", st)
		hs.SetServingStatus(intakev1.IntakeService_ServiceDesc.ServiceName, st)
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-ticker.C:
		}
	}
}

// newGRPCServer builds the server with every interceptor, composed here and
// only here, with intake and the health service registered. The health
// service needs no token, is not rate limited and is not logged.
func (g *Gateway) newGRPCServer(intake intakev1.IntakeServiceServer) (*grpc.Server, *health.Server, error) {
	tokens, err := service.Secrets(g.cfg.GRPCTokens, g.cfg.GRPCTokensFile)
	if err != nil {
		return nil, nil, fmt.Errorf("gRPC tokens: %w", err)
	}
	if len(tokens) == 0 {
		return nil, nil, fmt.Errorf("%w: the gRPC intake has no bearer token", ErrConfig)
	}
	burst := max(1, int(math.Ceil(g.cfg.GRPCRate)))
	limiter := rateLimiter{rate.NewLimiter(rate.Limit(g.cfg.GRPCRate), burst)}
	notHealth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName
	})
	logger := slogAdapter(g.log)
	logOpts := []logging.Option{
		// Only the outcome: request payloads hold personal data.
		logging.WithLogOnEvents(logging.FinishCall),
		logging.WithFieldsFromContext(traceFields),
	}
	recoverOpt := recovery.WithRecoveryHandlerContext(func(ctx context.Context, p any) error {
		g.log.ErrorContext(ctx, "gRPC handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		return status.Error(codes.Internal, "internal error")
	})
	checkToken := bearerAuth(tokens)

	srv := grpc.NewServer(
		grpc.StatsHandler(otelgrpc.NewServerHandler(
			otelgrpc.WithTracerProvider(g.deps.TracerProvider),
			otelgrpc.WithPropagators(telemetry.Propagator),
			otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
		)),
		grpc.MaxRecvMsgSize(grpcMaxRecvBytes),
		// Outermost first: the log line sees the final code, a panic
		// anywhere below becomes Internal, no one untrusted reaches the
		// limiter, and only valid requests reach the handler.
		grpc.ChainUnaryInterceptor(
			selector.UnaryServerInterceptor(logging.UnaryServerInterceptor(logger, logOpts...), notHealth),
			recovery.UnaryServerInterceptor(recoverOpt),
			selector.UnaryServerInterceptor(auth.UnaryServerInterceptor(checkToken), notHealth),
			selector.UnaryServerInterceptor(ratelimit.UnaryServerInterceptor(limiter), notHealth),
			validating(validator.UnaryServerInterceptor()),
		),
		grpc.ChainStreamInterceptor(
			selector.StreamServerInterceptor(logging.StreamServerInterceptor(logger, logOpts...), notHealth),
			recovery.StreamServerInterceptor(recoverOpt),
			selector.StreamServerInterceptor(auth.StreamServerInterceptor(checkToken), notHealth),
			selector.StreamServerInterceptor(ratelimit.StreamServerInterceptor(limiter), notHealth),
		),
	)
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	intakev1.RegisterIntakeServiceServer(srv, intake)
	return srv, hs, nil
}

// slogAdapter is the go-grpc-middleware logging adapter for slog; its
// levels are slog's.
func slogAdapter(l *slog.Logger) logging.Logger {
	return logging.LoggerFunc(func(ctx context.Context, lvl logging.Level, msg string, fields ...any) {
		l.Log(ctx, slog.Level(lvl), msg, fields...)
	})
}

// traceFields puts the call's trace id on its log line.
func traceFields(ctx context.Context) logging.Fields {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return logging.Fields{"trace_id", sc.TraceID().String()}
	}
	return nil
}

// bearerAuth accepts "authorization: Bearer <token>" for any of tokens. The
// SHA-256 digests are compared in constant time, so neither a token's bytes
// nor its length leak through timing, and every token is always compared.
func bearerAuth(tokens []string) auth.AuthFunc {
	digests := make([][sha256.Size]byte, len(tokens))
	for i, t := range tokens {
		digests[i] = sha256.Sum256([]byte(t))
	}
	return func(ctx context.Context) (context.Context, error) {
		token, err := auth.AuthFromMD(ctx, "bearer")
		if err != nil {
			return nil, err // already codes.Unauthenticated
		}
		got := sha256.Sum256([]byte(token))
		match := 0
		for i := range digests {
			match |= subtle.ConstantTimeCompare(got[:], digests[i][:])
		}
		if match != 1 {
			return nil, status.Error(codes.Unauthenticated, "the bearer token is not valid")
		}
		return ctx, nil
	}
}

// rateLimiter is the ratelimit interceptor's Limiter: one token bucket for
// the whole server, GRPCRate per second with as large a burst.
type rateLimiter struct{ *rate.Limiter }

var _ ratelimit.Limiter = rateLimiter{}

var errRateLimited = errors.New("the gRPC intake's rate limit (GATEWAY_GRPC_RATE) is reached")

func (l rateLimiter) Limit(context.Context) error {
	if !l.Allow() {
		return errRateLimited
	}
	return nil
}

// validating hands the validator interceptor a SubmitLeadRequest wrapped in
// its Validate method (generated messages cannot carry one), and the
// handler the request itself.
func validating(v grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		r, ok := req.(*intakev1.SubmitLeadRequest)
		if !ok {
			return v(ctx, req, info, handler)
		}
		return v(ctx, submitLeadRequest{r}, info, func(ctx context.Context, _ any) (any, error) {
			return handler(ctx, r)
		})
	}
}

// intakeServer is IntakeService.
type intakeServer struct {
	intakev1.UnimplementedIntakeServiceServer
	g *Gateway
}

// SubmitLead persists the (validated) request as a WebhookReceived of the
// first_party source, with the idempotency key as its delivery id, and
// answers after JetStream's ack.
func (s *intakeServer) SubmitLead(ctx context.Context, req *intakev1.SubmitLeadRequest) (*intakev1.SubmitLeadResponse, error) {
	received := s.g.now()
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(req)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode the lead as JSON: %v", err)
	}
	deliveryID := req.GetIdempotencyKey()
	duplicate, err := s.g.accept(ctx, delivery{
		src:         firstParty,
		id:          deliveryID,
		body:        body,
		received:    received,
		method:      http.MethodPost, // gRPC is an HTTP/2 POST to the method's path
		path:        intakev1.IntakeService_SubmitLead_FullMethodName,
		contentType: "application/json",
		logAttrs:    []any{"system", req.GetSystem()},
	})
	switch {
	case errors.Is(err, errNotPersisted):
		return nil, status.Error(codes.Unavailable, "the lead could not be persisted; retry later with the same idempotency_key")
	case err != nil:
		return nil, status.FromContextError(err).Err()
	}
	return &intakev1.SubmitLeadResponse{DeliveryId: deliveryID, Duplicate: duplicate}, nil
}
