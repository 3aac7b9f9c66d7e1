package failures

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

// Outcome is what one redrive came to.
type Outcome string

// The outcomes of a redrive.
const (
	Succeeded       Outcome = "succeeded"
	FailedAgainOnce Outcome = "failed again"
	// Skipped: the failure was redriven or resolved already.
	Skipped Outcome = "skipped"
	// NoAnswer: the service said nothing within the wait (it may be
	// stopped, paused by a vendor's 429, or retrying a transient error).
	NoAnswer Outcome = "no answer"
	// Requested: asked for, and not waited for (--no-wait).
	Requested Outcome = "requested"
)

// Result is the outcome of one failure's redrive.
type Result struct {
	Failure *Failure
	Outcome Outcome
	// Reason says why it failed again (the new failure record's code and reason).
	Reason string
}

// Summary counts the outcomes of a redrive.
type Summary struct {
	Succeeded, FailedAgain, Skipped, NoAnswer, Requested int
}

// Total is how many failures the redrive covered.
func (s Summary) Total() int {
	return s.Succeeded + s.FailedAgain + s.Skipped + s.NoAnswer + s.Requested
}

// Options are how a redrive runs.
type Options struct {
	// By is who asks, for the audit trail.
	By string
	// InFlight bounds the redrives asked for and not yet answered. The
	// service runs each through its handler chain, so its pacer keeps the
	// vendor's quota; this keeps the command queue short as well.
	InFlight int
	// Wait is how long one redrive may take to be answered.
	Wait time.Duration
	// NoWait only asks: every failure is Requested.
	NoWait bool
	// Force redrives failures that were redriven or resolved already.
	Force bool
	// Progress, when set, is called after each failure, one call at a time.
	Progress func(done, total int, r Result)
}

// Redrive asks each failure's service to run its message again, at most
// opt.InFlight at a time, and waits for each answer on the OPS stream: a
// RedriveDone (succeeded) or a new failure record (failed again).
func Redrive(ctx context.Context, js jetstream.JetStream, targets []*Failure, opt Options) (Summary, []Result, error) {
	if opt.InFlight <= 0 {
		opt.InFlight = 8
	}
	if opt.Wait <= 0 {
		opt.Wait = 2 * time.Minute
	}
	w := &watcher{waiting: map[uint64]chan Result{}, early: map[uint64]Result{}}
	if !opt.NoWait {
		stop, err := w.watch(ctx, js, targets)
		if err != nil {
			return Summary{}, nil, err
		}
		defer stop()
	}
	pub := bus.NewPublisher(js, "brokerflow-cli", nil)
	results := make([]Result, len(targets))
	var (
		mu   sync.Mutex
		done int
		sum  Summary
		errs []error
		wg   sync.WaitGroup
	)
	finish := func(i int, r Result) {
		mu.Lock()
		defer mu.Unlock()
		results[i] = r
		done++
		switch r.Outcome {
		case Succeeded:
			sum.Succeeded++
		case FailedAgainOnce:
			sum.FailedAgain++
		case Skipped:
			sum.Skipped++
		case NoAnswer:
			sum.NoAnswer++
		case Requested:
			sum.Requested++
		}
		if opt.Progress != nil {
			opt.Progress(done, len(targets), r)
		}
	}
	slots := make(chan struct{}, opt.InFlight)
	for i, f := range targets {
		if !opt.Force && (f.State == Redriven || f.State == Resolved) {
			finish(i, Result{Failure: f, Outcome: Skipped, Reason: "already " + string(f.State)})
			continue
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return sum, results, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			r, err := w.redrive(ctx, pub, f, opt)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			finish(i, r)
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		return sum, results, fmt.Errorf("%d redrive requests could not be published: %w", len(errs), errs[0])
	}
	return sum, results, nil
}

// watcher matches the answers on OPS to the redrive commands, by the
// command's OPS sequence: a RedriveDone names it, a failed redrive's record
// has it in its message id ("…:redrive-<seq>"), and a command that could
// not be carried out (its message is gone) is itself the failed message.
type watcher struct {
	mu      sync.Mutex
	waiting map[uint64]chan Result
	early   map[uint64]Result
}

func (w *watcher) watch(ctx context.Context, js jetstream.JetStream, targets []*Failure) (func(), error) {
	s, err := js.Stream(ctx, bus.StreamOps)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", bus.StreamOps, err)
	}
	last := s.CachedInfo().State.LastSeq
	var filters []string
	for _, f := range targets {
		for _, subj := range []string{bus.RedriveDoneSubject(f.Service), bus.FailureSubject(f.Service)} {
			if !slices.Contains(filters, subj) {
				filters = append(filters, subj)
			}
		}
	}
	c, err := js.OrderedConsumer(ctx, bus.StreamOps, jetstream.OrderedConsumerConfig{
		FilterSubjects:    filters,
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       last + 1,
		InactiveThreshold: readerInactive,
	})
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", bus.StreamOps, err)
	}
	cc, err := c.Consume(func(m jetstream.Msg) { w.observe(m) })
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", bus.StreamOps, err)
	}
	return func() { cc.Stop(); deleteOrdered(js, c) }, nil
}

func (w *watcher) observe(m jetstream.Msg) {
	var cmd uint64
	var r Result
	switch {
	case strings.HasPrefix(m.Subject(), "ops.redrive.done."):
		var d opsv1.RedriveDone
		if proto.Unmarshal(m.Data(), &d) != nil {
			return
		}
		cmd, r = d.GetCommandSequence(), Result{Outcome: Succeeded}
	case strings.HasPrefix(m.Subject(), "ops.failure."):
		var f opsv1.Failure
		if proto.Unmarshal(m.Data(), &f) != nil {
			return
		}
		r = Result{Outcome: FailedAgainOnce, Reason: f.GetReasonCode() + ": " + f.GetReason()}
		switch {
		case f.GetMessage().GetStream() == bus.StreamOps:
			cmd = f.GetMessage().GetSequence()
		case f.GetRedrive():
			_, key, _ := strings.Cut(m.Headers().Get(bus.HeaderMsgID), ":redrive-")
			cmd, _ = strconv.ParseUint(key, 10, 64)
		}
	}
	if cmd == 0 {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if ch, ok := w.waiting[cmd]; ok {
		delete(w.waiting, cmd)
		ch <- r
		return
	}
	w.early[cmd] = r
}

// redrive asks for one redrive and waits for its answer.
func (w *watcher) redrive(ctx context.Context, pub *bus.Publisher, f *Failure, opt Options) (Result, error) {
	ack, err := bus.RequestRedrive(ctx, pub, f.Service, f.Stream, f.Sequence, opt.By)
	if err != nil {
		return Result{}, fmt.Errorf("redrive %s: %w", f.ID, err)
	}
	if opt.NoWait {
		return Result{Failure: f, Outcome: Requested, Reason: fmt.Sprintf("OPS sequence %d", ack.Sequence)}, nil
	}
	ch := make(chan Result, 1)
	w.mu.Lock()
	if r, ok := w.early[ack.Sequence]; ok {
		delete(w.early, ack.Sequence)
		ch <- r
	} else {
		w.waiting[ack.Sequence] = ch
	}
	w.mu.Unlock()
	t := time.NewTimer(opt.Wait)
	defer t.Stop()
	select {
	case r := <-ch:
		r.Failure = f
		return r, nil
	case <-t.C:
	case <-ctx.Done():
	}
	w.mu.Lock()
	delete(w.waiting, ack.Sequence)
	w.mu.Unlock()
	return Result{Failure: f, Outcome: NoAnswer, Reason: fmt.Sprintf("no answer within %s (OPS sequence %d of the command)", opt.Wait, ack.Sequence)}, nil
}
