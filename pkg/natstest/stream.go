package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
)

// Count returns how many messages stream holds on subject.
func Count(tb testing.TB, js jetstream.JetStream, stream, subject string) uint64 {
	tb.Helper()
	ctx := Context(tb, 10*time.Second)
	s, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(subject))
	if err != nil {
		tb.Fatalf("natstest: stream %s info: %v", stream, err)
	}
	return info.State.Subjects[subject]
}

// Last returns the last message on subject in stream.
func Last(tb testing.TB, js jetstream.JetStream, stream, subject string) *jetstream.RawStreamMsg {
	tb.Helper()
	ctx := Context(tb, 10*time.Second)
	s, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("natstest: stream %s: %v", stream, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		tb.Fatalf("natstest: nothing on %s in %s: %v", subject, stream, err)
	}
	return m
}

// All returns every message on subject (a filter, wildcards allowed) in
// stream, oldest first.
func All(tb testing.TB, js jetstream.JetStream, stream, subject string) []jetstream.Msg {
	tb.Helper()
	ctx := Context(tb, 10*time.Second)
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		tb.Fatalf("natstest: read %s: %v", subject, err)
	}
	var out []jetstream.Msg
	for {
		batch, err := c.FetchNoWait(256)
		if err != nil {
			tb.Fatalf("natstest: read %s: %v", subject, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			out = append(out, m)
		}
		if n == 0 {
			return out
		}
	}
}

// WaitConsumer waits until the durable consumer exists.
func WaitConsumer(tb testing.TB, js jetstream.JetStream, stream, durable string) {
	tb.Helper()
	Eventually(tb, 30*time.Second, "consumer "+durable, func() bool {
		_, err := js.Consumer(context.Background(), stream, durable)
		return err == nil
	})
}

// Run runs a service until the test ends, then stops it and reports its
// error.
func Run(tb testing.TB, run func(context.Context) error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("natstest: service: %v", err)
		}
	})
}

// Apply declares every stream, consumer and bucket under topo, as the
// apply step (`brokerflow streams apply`) does before any service starts.
func Apply(tb testing.TB, js jetstream.JetStream, topo bus.Topology) {
	tb.Helper()
	if err := bus.Apply(Context(tb, 30*time.Second), js, topo); err != nil {
		tb.Fatalf("natstest: apply the declarations: %v", err)
	}
}

// Messages decodes every message of subject in stream, each into a new M
// from fresh.
func Messages[M proto.Message](tb testing.TB, js jetstream.JetStream, stream, subject string, fresh func() M) []M {
	tb.Helper()
	var out []M
	for _, m := range All(tb, js, stream, subject) {
		v := fresh()
		if err := proto.Unmarshal(m.Data(), v); err != nil {
			tb.Fatalf("natstest: decode %s at %s/%s: %v", subject, stream, m.Subject(), err)
		}
		out = append(out, v)
	}
	return out
}
