package gateway_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging/logtest"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	intakev1 "github.com/brokerflow/brokerflow/proto/brokerflow/intake/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

const (
	grpcToken    = "current-grpc-token-0123456789"
	grpcOldToken = "previous-grpc-token-9876543210"
	// firstPartySubject is where a submitted lead is persisted.
	firstPartySubject = "webhook.received.lead.first_party"
)

func grpcConfig() gateway.Config {
	c := testConfig()
	c.GRPCAddr = "127.0.0.1:0"
	c.GRPCTokens = []string{grpcOldToken, grpcToken}
	c.GRPCRate = 1000
	return c
}

type grpcEnv struct {
	srv    *natstest.Server
	g      *gateway.Gateway
	js     jetstream.JetStream
	logs   *logtest.Buffer
	client intakev1.IntakeServiceClient
	health healthpb.HealthClient
}

// startGRPC serves the gateway's gRPC side on a loopback port against a real
// embedded JetStream; intake, when not nil, replaces the real IntakeService
// behind the same interceptors.
func startGRPC(t *testing.T, cfg gateway.Config, intake intakev1.IntakeServiceServer) *grpcEnv {
	t.Helper()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	natstest.Apply(t, js, testTopology())
	logs := &logtest.Buffer{}
	g, err := gateway.New(cfg, service.Deps{NATS: nc, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, func(ctx context.Context) error {
		if intake != nil {
			return g.ServeGRPCWith(ctx, ln, intake)
		}
		return g.ServeGRPC(ctx, ln)
	})
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &grpcEnv{srv: s, g: g, js: js, logs: logs, client: intakev1.NewIntakeServiceClient(conn), health: healthpb.NewHealthClient(conn)}
}

func (e *grpcEnv) stored(t *testing.T) int {
	t.Helper()
	return len(natstest.All(t, e.js, bus.StreamWebhooks, ">"))
}

// withToken is a call context carrying "authorization: Bearer <token>".
func withToken(t *testing.T, token string) context.Context {
	t.Helper()
	return metadata.AppendToOutgoingContext(natstest.Context(t, 20*time.Second), "authorization", "Bearer "+token)
}

func validLead(key string) *intakev1.SubmitLeadRequest {
	return &intakev1.SubmitLeadRequest{
		System:         "open-house-app",
		IdempotencyKey: key,
		Contact: &intakev1.Contact{
			FirstName: "Ada", LastName: "Lovelace", Email: "ada@example.com", Phone: "+1 415 555 0134",
		},
		Message:     "Loved the kitchen; can we talk about an offer?",
		InquiryType: "buy",
		Property: &intakev1.Property{
			Address: "1 Market St", City: "San Francisco", State: "CA", PostalCode: "94105",
			MlsNumber: "ML81234567", Price: "850000.50", Url: "https://brokerage.example/listings/ML81234567",
		},
		Agent: &intakev1.Agent{Name: "Grace Hopper", Email: "grace@brokerage.example", Id: "agent-7"},
		Campaign: &intakev1.Campaign{
			UtmSource: "open-house", UtmMedium: "tablet", UtmCampaign: "spring-2026",
			PageUrl: "https://brokerage.example/open-house",
		},
	}
}

func wantCode(t *testing.T, err error, want codes.Code) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != want {
		t.Fatalf("code = %v (%q), want %v", st.Code(), st.Message(), want)
	}
	return st
}

func TestIntakeService_persistsALeadBeforeAnswering(t *testing.T) {
	t.Parallel()
	e := startGRPC(t, grpcConfig(), nil)
	req := validLead("open-house-app:visit-1")
	// A caller's trace continues through the stored event.
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(withToken(t, grpcToken), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")

	resp, err := e.client.SubmitLead(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetDeliveryId() != "open-house-app:visit-1" || resp.GetDuplicate() {
		t.Fatalf("response = %v", resp)
	}
	// The answer came after the persisted ack: the message is there now.
	if n := e.stored(t); n != 1 {
		t.Fatalf("WEBHOOKS holds %d messages, want 1", n)
	}
	msg := natstest.Last(t, e.js, bus.StreamWebhooks, firstPartySubject)
	var got webhookv1.WebhookReceived
	if err := proto.Unmarshal(msg.Data, &got); err != nil {
		t.Fatal(err)
	}
	if got.GetSource() != "first_party" || got.GetKind() != webhookv1.Kind_KIND_LEAD || got.GetDeliveryId() != "open-house-app:visit-1" ||
		got.GetContentType() != "application/json" || got.GetReceivedAt() == nil || len(got.GetHeaders()) != 0 ||
		got.GetPath() != intakev1.IntakeService_SubmitLead_FullMethodName {
		t.Fatalf("stored event = %v", &got)
	}
	// The body is the request as protojson with the proto field names.
	var body intakev1.SubmitLeadRequest
	if err := protojson.Unmarshal(got.GetBody(), &body); err != nil {
		t.Fatalf("body is not protojson: %v: %s", err, got.GetBody())
	}
	if !proto.Equal(&body, req) {
		t.Fatalf("body = %v, want %v", &body, req)
	}
	for _, name := range []string{`"idempotency_key"`, `"inquiry_type"`, `"mls_number"`, `"utm_source"`} {
		if !bytes.Contains(got.GetBody(), []byte(name)) {
			t.Errorf("body has no %s: %s", name, got.GetBody())
		}
	}
	if id := msg.Header.Get("Nats-Msg-Id"); id != "webhook:first_party:open-house-app:visit-1" {
		t.Errorf("Nats-Msg-Id = %q", id)
	}
	if tp := msg.Header.Get("traceparent"); !strings.Contains(tp, traceID) {
		t.Errorf("traceparent = %q, want the caller's trace %s", tp, traceID)
	}
	if msg.Header.Get("authorization") != "" || msg.Header.Get("Authorization") != "" {
		t.Error("the bearer token reached NATS")
	}
	// One log line for the call, through slog, without the lead's personal data.
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"finished call"`) || !strings.Contains(logs, `"grpc.method":"SubmitLead"`) ||
		!strings.Contains(logs, `"grpc.code":"OK"`) || !strings.Contains(logs, `"trace_id":"`+traceID+`"`) {
		t.Errorf("no finished-call log line with the code and trace id:\n%s", logs)
	}
	if strings.Contains(logs, "ada@example.com") || strings.Contains(logs, grpcToken) {
		t.Errorf("the log holds personal data or the token:\n%s", logs)
	}
}

func TestIntakeService_sameIdempotencyKeyIsStoredOnce(t *testing.T) {
	t.Parallel()
	e := startGRPC(t, grpcConfig(), nil)
	first, err := e.client.SubmitLead(withToken(t, grpcToken), validLead("crm:42"))
	if err != nil || first.GetDuplicate() {
		t.Fatalf("first = %v, %v", first, err)
	}
	// A retry, with the other valid token, and even with a changed body:
	// the key alone makes it the same lead.
	retry := validLead("crm:42")
	retry.Message = "a retry after a timeout"
	for _, token := range []string{grpcToken, grpcOldToken} {
		again, err := e.client.SubmitLead(withToken(t, token), retry)
		if err != nil || !again.GetDuplicate() || again.GetDeliveryId() != "crm:42" {
			t.Fatalf("retry = %v, %v; want duplicate", again, err)
		}
	}
	if n := e.stored(t); n != 1 {
		t.Fatalf("WEBHOOKS holds %d messages, want 1", n)
	}
	// A different key is a different lead.
	if other, err := e.client.SubmitLead(withToken(t, grpcToken), validLead("crm:43")); err != nil || other.GetDuplicate() {
		t.Fatalf("other = %v, %v", other, err)
	}
	if n := e.stored(t); n != 2 {
		t.Fatalf("WEBHOOKS holds %d messages, want 2", n)
	}
}

func TestIntakeService_rejectsCallersWithoutAValidToken(t *testing.T) {
	t.Parallel()
	e := startGRPC(t, grpcConfig(), nil)
	invalid := validLead("")
	type authCase struct {
		md  []string
		req *intakev1.SubmitLeadRequest
	}
	cases := map[string]authCase{
		"no_token":          {nil, validLead("k1")},
		"wrong_token":       {[]string{"authorization", "Bearer not-a-configured-token"}, validLead("k2")},
		"token_prefix":      {[]string{"authorization", "Bearer " + grpcToken[:len(grpcToken)-1]}, validLead("k3")},
		"token_with_suffix": {[]string{"authorization", "Bearer " + grpcToken + "x"}, validLead("k4")},
		"empty_bearer":      {[]string{"authorization", "Bearer "}, validLead("k5")},
		"basic_scheme":      {[]string{"authorization", "Basic " + grpcToken}, validLead("k6")},
		"bare_token":        {[]string{"authorization", grpcToken}, validLead("k7")},
		// Authentication comes before validation: a stranger learns nothing.
		"invalid_request_without_token": {nil, invalid},
	}
	t.Run("cases", func(t *testing.T) {
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				ctx := natstest.Context(t, 20*time.Second)
				if tc.md != nil {
					ctx = metadata.AppendToOutgoingContext(ctx, tc.md...)
				}
				_, err := e.client.SubmitLead(ctx, tc.req)
				wantCode(t, err, codes.Unauthenticated)
			})
		}
	})
	if n := e.stored(t); n != 0 {
		t.Errorf("WEBHOOKS holds %d messages, want none", n)
	}
}

func TestIntakeService_rejectsInvalidRequestsNamingTheField(t *testing.T) {
	t.Parallel()
	e := startGRPC(t, grpcConfig(), nil)
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := map[string]struct {
		edit  func(r *intakev1.SubmitLeadRequest)
		field []string
	}{
		"missing_idempotency_key":    {func(r *intakev1.SubmitLeadRequest) { r.IdempotencyKey = "" }, []string{"idempotency_key: required"}},
		"idempotency_key_too_long":   {func(r *intakev1.SubmitLeadRequest) { r.IdempotencyKey = long(129) }, []string{"idempotency_key"}},
		"idempotency_key_with_slash": {func(r *intakev1.SubmitLeadRequest) { r.IdempotencyKey = "a/b" }, []string{"idempotency_key"}},
		"idempotency_key_with_space": {func(r *intakev1.SubmitLeadRequest) { r.IdempotencyKey = "a b" }, []string{"idempotency_key"}},
		"missing_system":             {func(r *intakev1.SubmitLeadRequest) { r.System = "" }, []string{"system: required"}},
		"system_upper_case":          {func(r *intakev1.SubmitLeadRequest) { r.System = "OpenHouse" }, []string{"system"}},
		"system_too_long":            {func(r *intakev1.SubmitLeadRequest) { r.System = long(65) }, []string{"system"}},
		"no_contact":                 {func(r *intakev1.SubmitLeadRequest) { r.Contact = nil }, []string{"contact.email or contact.phone"}},
		"blank_email_and_no_phone": {func(r *intakev1.SubmitLeadRequest) {
			r.Contact = &intakev1.Contact{FullName: "Ada Lovelace", Email: "  "}
		}, []string{"contact.email or contact.phone"}},
		"inquiry_type_unknown":     {func(r *intakev1.SubmitLeadRequest) { r.InquiryType = "lease" }, []string{"inquiry_type"}},
		"inquiry_type_capitalized": {func(r *intakev1.SubmitLeadRequest) { r.InquiryType = "Buy" }, []string{"inquiry_type"}},
		"price_with_symbols":       {func(r *intakev1.SubmitLeadRequest) { r.Property.Price = "$850,000" }, []string{"property.price"}},
		"price_exponent":           {func(r *intakev1.SubmitLeadRequest) { r.Property.Price = "8.5e5" }, []string{"property.price"}},
		"price_negative":           {func(r *intakev1.SubmitLeadRequest) { r.Property.Price = "-1" }, []string{"property.price"}},
		"price_fraction_of_cents":  {func(r *intakev1.SubmitLeadRequest) { r.Property.Price = "850000.505" }, []string{"property.price"}},
		"first_name_too_long":      {func(r *intakev1.SubmitLeadRequest) { r.Contact.FirstName = long(201) }, []string{"contact.first_name"}},
		"email_too_long":           {func(r *intakev1.SubmitLeadRequest) { r.Contact.Email = long(250) + "@x.io" }, []string{"contact.email"}},
		"phone_too_long":           {func(r *intakev1.SubmitLeadRequest) { r.Contact.Phone = long(33) }, []string{"contact.phone"}},
		"message_too_long":         {func(r *intakev1.SubmitLeadRequest) { r.Message = long(5001) }, []string{"message"}},
		"address_too_long":         {func(r *intakev1.SubmitLeadRequest) { r.Property.Address = long(301) }, []string{"property.address"}},
		"agent_email_too_long":     {func(r *intakev1.SubmitLeadRequest) { r.Agent.Email = long(255) }, []string{"agent.email"}},
		"page_url_too_long":        {func(r *intakev1.SubmitLeadRequest) { r.Campaign.PageUrl = long(2049) }, []string{"campaign.page_url"}},
		"utm_campaign_too_long":    {func(r *intakev1.SubmitLeadRequest) { r.Campaign.UtmCampaign = long(201) }, []string{"campaign.utm_campaign"}},
		"every_error_at_once": {func(r *intakev1.SubmitLeadRequest) {
			r.IdempotencyKey, r.System, r.Contact, r.InquiryType = "", "", nil, "lease"
		}, []string{"idempotency_key", "system", "contact", "inquiry_type"}},
	}
	t.Run("cases", func(t *testing.T) {
		for name, tc := range cases {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				req := validLead("valid-key-" + name)
				tc.edit(req)
				_, err := e.client.SubmitLead(withToken(t, grpcToken), req)
				st := wantCode(t, err, codes.InvalidArgument)
				for _, f := range tc.field {
					if !strings.Contains(st.Message(), f) {
						t.Errorf("message %q does not name %q", st.Message(), f)
					}
				}
				if strings.Contains(st.Message(), "xxxxxxxx") {
					t.Errorf("message %q repeats the value", st.Message())
				}
			})
		}
	})
	if n := e.stored(t); n != 0 {
		t.Errorf("WEBHOOKS holds %d messages, want none", n)
	}
}

func TestIntakeService_acceptsTheEdgesOfTheRules(t *testing.T) {
	t.Parallel()
	e := startGRPC(t, grpcConfig(), nil)
	for name, edit := range map[string]func(r *intakev1.SubmitLeadRequest){
		"phone_only": func(r *intakev1.SubmitLeadRequest) { r.Contact.Email = "" },
		"email_only": func(r *intakev1.SubmitLeadRequest) { r.Contact.Phone = "" },
		"minimal": func(r *intakev1.SubmitLeadRequest) {
			r.Property, r.Agent, r.Campaign, r.Message, r.InquiryType = nil, nil, nil, "", ""
		},
		"whole_dollars":       func(r *intakev1.SubmitLeadRequest) { r.Property.Price = "850000" },
		"sell":                func(r *intakev1.SubmitLeadRequest) { r.InquiryType = "sell" },
		"rent":                func(r *intakev1.SubmitLeadRequest) { r.InquiryType = "rent" },
		"longest_key":         func(r *intakev1.SubmitLeadRequest) { r.IdempotencyKey = "Az09._:-" + strings.Repeat("k", 120) },
		"non_ascii_long_name": func(r *intakev1.SubmitLeadRequest) { r.Contact.FullName = strings.Repeat("é", 200) },
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			req := validLead("edge-" + strings.ReplaceAll(name, "_", "-"))
			edit(req)
			resp, err := e.client.SubmitLead(withToken(t, grpcToken), req)
			if err != nil || resp.GetDuplicate() || resp.GetDeliveryId() != req.GetIdempotencyKey() {
				t.Fatalf("SubmitLead = %v, %v", resp, err)
			}
		})
	}
}

func TestIntakeService_rateLimited(t *testing.T) {
	t.Parallel()
	cfg := grpcConfig()
	cfg.GRPCRate = 0.001 // a burst of one, then one call every 1000s
	e := startGRPC(t, cfg, nil)
	if _, err := e.client.SubmitLead(withToken(t, grpcToken), validLead("rate-1")); err != nil {
		t.Fatal(err)
	}
	_, err := e.client.SubmitLead(withToken(t, grpcToken), validLead("rate-2"))
	wantCode(t, err, codes.ResourceExhausted)
	if n := e.stored(t); n != 1 {
		t.Fatalf("WEBHOOKS holds %d messages, want 1", n)
	}
	// The health service is not limited.
	for range 3 {
		resp, err := e.health.Check(natstest.Context(t, 10*time.Second), &healthpb.HealthCheckRequest{})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health = %v, %v", resp, err)
		}
	}
}

func TestIntakeService_healthFollowsNATS(t *testing.T) {
	t.Parallel()
	e := startGRPC(t, grpcConfig(), nil)
	check := func(svc string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		// No token: probes need none.
		resp, err := e.health.Check(natstest.Context(t, 10*time.Second), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatalf("health check %q: %v", svc, err)
		}
		return resp.GetStatus()
	}
	for _, svc := range []string{"", intakev1.IntakeService_ServiceDesc.ServiceName} {
		if st := check(svc); st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q = %v, want SERVING", svc, st)
		}
	}

	// JetStream goes away: the health service says so, and a lead gets
	// Unavailable so that the caller retries.
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	natstest.Eventually(t, 10*time.Second, "health NOT_SERVING", func() bool {
		return check("") == healthpb.HealthCheckResponse_NOT_SERVING
	})
	_, err := e.client.SubmitLead(withToken(t, grpcToken), validLead("while-down"))
	wantCode(t, err, codes.Unavailable)
}

// panickingIntake is an IntakeService whose handler panics.
type panickingIntake struct {
	intakev1.UnimplementedIntakeServiceServer
}

func (panickingIntake) SubmitLead(context.Context, *intakev1.SubmitLeadRequest) (*intakev1.SubmitLeadResponse, error) {
	panic("deliberate test panic")
}

func TestIntakeService_recoversFromAPanic(t *testing.T) {
	t.Parallel()
	e := startGRPC(t, grpcConfig(), panickingIntake{})
	for i := range 2 { // the server survives the first
		_, err := e.client.SubmitLead(withToken(t, grpcToken), validLead("panic"))
		st := wantCode(t, err, codes.Internal)
		if strings.Contains(st.Message(), "deliberate") || strings.Contains(st.Message(), "goroutine") {
			t.Fatalf("call %d: the panic leaked to the caller: %q", i, st.Message())
		}
	}
	resp, err := e.health.Check(natstest.Context(t, 10*time.Second), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after panics = %v, %v", resp, err)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "gRPC handler panicked") || !strings.Contains(logs, "deliberate test panic") ||
		!strings.Contains(logs, `"grpc.code":"Internal"`) {
		t.Errorf("the panic was not logged with its stack and code:\n%s", logs)
	}
}

func TestConfigFromEnv_grpc(t *testing.T) {
	t.Parallel()
	idx := "GATEWAY_IDX_SECRETS=" + secret
	cfg, err := gateway.ConfigFromEnv([]string{idx})
	if err != nil || cfg.GRPCAddr != "" || cfg.GRPCRate != 50 {
		t.Fatalf("defaults = %+v, %v; want gRPC off at 50/s", cfg, err)
	}
	file := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(file, []byte("# rotated 2026-11\n"+grpcToken+"\n"+grpcOldToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, environ := range map[string][]string{
		"inline_tokens": {idx, "GATEWAY_GRPC_ADDR=127.0.0.1:9443", "GATEWAY_GRPC_TOKENS=" + grpcToken + "," + grpcOldToken},
		"tokens_file":   {idx, "GATEWAY_GRPC_ADDR=127.0.0.1:9443", "GATEWAY_GRPC_TOKENS_FILE=" + file, "GATEWAY_GRPC_RATE=2.5"},
	} {
		if _, err := gateway.ConfigFromEnv(environ); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	for name, tc := range map[string]struct {
		environ []string
		want    string
	}{
		"no_token":      {[]string{idx, "GATEWAY_GRPC_ADDR=127.0.0.1:9443"}, "GATEWAY_GRPC_TOKENS"},
		"blank_token":   {[]string{idx, "GATEWAY_GRPC_ADDR=127.0.0.1:9443", "GATEWAY_GRPC_TOKENS= "}, "GATEWAY_GRPC_TOKENS"},
		"short_token":   {[]string{idx, "GATEWAY_GRPC_ADDR=127.0.0.1:9443", "GATEWAY_GRPC_TOKENS=" + grpcToken + ",short"}, "token 2 is shorter"},
		"missing_file":  {[]string{idx, "GATEWAY_GRPC_ADDR=127.0.0.1:9443", "GATEWAY_GRPC_TOKENS_FILE=/nonexistent/tokens"}, "GATEWAY_GRPC_TOKENS_FILE"},
		"zero_rate":     {[]string{idx, "GATEWAY_GRPC_ADDR=127.0.0.1:9443", "GATEWAY_GRPC_TOKENS=" + grpcToken, "GATEWAY_GRPC_RATE=0"}, "GATEWAY_GRPC_RATE"},
		"negative_rate": {[]string{idx, "GATEWAY_GRPC_ADDR=127.0.0.1:9443", "GATEWAY_GRPC_TOKENS=" + grpcToken, "GATEWAY_GRPC_RATE=-1"}, "GATEWAY_GRPC_RATE"},
	} {
		_, err := gateway.ConfigFromEnv(tc.environ)
		if !errors.Is(err, gateway.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrConfig naming %s", name, err, tc.want)
		}
	}
}

func TestGateway_runServesGRPCWhenConfigured(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	natstest.Apply(t, js, testTopology())
	// Reserve a free port, then give it to the gateway.
	var lc net.ListenConfig
	probe, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	_ = probe.Close()
	cfg := grpcConfig()
	cfg.GRPCAddr = addr
	g, err := gateway.New(cfg, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, g.Run)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := intakev1.NewIntakeServiceClient(conn)
	natstest.Eventually(t, 20*time.Second, "Run serves SubmitLead", func() bool {
		resp, err := client.SubmitLead(withToken(t, grpcToken), validLead("via-run"))
		return err == nil && resp.GetDeliveryId() == "via-run"
	})
}

// A gateway for the brokerage's own systems only: gRPC intake and no
// webhook source. It starts, answers every webhook path with a JSON 404,
// and persists a SubmitLead.
func TestGateway_grpcIntakeWithoutWebhookSources(t *testing.T) {
	t.Parallel()
	cfg, err := gateway.ConfigFromEnv([]string{"GATEWAY_GRPC_ADDR=127.0.0.1:0", "GATEWAY_GRPC_TOKENS=" + grpcToken})
	if err != nil {
		t.Fatalf("gRPC alone must be a valid configuration: %v", err)
	}
	e := startGRPC(t, cfg, nil)
	if _, err := e.client.SubmitLead(withToken(t, grpcToken), validLead("only-grpc-1")); err != nil {
		t.Fatal(err)
	}
	if n := e.stored(t); n != 1 {
		t.Fatalf("%d messages stored, want 1", n)
	}
	if _, err := gateway.ConfigFromEnv(nil); err == nil {
		t.Fatal("no webhook source and no gRPC must still be an error")
	}
}
