// Package natstest starts a real, embedded JetStream server for a test.
package natstest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/natsauth"
)

// Server is a running embedded server.
type Server struct {
	*server.Server
	StoreDir string
}

// Start runs a JetStream server on a random loopback port, storing in
// t.TempDir(). It waits generously for readiness (CI machines have 2 cores)
// and, at cleanup, shuts down and waits for the shutdown before the
// directory is removed.
func Start(tb testing.TB) *Server {
	tb.Helper()
	dir := tb.TempDir() // registered first, so removed after the shutdown below
	s := StartAt(tb, dir, -1)
	return s
}

// StartAt runs a server with storage in dir on port (-1 for random). A test
// restarting a server on the same directory and port uses it.
func StartAt(tb testing.TB, dir string, port int) *Server {
	tb.Helper()
	return StartWith(tb, dir, port, nil)
}

// StartSecured is Start with every user of the bus on, as the embedded
// server runs by default: each connects with its own nkey, from the seed
// files in the returned directory (natsauth.SeedFile), and the server
// grants it only its declared subjects. Connect with ConnectAs.
func StartSecured(tb testing.TB) (*Server, string) {
	tb.Helper()
	dir := tb.TempDir()
	creds := filepath.Join(dir, "creds")
	if err := natsauth.Ensure(creds); err != nil {
		tb.Fatalf("natstest: credentials: %v", err)
	}
	users, err := natsauth.ServerUsers(creds)
	if err != nil {
		tb.Fatalf("natstest: credentials: %v", err)
	}
	s := StartWith(tb, filepath.Join(dir, "store"), -1, func(o *server.Options) { o.Nkeys = users })
	return s, creds
}

// ConnectAs opens a connection to s as user, with its seed in creds, drained
// at cleanup, and its JetStream context. Extra options (an error handler)
// come after the user's.
func ConnectAs(tb testing.TB, s *Server, creds, user string, extra ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	opts, err := natsauth.Options(creds, user)
	if err != nil {
		tb.Fatalf("natstest: %v", err)
	}
	return connect(tb, s, append(opts, extra...)...)
}

// StartWith runs a server with storage in dir on port, after configure has
// changed its options (nil changes nothing).
func StartWith(tb testing.TB, dir string, port int, configure func(*server.Options)) *Server {
	tb.Helper()
	opts := &server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
	}
	if configure != nil {
		configure(opts)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("natstest: new server: %v", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(Scale(20 * time.Second)) {
		ns.Shutdown()
		tb.Fatalf("natstest: server not ready")
	}
	tb.Cleanup(func() {
		ns.Shutdown()
		ns.WaitForShutdown()
	})
	return &Server{Server: ns, StoreDir: dir}
}

// Connect opens a connection to s, drained at cleanup, and its JetStream context.
func Connect(tb testing.TB, s *Server) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	return connect(tb, s)
}

func connect(tb testing.TB, s *Server, extra ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	opts := append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(50 * time.Millisecond)}, extra...)
	nc, err := nats.Connect(s.ClientURL(), opts...)
	if err != nil {
		tb.Fatalf("natstest: connect: %v", err)
	}
	tb.Cleanup(func() { nc.Close() })
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}

// Scale multiplies d by BROKERFLOW_TEST_TIMEOUT_SCALE (default 1), so slow
// machines can stretch every deadline in the tests.
func Scale(d time.Duration) time.Duration {
	if f, err := strconv.ParseFloat(os.Getenv("BROKERFLOW_TEST_TIMEOUT_SCALE"), 64); err == nil && f > 0 {
		return time.Duration(float64(d) * f)
	}
	return d
}

// Context returns a context that ends after the scaled d or at cleanup.
func Context(tb testing.TB, d time.Duration) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Scale(d))
	tb.Cleanup(cancel)
	return ctx
}

// Eventually polls cond until it returns true or the scaled deadline passes.
// It is the only way tests wait: no bare sleeps.
func Eventually(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(Scale(d))
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("natstest: timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitSettled waits until each named consumer of stream has been handed
// every message its filters take that the stream holds now, and has
// nothing pending and nothing awaiting ack. (A message waiting for a retry
// has been handed: settled means nothing is in a handler's hands, not that
// every message succeeded.) Checking what was handed closes the moment
// between a publish and the consumer's noticing it, in which the consumer
// shows nothing pending.
func WaitSettled(tb testing.TB, js jetstream.JetStream, stream string, consumers ...string) {
	tb.Helper()
	for _, name := range consumers {
		var last uint64
		known := false
		Eventually(tb, 30*time.Second, "consumer "+name+" to settle", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, err := js.Consumer(ctx, stream, name)
			if err != nil {
				return false
			}
			info, err := c.Info(ctx)
			if err != nil {
				return false
			}
			if !known {
				if last, err = lastTaken(ctx, js, stream, info.Config); err != nil {
					return false
				}
				known = true
			}
			return info.Delivered.Stream >= last && info.NumPending == 0 && info.NumAckPending == 0
		})
	}
}

// lastTaken is the sequence of the last message in stream that a consumer
// of cfg takes; 0 when there is none.
func lastTaken(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.ConsumerConfig) (uint64, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = append(filters, cfg.FilterSubject)
	}
	if len(filters) == 0 {
		info, err := s.Info(ctx)
		if err != nil {
			return 0, err
		}
		return info.State.LastSeq, nil
	}
	var last uint64
	for _, f := range filters {
		m, err := s.GetLastMsgForSubject(ctx, f)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, err
		}
		last = max(last, m.Sequence)
	}
	return last, nil
}

// WaitCaughtUp waits until each named consumer of stream has acknowledged
// every message the stream holds now: for consumers that take every
// subject of their stream. Unlike WaitSettled, it cannot pass in the moment
// between a publish and the consumer's noticing it.
func WaitCaughtUp(tb testing.TB, js jetstream.JetStream, stream string, consumers ...string) {
	tb.Helper()
	ctx := Context(tb, 10*time.Second)
	s, err := js.Stream(ctx, stream)
	if err != nil {
		tb.Fatalf("natstest: stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		tb.Fatalf("natstest: stream %s: %v", stream, err)
	}
	last := info.State.LastSeq
	for _, name := range consumers {
		Eventually(tb, 30*time.Second, "consumer "+name+" to catch up", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c, err := js.Consumer(ctx, stream, name)
			if err != nil {
				return false
			}
			ci, err := c.Info(ctx)
			return err == nil && ci.AckFloor.Stream >= last && ci.NumAckPending == 0
		})
	}
}
