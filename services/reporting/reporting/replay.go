package reporting

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
)

// ReplayStreams are the streams the read model is built from.
var ReplayStreams = []string{bus.StreamLeads, bus.StreamCRM, bus.StreamTMS, bus.StreamLedger, bus.StreamReporting}

// rebuildOrder is the order a rebuild reads them in: CRM before LEADS, so
// that a lead's row is whole when its LEADS event comes, and is written
// then, beside the reading, rather than all at the end.
var rebuildOrder = []string{bus.StreamCRM, bus.StreamLeads, bus.StreamTMS, bus.StreamLedger, bus.StreamReporting}

// ReplayOptions say what a rebuild reads and how it reports.
type ReplayOptions struct {
	// FromTime starts every stream at the first message stored at or after it.
	FromTime time.Time
	// FromSeq starts a stream at a sequence; the key "" applies to every stream.
	FromSeq map[string]uint64
	// Until stops every stream before the first message stored after it.
	Until time.Time
	// BatchSize is the events written per transaction (default 5000).
	BatchSize int
	// Progress receives a line every ProgressEvery (default 1 s) and at the end.
	Progress      io.Writer
	ProgressEvery time.Duration
	// Idle ends a stream that delivers nothing for this long (default 2 s):
	// a start time after its last message.
	Idle   time.Duration
	Logger *slog.Logger
}

func (o *ReplayOptions) defaults() {
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = time.Second
	}
	if o.Idle <= 0 {
		o.Idle = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Partial reports whether the options leave events out, so that the
// database is not the whole read model.
func (o ReplayOptions) Partial() bool {
	return !o.FromTime.IsZero() || !o.Until.IsZero() || len(o.FromSeq) > 0
}

// ReplayResult is what a rebuild did.
type ReplayResult struct {
	// Name is the rebuilt database's name in its place (a file, a schema).
	Name string
	// Read is every message read; Applied the events that were new;
	// Undecodable those left out because their body is not their type.
	Read, Applied, Undecodable int
	Elapsed                    time.Duration
	// Cursors are the last sequence read from each stream.
	Cursors map[string]uint64
}

// Rate is events read per second.
func (r ReplayResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Read) / r.Elapsed.Seconds()
}

// Rebuild builds the read model in p as name, a new database, from the
// streams: each stream is read with an ordered consumer at the broker's
// pace, and written in batches. It reads to the end each stream had when it
// looked, then looks again, until a pass finds less than a batch of new
// events.
func Rebuild(ctx context.Context, js jetstream.JetStream, p Place, name string, o ReplayOptions) (ReplayResult, error) {
	o.defaults()
	start := time.Now()
	if ok, err := p.exists(ctx, name); err != nil || ok {
		return ReplayResult{}, errors.Join(err, fmt.Errorf("rebuild: %s exists in %s; a rebuild writes a fresh database", name, p))
	}
	st, err := p.open(ctx, name, openOptions{bulk: true})
	if err != nil {
		return ReplayResult{}, err
	}
	res, memo, err := rebuild(ctx, js, st, o)
	if err == nil {
		err = st.finishRebuild(ctx, memo, o.BatchSize)
	}
	if err == nil {
		err = st.setRebuiltTo(ctx, ReplayStreams, res.Cursors)
	}
	if err == nil {
		// Durable before anyone switches to it.
		err = p.finishBulk(ctx, st)
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	res.Name = name
	// The whole rebuild, derived tables and the final sync included.
	res.Elapsed = time.Since(start)
	if err == nil {
		fmt.Fprintf(o.Progress, "replay: %d events read, %d applied, %d undecodable, in %s (%.0f events/s)\n",
			res.Read, res.Applied, res.Undecodable, res.Elapsed.Round(time.Millisecond), res.Rate())
	}
	return res, err
}

// rebuildState is one rebuild's position and counters.
type rebuildState struct {
	o       ReplayOptions
	next    map[string]uint64 // next sequence to read, per stream
	memo    rebuildMemo
	total   atomic.Int64 // events expected, for the ETA
	read    atomic.Int64
	applied atomic.Int64
	bad     atomic.Int64
}

func rebuild(ctx context.Context, js jetstream.JetStream, st *Store, o ReplayOptions) (ReplayResult, *rebuildMemo, error) {
	start := time.Now()
	s := &rebuildState{o: o, next: map[string]uint64{}, memo: newRebuildMemo(st)}
	stop := s.report(start)
	var err error
	for pass := 0; ; pass++ {
		last := func(n int) bool { return n < o.BatchSize || !o.Until.IsZero() || pass >= 20 }
		var n int
		n, err = s.pass(ctx, js, st, pass == 0, last)
		if err != nil || last(n) {
			break
		}
	}
	stop()
	res := ReplayResult{
		Read: int(s.read.Load()), Applied: int(s.applied.Load()), Undecodable: int(s.bad.Load()),
		Cursors: map[string]uint64{},
	}
	for stream, next := range s.next {
		if next > 1 {
			res.Cursors[stream] = next - 1
		}
	}
	return res, &s.memo, err
}

// report prints the progress every ProgressEvery until stopped.
func (s *rebuildState) report(start time.Time) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(s.o.ProgressEvery)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			read, total := s.read.Load(), max(s.total.Load(), s.read.Load())
			rate := float64(read) / time.Since(start).Seconds()
			eta := "?"
			if rate > 0 {
				eta = (time.Duration(float64(total-read) / rate * float64(time.Second))).Round(time.Second).String()
			}
			pct := 100.0
			if total > 0 {
				pct = 100 * float64(read) / float64(total)
			}
			fmt.Fprintf(s.o.Progress, "replay: %d/%d events (%.0f%%), %.0f events/s, ETA %s\n", read, total, pct, rate, eta)
		}
	}()
	return func() { close(done); wg.Wait() }
}

// pass reads each stream from where the last pass ended to its end now.
// The reader decodes and projects each batch in memory, and the writer
// writes the batch before it meanwhile. When the pass is the last (last,
// given the events it read), the reader derives the journeys' rows
// (SQLite) while the writer writes the last batches.
func (s *rebuildState) pass(ctx context.Context, js jetstream.JetStream, st *Store, first bool, last func(n int) bool) (int, error) {
	batches := make(chan rebuildBatch, 2)
	werr := make(chan error, 1)
	go func() {
		var err error
		for b := range batches {
			if err == nil {
				err = st.write(ctx, b)
			}
		}
		werr <- err
	}()
	n, rerr := 0, error(nil)
	for _, stream := range rebuildOrder {
		var k int
		k, rerr = s.stream(ctx, js, st, stream, first, batches)
		n += k
		if rerr != nil {
			break
		}
	}
	close(batches)
	if rerr == nil && last(n) && s.memo.contacts != nil {
		s.memo.journeys = s.memo.journeyRows()
	}
	return n, errors.Join(rerr, <-werr)
}

// stream reads one stream to its current end into batches.
func (s *rebuildState) stream(ctx context.Context, js jetstream.JetStream, st *Store, stream string, first bool, out chan<- rebuildBatch) (int, error) {
	str, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil // declared later than this deployment's apply
	}
	if err != nil {
		return 0, fmt.Errorf("replay %s: %w", stream, err)
	}
	info, err := str.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("replay %s: %w", stream, err)
	}
	last := info.State.LastSeq
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy}
	startSeq := max(s.next[stream], info.State.FirstSeq, 1)
	if first {
		if seq, ok := s.o.FromSeq[stream]; ok {
			startSeq = max(seq, startSeq)
		} else if seq, ok := s.o.FromSeq[""]; ok {
			startSeq = max(seq, startSeq)
		}
		if !s.o.FromTime.IsZero() {
			t := s.o.FromTime
			cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &t}
		}
	}
	if info.State.Msgs == 0 || startSeq > last {
		s.next[stream] = max(s.next[stream], last+1)
		return 0, nil
	}
	if cfg.DeliverPolicy == jetstream.DeliverByStartSequencePolicy {
		cfg.OptStartSeq = startSeq
	}
	s.total.Add(int64(last - startSeq + 1))
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return 0, fmt.Errorf("replay %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * s.o.BatchSize))
	if err != nil {
		return 0, fmt.Errorf("replay %s: %w", stream, err)
	}
	defer it.Stop()
	n := 0
	b := make([]decoded, 0, s.o.BatchSize)
	flush := func() error {
		if len(b) == 0 {
			return nil
		}
		rb, err := st.project(ctx, b, &s.memo)
		if err != nil {
			return err
		}
		s.applied.Add(int64(rb.events))
		select {
		case out <- rb:
		case <-ctx.Done():
			return ctx.Err()
		}
		b = make([]decoded, 0, s.o.BatchSize)
		return nil
	}
	firstSeen := true
	for {
		msg, err := it.Next(jetstream.NextMaxWait(s.o.Idle))
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			break // nothing more within Idle: the start time is past the end
		}
		if err != nil {
			return n, fmt.Errorf("replay %s: %w", stream, err)
		}
		meta, err := msg.Metadata()
		if err != nil {
			return n, fmt.Errorf("replay %s: %w", stream, err)
		}
		seq := meta.Sequence.Stream
		if firstSeen {
			firstSeen = false
			if seq > startSeq { // a start time, or deleted messages, skipped these
				s.total.Add(-int64(seq - startSeq))
			}
		}
		if !s.o.Until.IsZero() && meta.Timestamp.After(s.o.Until) {
			s.total.Add(-int64(last - seq + 1))
			s.next[stream] = seq
			break
		}
		s.next[stream] = seq + 1
		n++
		s.read.Add(1)
		d, derr := decode(Event{Stream: stream, Seq: seq, Subject: msg.Subject(), Header: msg.Headers(), Data: msg.Data(), Time: meta.Timestamp})
		if derr != nil {
			s.bad.Add(1)
			s.o.Logger.Warn("event left out: it does not decode", "stream", stream, "seq", seq, "err", derr)
		} else {
			b = append(b, d)
		}
		if len(b) == cap(b) {
			if err := flush(); err != nil {
				return n, err
			}
		}
		if seq >= last || meta.NumPending == 0 {
			break
		}
	}
	return n, flush()
}

// Replay rebuilds the read model into a new database in dir. Unless o
// leaves events out, or noSwitch, the new database becomes CURRENT once it
// is caught up with the streams: the running service then switches to it
// (catching up what it projected meanwhile), and no one ever reads a half
// rebuilt one. A partial rebuild (a start or an end) is left beside it for
// analysis.
func Replay(ctx context.Context, js jetstream.JetStream, p Place, o ReplayOptions, noSwitch bool) (ReplayResult, bool, error) {
	name := p.newName(time.Now())
	res, err := Rebuild(ctx, js, p, name, o)
	if err != nil {
		_ = p.Remove(context.WithoutCancel(ctx), name)
		return res, false, err
	}
	if noSwitch || o.Partial() {
		return res, false, nil
	}
	if err := p.write(ctx, currentRole, name); err != nil {
		return res, false, err
	}
	return res, true, nil
}

// SwitchTo makes the database name in p the one in use: the running
// service switches to it, catching up what it projected meanwhile.
func SwitchTo(ctx context.Context, p Place, name string) error {
	return p.write(ctx, currentRole, name)
}

// WaitLive waits until the running service projects into the database
// named name (it switched), for up to d; it reports whether it did.
func WaitLive(ctx context.Context, p Place, name string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if live, err := p.read(ctx, liveRole); err == nil && live == name {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
