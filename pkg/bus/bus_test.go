package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

const testService = "testsvc"

var testSpec = bus.ConsumerSpec{
	Service:        testService,
	Stream:         bus.StreamLeads,
	Durable:        testService,
	FilterSubjects: []string{"lead.normalized.>"},
	MaxAckPending:  16,
}

func testTopology() bus.Topology {
	return bus.Topology{
		Replicas:        1,
		DuplicateWindow: time.Minute,
		AckWait:         time.Second,
		MaxDeliver:      3,
	}
}

func fastPolicy() bus.Policy {
	return bus.Policy{Schedule: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}}
}

type env struct {
	js    jetstream.JetStream
	pub   *bus.Publisher
	topo  bus.Topology
	hooks *bus.TestHooks
}

func setup(t *testing.T) *env {
	t.Helper()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx := natstest.Context(t, 30*time.Second)
	topo := testTopology()
	if err := bus.Apply(ctx, js, topo); err != nil {
		t.Fatal(err)
	}
	for _, spec := range []bus.ConsumerSpec{testSpec, bus.RedriveConsumer(testService)} {
		if err := bus.ApplyConsumer(ctx, js, topo, spec); err != nil {
			t.Fatal(err)
		}
	}
	return &env{js: js, pub: bus.NewPublisher(js, "test-producer", sdktrace.NewTracerProvider()), topo: topo, hooks: &bus.TestHooks{}}
}

// run starts a runner with h and stops it at cleanup.
func (e *env) run(t *testing.T, h bus.Handler, opts ...bus.HandlerOption) {
	t.Helper()
	e.runWith(t, bus.RunnerOptions{Policy: fastPolicy()}, h, opts...)
}

// runWith is run with runner options; the service, its consumer and the
// hooks are the env's.
func (e *env) runWith(t *testing.T, ro bus.RunnerOptions, h bus.Handler, opts ...bus.HandlerOption) {
	t.Helper()
	ro.Service, ro.Consumers, ro.Hooks = testService, []bus.ConsumerSpec{testSpec}, e.hooks
	r, err := bus.NewRunner(e.js, ro)
	if err != nil {
		t.Fatal(err)
	}
	r.Handle(testSpec, h, opts...)
	natstest.Run(t, r.Run)
}

func (e *env) publish(t *testing.T, id string) uint64 {
	t.Helper()
	ack, err := e.pub.Publish(natstest.Context(t, 10*time.Second), "lead.normalized.idx", id, &commonv1.Correlation{LeadId: id})
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func (e *env) failures(t *testing.T) []*opsv1.Failure {
	t.Helper()
	var out []*opsv1.Failure
	for _, m := range natstest.All(t, e.js, bus.StreamOps, bus.FailureSubject(testService)) {
		var f opsv1.Failure
		if err := proto.Unmarshal(m.Data(), &f); err != nil {
			t.Fatal(err)
		}
		out = append(out, &f)
	}
	return out
}

// calls records each handler invocation.
type calls struct {
	mu   sync.Mutex
	seen []*bus.Message
}

func (c *calls) add(m *bus.Message) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen = append(c.seen, m)
	return len(c.seen)
}

func (c *calls) all() []*bus.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seen)
}

func (c *calls) count() int { return len(c.all()) }

func TestApply_isIdempotentAndUsesLimitsRetention(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := natstest.Context(t, 30*time.Second)
	if err := bus.Apply(ctx, e.js, e.topo); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	for _, spec := range bus.Streams {
		s, err := e.js.Stream(ctx, spec.Name)
		if err != nil {
			t.Fatalf("stream %s: %v", spec.Name, err)
		}
		cfg := s.CachedInfo().Config
		if cfg.Retention != jetstream.LimitsPolicy || cfg.Storage != jetstream.FileStorage {
			t.Errorf("stream %s: retention %v storage %v, want limits and file", spec.Name, cfg.Retention, cfg.Storage)
		}
		if cfg.Duplicates != e.topo.DuplicateWindow {
			t.Errorf("stream %s: duplicate window %s, want %s", spec.Name, cfg.Duplicates, e.topo.DuplicateWindow)
		}
		// The gateway group-commits webhooks as atomic batches.
		if want := spec.Name == bus.StreamWebhooks; cfg.AllowAtomicPublish != want {
			t.Errorf("stream %s: atomic publish %v, want %v", spec.Name, cfg.AllowAtomicPublish, want)
		}
	}
	for _, c := range bus.AllConsumers() {
		info, err := e.js.Consumer(ctx, c.Stream, c.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", c.Durable, err)
		}
		cfg := info.CachedInfo().Config
		if cfg.AckPolicy != jetstream.AckExplicitPolicy || cfg.MaxAckPending != c.MaxAckPending || cfg.MaxDeliver != e.topo.MaxDeliver {
			t.Errorf("consumer %s: ack %v max ack pending %d max deliver %d", c.Durable, cfg.AckPolicy, cfg.MaxAckPending, cfg.MaxDeliver)
		}
	}
	for _, b := range bus.Buckets {
		if _, err := e.js.KeyValue(ctx, b.Name); err != nil {
			t.Errorf("bucket %s: %v", b.Name, err)
		}
	}
}

func TestTopology_Validate(t *testing.T) {
	t.Parallel()
	bad := map[string]func(*bus.Topology){
		"replicas_zero":       func(tp *bus.Topology) { tp.Replicas = 0 },
		"no_dedup_window":     func(tp *bus.Topology) { tp.DuplicateWindow = 0 },
		"age_below_window":    func(tp *bus.Topology) { tp.MaxAge = time.Minute; tp.DuplicateWindow = time.Hour },
		"ack_wait_too_short":  func(tp *bus.Topology) { tp.AckWait = time.Millisecond },
		"max_deliver_is_zero": func(tp *bus.Topology) { tp.MaxDeliver = 0 },
	}
	for name, edit := range bad {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tp := bus.DefaultTopology()
			edit(&tp)
			if err := tp.Validate(); !errors.Is(err, bus.ErrInvalidTopology) {
				t.Fatalf("Validate = %v, want ErrInvalidTopology", err)
			}
		})
	}
	if err := bus.DefaultTopology().Validate(); err != nil {
		t.Fatalf("default topology: %v", err)
	}
}

var traceparentRe = regexp.MustCompile(`^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$`)

func TestPublisher_setsExactlyTheContractHeaders(t *testing.T) {
	t.Parallel()
	e := setup(t)
	seq := e.publish(t, "lead.normalized:ld_1")
	ctx := natstest.Context(t, 10*time.Second)
	s, err := e.js.Stream(ctx, bus.StreamLeads)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := s.GetMsg(ctx, seq)
	if err != nil {
		t.Fatal(err)
	}
	// A direct get adds the server's own Nats-Stream, Nats-Subject,
	// Nats-Sequence and Nats-Time-Stamp; they are not stored with the message.
	added := map[string]bool{"Nats-Stream": true, "Nats-Subject": true, "Nats-Sequence": true, "Nats-Time-Stamp": true}
	var keys []string
	for k := range msg.Header {
		if !added[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	want := []string{"Content-Type", "Nats-Msg-Id", "ce-id", "ce-source", "ce-specversion", "ce-time", "ce-type", "traceparent", "tracestate"}
	if !slices.Equal(keys, want) {
		t.Fatalf("headers = %v, want exactly %v", keys, want)
	}
	h := msg.Header
	checks := map[string]string{
		"Nats-Msg-Id":    "lead.normalized:ld_1",
		"ce-id":          "lead.normalized:ld_1",
		"Content-Type":   "application/protobuf",
		"ce-specversion": "1.0",
		"ce-source":      "test-producer",
		"ce-type":        "brokerflow.common.v1.Correlation",
	}
	for k, v := range checks {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if !traceparentRe.MatchString(h.Get("traceparent")) {
		t.Errorf("traceparent = %q, not W3C", h.Get("traceparent"))
	}
	if _, err := time.Parse(time.RFC3339Nano, h.Get("ce-time")); err != nil {
		t.Errorf("ce-time: %v", err)
	}
}

func TestPublisher_sameIDIsStoredOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ctx := natstest.Context(t, 10*time.Second)
	first, err := e.pub.Publish(ctx, "lead.normalized.idx", "dup-1", &commonv1.Correlation{LeadId: "a"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.pub.Publish(ctx, "lead.normalized.idx", "dup-1", &commonv1.Correlation{LeadId: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || second.Sequence != first.Sequence {
		t.Fatalf("second publish: duplicate=%v seq=%d, want duplicate of %d", second.Duplicate, second.Sequence, first.Sequence)
	}
	if _, err := e.pub.Publish(ctx, "lead.normalized.idx", "", &commonv1.Correlation{}); !errors.Is(err, bus.ErrEmptyID) {
		t.Fatalf("empty id: %v, want ErrEmptyID", err)
	}
}

func TestPolicy_Delay(t *testing.T) {
	t.Parallel()
	p := bus.Policy{Schedule: []time.Duration{time.Second, 5 * time.Second, time.Minute}, MaxDelay: 10 * time.Minute}
	boom := errors.New("boom")
	tests := []struct {
		name    string
		attempt int
		err     error
		want    time.Duration
	}{
		{"first_retry", 1, boom, time.Second},
		{"second_retry", 2, boom, 5 * time.Second},
		{"last_entry_repeats", 9, boom, time.Minute},
		{"retry_after_longer_wins", 1, bus.RetryAfter(boom, 30*time.Second), 30 * time.Second},
		{"retry_after_shorter_ignored", 3, bus.RetryAfter(boom, time.Second), time.Minute},
		{"retry_after_capped", 1, bus.RetryAfter(boom, 5*time.Hour), 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := p.Delay(tt.attempt, tt.err); got != tt.want {
				t.Fatalf("Delay(%d) = %s, want %s", tt.attempt, got, tt.want)
			}
		})
	}
}

func TestPolicy_Classify(t *testing.T) {
	t.Parallel()
	p := bus.DefaultPolicy()
	cases := map[string]struct {
		err  error
		want bus.Class
	}{
		"plain_error_is_transient":   {errors.New("connection refused"), bus.Transient},
		"retry_after_is_transient":   {bus.RetryAfter(errors.New("429"), time.Second), bus.Transient},
		"permanent":                  {bus.Permanentf("400 bad request"), bus.Permanent},
		"wrapped_permanent":          {errors.Join(errors.New("ctx"), bus.AsPermanent(errors.New("bad"))), bus.Permanent},
		"permanent_wrapped_with_fmt": {wrap(bus.Permanentf("x")), bus.Permanent},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := p.Classify(c.err); got != c.want {
				t.Fatalf("Classify = %v, want %v", got, c.want)
			}
		})
	}
}

func wrap(err error) error { return errors.Join(err) }

func TestRunner_transientErrorIsRetriedOnTheSchedule(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var c calls
	e.run(t, func(_ context.Context, m *bus.Message) error {
		if c.add(m) < 3 {
			return errors.New("vendor answered 503")
		}
		return nil
	})
	seq := e.publish(t, "retry-1")
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	got := c.all()
	if len(got) != 3 {
		t.Fatalf("handler ran %d times, want 3", len(got))
	}
	for i, m := range got {
		if m.Sequence != seq || m.Attempt != i+1 {
			t.Errorf("call %d: seq %d attempt %d, want seq %d attempt %d", i, m.Sequence, m.Attempt, seq, i+1)
		}
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("a success must write no failure record, got %d", len(f))
	}
}

func TestRunner_lastDeliveryWritesOneFailureRecord(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var c calls
	e.run(t, func(_ context.Context, m *bus.Message) error {
		c.add(m)
		return errors.New("vendor timeout")
	})
	seq := e.publish(t, "exhaust-1")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) > 0 })
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	if n := c.count(); n != e.topo.MaxDeliver {
		t.Fatalf("handler ran %d times, want MaxDeliver %d", n, e.topo.MaxDeliver)
	}
	fs := e.failures(t)
	if len(fs) != 1 {
		t.Fatalf("%d failure records, want 1", len(fs))
	}
	f := fs[0]
	if f.GetService() != testService || f.GetConsumer() != testService || f.GetMessage().GetStream() != bus.StreamLeads ||
		f.GetMessage().GetSequence() != seq || f.GetMessage().GetSubject() != "lead.normalized.idx" ||
		f.GetClass() != opsv1.ErrorClass_ERROR_CLASS_TRANSIENT || f.GetAttempts() != 3 ||
		f.GetReason() != "vendor timeout" || f.GetEventType() != "brokerflow.common.v1.Correlation" {
		t.Fatalf("failure record = %v", f)
	}
	assertStillInStream(t, e, seq)
}

func assertStillInStream(t *testing.T, e *env, seq uint64) {
	t.Helper()
	ctx := natstest.Context(t, 10*time.Second)
	s, err := e.js.Stream(ctx, bus.StreamLeads)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMsg(ctx, seq); err != nil {
		t.Fatalf("failed message must stay in its stream: %v", err)
	}
}

func TestRunner_permanentErrorIsNotRetried(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var c calls
	e.run(t, func(_ context.Context, m *bus.Message) error {
		c.add(m)
		return bus.Permanentf("vendor answered 400: email invalid")
	})
	seq := e.publish(t, "perm-1")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) > 0 })
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	if n := c.count(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
	fs := e.failures(t)
	if len(fs) != 1 || fs[0].GetClass() != opsv1.ErrorClass_ERROR_CLASS_PERMANENT || fs[0].GetAttempts() != 1 {
		t.Fatalf("failure records = %v", fs)
	}
	assertStillInStream(t, e, seq)
}

func TestRunner_panicIsRecoveredAsPermanentFailure(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var c calls
	e.run(t, func(_ context.Context, m *bus.Message) error {
		c.add(m)
		panic("nil map")
	})
	e.publish(t, "panic-1")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) > 0 })
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	fs := e.failures(t)
	if c.count() != 1 || len(fs) != 1 || fs[0].GetReason() != "handler panicked: nil map" {
		t.Fatalf("calls %d, failures %v", c.count(), fs)
	}
}

func TestRunner_redriveRunsTheHandlerAgain(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var (
		c     calls
		mu    sync.Mutex
		fixed bool
	)
	e.run(t, func(_ context.Context, m *bus.Message) error {
		c.add(m)
		mu.Lock()
		defer mu.Unlock()
		if !fixed {
			return bus.Permanentf("contact rejected by the CRM")
		}
		return nil
	})
	seq := e.publish(t, "redrive-1")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) == 1 })

	mu.Lock()
	fixed = true
	mu.Unlock()
	ctx := natstest.Context(t, 10*time.Second)
	if _, err := bus.RequestRedrive(ctx, e.pub, testService, bus.StreamLeads, seq, "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "redriven call", func() bool { return c.count() == 2 })
	natstest.WaitSettled(t, e.js, bus.StreamOps, bus.RedriveConsumer(testService).Durable)
	got := c.all()[1]
	if !got.Redrive || got.Sequence != seq || got.Subject != "lead.normalized.idx" {
		t.Fatalf("redriven message = %+v", got)
	}
	if fs := e.failures(t); len(fs) != 1 {
		t.Fatalf("a successful redrive adds no failure record; got %d records", len(fs))
	}
	s, err := e.js.Stream(ctx, bus.StreamLeads)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("redrive must republish nothing: LEADS holds %d messages", info.State.Msgs)
	}
}

func TestRunner_redriveThatFailsAgainWritesARecord(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.run(t, func(context.Context, *bus.Message) error { return bus.Permanentf("still broken") })
	seq := e.publish(t, "redrive-2")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) == 1 })
	if _, err := bus.RequestRedrive(natstest.Context(t, 10*time.Second), e.pub, testService, bus.StreamLeads, seq, "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "second failure record", func() bool { return len(e.failures(t)) == 2 })
	f := e.failures(t)[1]
	if !f.GetRedrive() || f.GetMessage().GetSequence() != seq || f.GetMessage().GetStream() != bus.StreamLeads {
		t.Fatalf("redrive failure record = %v", f)
	}
}

func TestRunner_skippedAckIsRedelivered(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.hooks.SkipNextAcks(1)
	var c calls
	e.run(t, func(_ context.Context, m *bus.Message) error {
		c.add(m)
		return nil
	})
	seq := e.publish(t, "crash-1")
	natstest.Eventually(t, 30*time.Second, "redelivery after the skipped ack", func() bool { return c.count() == 2 })
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	got := c.all()
	if len(got) != 2 || got[0].Sequence != seq || got[1].Sequence != seq || got[1].Attempt != 2 {
		t.Fatalf("calls = %+v", got)
	}
}

func TestRunner_longHandlerIsKeptInProgress(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var c calls
	e.run(t, func(ctx context.Context, m *bus.Message) error {
		c.add(m)
		// Three ack waits: without progress signals JetStream would redeliver.
		select {
		case <-time.After(3 * e.topo.AckWait):
		case <-ctx.Done():
		}
		return nil
	})
	e.publish(t, "slow-1")
	// Settling can pass in the moment between the publish and the
	// consumer's noticing it: wait for the handler to start first.
	natstest.Eventually(t, 30*time.Second, "the handler to start", func() bool { return c.count() > 0 })
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	if n := c.count(); n != 1 {
		t.Fatalf("handler ran %d times, want 1", n)
	}
}

// WEBHOOKS and LEADS hold work not yet done: at their size limit they refuse
// new messages, and the publisher's error says the stream is full, rather
// than dropping their oldest messages. Other streams keep discarding the
// oldest.
func TestStreams_withUnprocessedWorkRefuseNewMessagesWhenFull(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	topo := testTopology()
	topo.MaxBytes = 8 << 10
	natstest.Apply(t, js, topo)
	pub := bus.NewPublisher(js, "test-producer", nil)
	ctx := natstest.Context(t, 30*time.Second)
	fill := func(subject string) (published int, err error) {
		for i := range 1000 {
			id := fmt.Sprintf("%s-%04d", subject, i)
			if _, err := pub.Publish(ctx, subject, id, &commonv1.Correlation{LeadId: id, Source: strings.Repeat("x", 200)}); err != nil {
				return i, err
			}
		}
		return 1000, nil
	}
	for stream, subject := range map[string]string{bus.StreamWebhooks: "webhook.received.lead.idx", bus.StreamLeads: "lead.normalized.idx"} {
		n, err := fill(subject)
		if err == nil || !bus.IsStreamFull(err) {
			t.Fatalf("%s: %d published, then %v; want a full stream's refusal", stream, n, err)
		}
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info := st.CachedInfo()
		if info.State.FirstSeq != 1 || info.State.Msgs != uint64(n) {
			t.Fatalf("%s: first seq %d, %d messages for %d published: messages were dropped", stream, info.State.FirstSeq, info.State.Msgs, n)
		}
		if r := bus.FullRatio(info); r < 0.8 || r > 1 {
			t.Fatalf("%s: full ratio %v", stream, r)
		}
	}
	if n, err := fill("crm.contact.synced"); err != nil || n != 1000 {
		t.Fatalf("CRM: %d published, %v; want it to make room", n, err)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(bus.NewStreamUsage(js, slog.New(slog.DiscardHandler), bus.StreamLeads, bus.StreamOps))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	ratios := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "brokerflow_bus_stream_full_ratio" {
			continue
		}
		for _, m := range mf.GetMetric() {
			ratios[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	if ratios[bus.StreamLeads] < 0.8 || ratios[bus.StreamOps] != 0 || len(ratios) != 2 {
		t.Fatalf("full ratios %v: want LEADS at least 0.8 and an empty OPS at 0", ratios)
	}
}
