package bus_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

func TestRunner_handlerTimeoutEndsInExactlyOneFailureRecord(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var c calls
	e.runWith(t, bus.RunnerOptions{Policy: fastPolicy(), HandlerTimeout: 50 * time.Millisecond},
		func(ctx context.Context, m *bus.Message) error {
			c.add(m)
			<-ctx.Done() // a vendor that never answers
			return ctx.Err()
		})
	seq := e.publish(t, "timeout-1")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) > 0 })
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	if n := c.count(); n != e.topo.MaxDeliver {
		t.Fatalf("handler ran %d times, want every allowed delivery (%d)", n, e.topo.MaxDeliver)
	}
	fs := e.failures(t)
	if len(fs) != 1 {
		t.Fatalf("%d failure records, want exactly 1", len(fs))
	}
	f := fs[0]
	if f.GetReasonCode() != bus.CodeHandlerTimeout || f.GetClass() != opsv1.ErrorClass_ERROR_CLASS_TRANSIENT ||
		f.GetAttempts() != uint32(e.topo.MaxDeliver) || f.GetMessage().GetSequence() != seq {
		t.Fatalf("failure record = %v", f)
	}
}

func TestRunner_failureRecordsCarryAStableReasonCode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"coded_by_the_adapter", bus.WithCode("crm.http_400", bus.Permanentf("followupboss create person 12345: HTTP 400: bad email")), "crm.http_400"},
		{"outermost_code_wins", bus.WithCode("crm.person_rejected", bus.WithCode("crm.http_400", bus.Permanentf("x"))), "crm.person_rejected"},
		{"undecodable", bus.Undecodable("decode Lead at LEADS/7: bad wire type"), bus.CodeDecode},
		{"uncoded_permanent", bus.Permanentf("lead 8812 rejected"), bus.CodePermanent},
		{"panic", nil, bus.CodeHandlerPanic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			e.run(t, func(context.Context, *bus.Message) error {
				if tt.err == nil {
					panic("nil map")
				}
				return tt.err
			})
			e.publish(t, "code-"+tt.name)
			natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) == 1 })
			if got := e.failures(t)[0].GetReasonCode(); got != tt.want {
				t.Fatalf("reason_code = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRunner_successfulRedriveAnnouncesDone(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var fixed atomic.Bool
	e.run(t, func(context.Context, *bus.Message) error {
		if !fixed.Load() {
			return bus.Permanentf("contact rejected by the CRM")
		}
		return nil
	})
	seq := e.publish(t, "redrive-done-1")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) == 1 })
	if n := natstest.Count(t, e.js, bus.StreamOps, bus.RedriveDoneSubject(testService)); n != 0 {
		t.Fatalf("%d redrive-done events before any redrive", n)
	}
	fixed.Store(true)
	ack, err := bus.RequestRedrive(natstest.Context(t, 10*time.Second), e.pub, testService, bus.StreamLeads, seq, "ops@brokerage.example")
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "redrive-done event", func() bool {
		return natstest.Count(t, e.js, bus.StreamOps, bus.RedriveDoneSubject(testService)) == 1
	})
	var done opsv1.RedriveDone
	if err := proto.Unmarshal(natstest.Last(t, e.js, bus.StreamOps, bus.RedriveDoneSubject(testService)).Data, &done); err != nil {
		t.Fatal(err)
	}
	if done.GetService() != testService || done.GetConsumer() != testService || done.GetMessage().GetStream() != bus.StreamLeads ||
		done.GetMessage().GetSequence() != seq || done.GetRequestedBy() != "ops@brokerage.example" || done.GetCommandSequence() != ack.Sequence {
		t.Fatalf("redrive done = %v", &done)
	}
}

func TestRunner_failedRedriveAnnouncesNothing(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.run(t, func(context.Context, *bus.Message) error { return bus.Permanentf("still broken") })
	seq := e.publish(t, "redrive-done-2")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) == 1 })
	if _, err := bus.RequestRedrive(natstest.Context(t, 10*time.Second), e.pub, testService, bus.StreamLeads, seq, "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "second failure record", func() bool { return len(e.failures(t)) == 2 })
	natstest.WaitSettled(t, e.js, bus.StreamOps, bus.RedriveConsumer(testService).Durable)
	if n := natstest.Count(t, e.js, bus.StreamOps, bus.RedriveDoneSubject(testService)); n != 0 {
		t.Fatalf("a redrive that failed again announced done %d times", n)
	}
}

const pointAfterEffect bus.CrashPoint = "test.after_effect"

func TestRunner_crashPointStopsTheHandlerThereAndRedelivers(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var effects, records atomic.Int32
	var c calls
	e.hooks.CrashAt(pointAfterEffect, 1)
	e.run(t, func(ctx context.Context, m *bus.Message) error {
		c.add(m)
		effects.Add(1) // the vendor call
		bus.Crash(ctx, pointAfterEffect)
		records.Add(1) // the outcome a killed process never writes
		return nil
	})
	seq := e.publish(t, "crash-point-1")
	natstest.Eventually(t, 30*time.Second, "redelivery after the crash", func() bool { return c.count() == 2 })
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	if effects.Load() != 2 || records.Load() != 1 {
		t.Fatalf("effects %d, outcome records %d; want 2 and 1: nothing after the crash point runs", effects.Load(), records.Load())
	}
	got := c.all()
	if got[1].Sequence != seq || got[1].Attempt != 2 {
		t.Fatalf("redelivery = %+v", got[1])
	}
	if fs := e.failures(t); len(fs) != 0 {
		t.Fatalf("a crash wrote %d failure records", len(fs))
	}
}

func TestRunner_crashPointCancelsTheHandlersContext(t *testing.T) {
	t.Parallel()
	e := setup(t)
	e.hooks.CrashAtOf(testService, pointAfterEffect, 1)
	var afterCrash atomic.Value
	var c calls
	e.run(t, func(ctx context.Context, m *bus.Message) error {
		if c.add(m) == 1 {
			// A deferred write sees a dead context, as after a kill.
			defer func() { afterCrash.Store(ctx.Err()) }()
		}
		bus.Crash(ctx, pointAfterEffect)
		return nil
	})
	e.publish(t, "crash-point-2")
	natstest.Eventually(t, 30*time.Second, "redelivery after the crash", func() bool { return c.count() == 2 })
	if err, _ := afterCrash.Load().(error); !errors.Is(err, context.Canceled) {
		t.Fatalf("context after the crash point: %v, want canceled", err)
	}
}

func TestRunner_lastDeliveryIsTheServersMaxDeliver(t *testing.T) {
	t.Parallel()
	e := setup(t)
	// The service's own schedule would allow 6 deliveries; the consumer on
	// the server, as applied, allows e.topo.MaxDeliver (3). The server decides.
	long := bus.Policy{Schedule: []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}}
	var c calls
	e.runWith(t, bus.RunnerOptions{Policy: long}, func(_ context.Context, m *bus.Message) error {
		c.add(m)
		return errors.New("vendor timeout")
	})
	e.publish(t, "server-max-deliver")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) == 1 })
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	if c.count() != e.topo.MaxDeliver || e.failures(t)[0].GetAttempts() != uint32(e.topo.MaxDeliver) {
		t.Fatalf("handler ran %d times, record says %d attempts; want the server's MaxDeliver %d",
			c.count(), e.failures(t)[0].GetAttempts(), e.topo.MaxDeliver)
	}
}

func TestRunner_refusesToStartWhenItsConsumerIsNotAsDeclared(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		apply func(t *testing.T, e *env)
	}{
		{"missing", func(t *testing.T, e *env) {
			if err := e.js.DeleteConsumer(natstest.Context(t, 10*time.Second), testSpec.Stream, testSpec.Durable); err != nil {
				t.Fatal(err)
			}
		}},
		{"other_filter", func(t *testing.T, e *env) {
			other := testSpec
			other.FilterSubjects = []string{"lead.rejected.>"}
			if err := bus.ApplyConsumer(natstest.Context(t, 10*time.Second), e.js, e.topo, other); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := setup(t)
			tt.apply(t, e)
			r, err := bus.NewRunner(e.js, bus.RunnerOptions{Service: testService, Consumers: []bus.ConsumerSpec{testSpec}})
			if err != nil {
				t.Fatal(err)
			}
			r.Handle(testSpec, func(context.Context, *bus.Message) error { return nil })
			err = r.Run(natstest.Context(t, 30*time.Second))
			if !errors.Is(err, bus.ErrNotApplied) || !strings.Contains(err.Error(), "brokerflow streams apply") {
				t.Fatalf("Run = %v, want ErrNotApplied naming the apply command", err)
			}
			// And it changed nothing on the server.
			if tt.name == "missing" {
				if _, err := e.js.Consumer(natstest.Context(t, 10*time.Second), testSpec.Stream, testSpec.Durable); err == nil {
					t.Fatal("a service created its own consumer")
				}
			}
		})
	}
}

func TestRunner_refusesAnUnboundOrUndeclaredConsumer(t *testing.T) {
	t.Parallel()
	e := setup(t)
	second := testSpec
	second.Durable, second.FilterSubjects = testService+"-rejected", []string{"lead.rejected.>"}
	noop := func(context.Context, *bus.Message) error { return nil }
	tests := []struct {
		name     string
		declared []bus.ConsumerSpec
		bind     []bus.ConsumerSpec
		handler  bus.Handler
		want     string
	}{
		{"declared_without_handler", []bus.ConsumerSpec{testSpec, second}, []bus.ConsumerSpec{testSpec}, noop, second.Durable + " of " + testService + " has no handler"},
		{"nil_handler", []bus.ConsumerSpec{testSpec}, []bus.ConsumerSpec{testSpec}, nil, "has no handler"},
		{"handler_without_declaration", []bus.ConsumerSpec{testSpec}, []bus.ConsumerSpec{testSpec, second}, noop, "not a declared consumer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := bus.NewRunner(e.js, bus.RunnerOptions{Service: testService, Consumers: tt.declared})
			if err != nil {
				t.Fatal(err)
			}
			for _, spec := range tt.bind {
				r.Handle(spec, tt.handler)
			}
			err = r.Run(natstest.Context(t, 30*time.Second))
			if !errors.Is(err, bus.ErrUnbound) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want ErrUnbound with %q", err, tt.want)
			}
		})
	}
}

var errVendorSaysNo = errors.New("vendor says the account is closed")

func TestRunner_policyClassifiesWithTheServicesOwnFunction(t *testing.T) {
	t.Parallel()
	e := setup(t)
	p := fastPolicy()
	p.Classify = func(err error) bus.Class {
		if errors.Is(err, errVendorSaysNo) {
			return bus.Permanent
		}
		return bus.DefaultClassify(err)
	}
	var c calls
	e.runWith(t, bus.RunnerOptions{Policy: p}, func(_ context.Context, m *bus.Message) error {
		c.add(m)
		return errVendorSaysNo
	})
	e.publish(t, "classify-1")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) == 1 })
	natstest.WaitSettled(t, e.js, bus.StreamLeads, testService)
	if c.count() != 1 || e.failures(t)[0].GetClass() != opsv1.ErrorClass_ERROR_CLASS_PERMANENT {
		t.Fatalf("calls %d, record %v; the service's classifier makes it permanent at once", c.count(), e.failures(t)[0])
	}
}

func TestRunner_serviceMiddlewareWrapsItsHandler(t *testing.T) {
	t.Parallel()
	e := setup(t)
	var seenRaw atomic.Value
	// A service's own middleware sees the handler's raw error, before the
	// bus classifies it, and may refine it.
	refine := func(next bus.Handler) bus.Handler {
		return func(ctx context.Context, m *bus.Message) error {
			err := next(ctx, m)
			seenRaw.Store(err)
			return bus.WithCode("test.refined", bus.AsPermanent(err))
		}
	}
	e.run(t, func(context.Context, *bus.Message) error { return errVendorSaysNo }, bus.WithMiddleware(refine))
	e.publish(t, "middleware-1")
	natstest.Eventually(t, 30*time.Second, "failure record", func() bool { return len(e.failures(t)) == 1 })
	if raw, _ := seenRaw.Load().(error); raw != errVendorSaysNo { //nolint:errorlint // the raw error itself
		t.Fatalf("middleware saw %v, want the handler's raw error", raw)
	}
	if f := e.failures(t)[0]; f.GetReasonCode() != "test.refined" || f.GetAttempts() != 1 {
		t.Fatalf("failure record = %v", f)
	}
}
