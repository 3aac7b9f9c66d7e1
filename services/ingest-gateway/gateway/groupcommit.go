package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// MaxGroupCommitMsgs is the most messages one atomic batch may hold: the
// server's default cap (nats-server's max_batch_size).
const MaxGroupCommitMsgs = 1000

// DefaultGroupCommitMaxBytes bounds the bytes of one atomic batch by default.
const DefaultGroupCommitMaxBytes = 8 << 20

// errCodeDuplicateInProcess is the server's refusal of a message whose
// Nats-Msg-Id is still being stored (JSStreamDuplicateMessageConflict, on a
// cluster); nats.go names no constant for it.
const errCodeDuplicateInProcess jetstream.ErrorCode = 10158

// committer stores deliveries in JetStream by group commit. When no publish
// is in flight, a delivery is published at once, alone, as it would be
// without group commit. While one is in flight, deliveries that arrive
// wait, and the next publish takes all of them (up to maxMsgs and maxBytes)
// as one JetStream atomic batch: written and synced once, stored whole or
// not at all. Each waiting delivery learns its batch's outcome only after
// the server acknowledged the commit.
//
// No goroutine outlives the work: the publishing loop starts with the
// first delivery that finds nothing in flight and ends when nothing waits.
type committer struct {
	js       jetstream.JetStream
	maxMsgs  int
	maxBytes int
	timeout  time.Duration
	log      *slog.Logger
	metrics  commitMetrics

	mu      sync.Mutex
	running bool
	queue   []*pending
	// wake, while the loop waits for answered deliveries to come back, is
	// closed once the queue holds want of them.
	wake chan struct{}
	want int
}

// newCommitter is the group commit of cfg; a bound left at 0 takes its default.
func newCommitter(js jetstream.JetStream, cfg Config, log *slog.Logger) *committer {
	c := &committer{
		js:       js,
		maxMsgs:  cfg.GroupCommitMaxMsgs,
		maxBytes: cfg.GroupCommitMaxBytes,
		timeout:  cfg.PublishTimeout,
		log:      log,
		metrics:  newCommitMetrics(),
	}
	if c.maxMsgs <= 0 || c.maxMsgs > MaxGroupCommitMsgs {
		c.maxMsgs = MaxGroupCommitMsgs
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultGroupCommitMaxBytes
	}
	return c
}

// pending is one delivery waiting for its outcome.
type pending struct {
	ctx  context.Context
	msg  *nats.Msg
	size int
	// done receives the outcome once; buffered, so the loop never waits
	// for a caller that went away.
	done chan outcome
}

type outcome struct {
	duplicate bool
	err       error
}

type commitMetrics struct {
	batchSize prometheus.Histogram
	fallbacks prometheus.Counter
}

func newCommitMetrics() commitMetrics {
	return commitMetrics{
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "brokerflow_gateway_commit_batch_size",
			Help:    "Messages stored by one publish of the group commit: 1 is a publish alone, more an atomic batch.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000},
		}),
		fallbacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "brokerflow_gateway_commit_fallbacks_total",
			Help: "Atomic batches refused because one of their messages was already stored, then published one by one.",
		}),
	}
}

func (m commitMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.batchSize, m.fallbacks}
}

// store persists msg and returns whether it was a duplicate (its
// Nats-Msg-Id already stored within the dedup window), after JetStream's
// ack of the publish or batch that carried it. The error is the publish's,
// or ctx's when ctx ended first (the message may then be stored or not).
func (c *committer) store(ctx context.Context, msg *nats.Msg) (duplicate bool, err error) {
	p := &pending{ctx: ctx, msg: msg, size: msgSize(msg), done: make(chan outcome, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	if c.wake != nil && len(c.queue) >= c.want {
		close(c.wake)
		c.wake = nil
	}
	if !c.running {
		c.running = true
		go c.loop()
	}
	c.mu.Unlock()
	select {
	case o := <-p.done:
		return o.duplicate, o.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// maxGather bounds gather's wait.
const maxGather = 10 * time.Millisecond

// loop publishes what waits, batch after batch, until nothing does.
func (c *committer) loop() {
	for {
		batch := c.next()
		if len(batch) == 0 {
			return
		}
		start := time.Now()
		c.commit(batch)
		c.gather(len(batch), time.Since(start))
	}
}

// gather runs after each publish. The senders just answered often send
// again at once (a client with more webhooks to send): without a pause,
// the first of them would find nothing in flight and be published alone,
// the others would queue behind it, and publishes would alternate between
// one delivery and the rest, each paying a whole commit (or, with
// deliveries already queued, between two halves). So after a batch of
// several deliveries, or when deliveries already wait, it waits for as
// many more as were just answered, for at most half the publish's time
// (and maxGather): a batch's cost is mostly fixed (JetStream stages each
// batch in a store of its own), so a short wait that merges two publishes
// into one saves most of a commit. A delivery alone, at low load, still
// waits for nobody: after a publish of one with nothing queued the loop
// ends, and the next delivery is published at once.
func (c *committer) gather(answered int, took time.Duration) {
	c.mu.Lock()
	want := min(len(c.queue)+answered, c.maxMsgs)
	if (len(c.queue) == 0 && answered < 2) || len(c.queue) >= want {
		c.mu.Unlock()
		return
	}
	wake := make(chan struct{})
	c.wake, c.want = wake, want
	c.mu.Unlock()
	t := time.NewTimer(min(took/2, maxGather))
	select {
	case <-wake:
	case <-t.C:
	}
	t.Stop()
	c.mu.Lock()
	c.wake = nil
	c.mu.Unlock()
}

// next takes the deliveries that waited during the last publish, in order,
// up to maxMsgs distinct messages and maxBytes (at least one delivery), or
// marks the loop stopped when none waits.
func (c *committer) next() []*pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) == 0 {
		c.running = false
		return nil
	}
	n, bytes := 0, 0
	for n < len(c.queue) && n < c.maxMsgs {
		size := c.queue[n].size
		if n > 0 && bytes+size > c.maxBytes {
			break
		}
		n, bytes = n+1, bytes+size
	}
	batch := c.queue[:n:n]
	c.queue = append([]*pending(nil), c.queue[n:]...)
	return batch
}

// commit publishes batch and tells each delivery its outcome. A delivery
// whose caller went away before its publish started is not published.
// Deliveries with the same Nats-Msg-Id are resolved here: the first is
// published, and the others are its duplicates (or share its failure),
// since the server refuses a batch that holds one id twice.
func (c *committer) commit(batch []*pending) {
	var (
		first = map[string]*pending{}
		msgs  []*pending
		dups  = map[*pending][]*pending{}
	)
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.done <- outcome{err: err}
			continue
		}
		id := p.msg.Header.Get(jetstream.MsgIDHeader)
		if f, ok := first[id]; ok {
			dups[f] = append(dups[f], p)
			continue
		}
		first[id] = p
		msgs = append(msgs, p)
	}
	if len(msgs) == 0 {
		return
	}
	c.metrics.batchSize.Observe(float64(len(msgs)))
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	for p, o := range c.publish(ctx, msgs) {
		p.done <- o
		for _, d := range dups[p] {
			d.done <- outcome{duplicate: true, err: o.err}
		}
	}
}

// publish stores msgs: one alone with a plain publish, several as one
// atomic batch. A batch the server refuses because one of its messages is
// already stored is published again one message at a time, so that the
// duplicate is told so and the others are stored; any other failure is
// every message's.
func (c *committer) publish(ctx context.Context, msgs []*pending) map[*pending]outcome {
	out := make(map[*pending]outcome, len(msgs))
	if len(msgs) == 1 {
		out[msgs[0]] = c.publishOne(ctx, msgs[0].msg)
		return out
	}
	batch := make([]*nats.Msg, len(msgs))
	for i, p := range msgs {
		batch[i] = p.msg
	}
	// No flow control: the commit's ack (or error) answers for the batch.
	_, err := jetstreamext.PublishMsgBatch(ctx, c.js, batch, jetstreamext.BatchFlowControl{AckFirst: false})
	switch {
	case err == nil:
		for _, p := range msgs {
			out[p] = outcome{}
		}
	case holdsStoredID(err):
		c.metrics.fallbacks.Inc()
		c.log.Info("an atomic batch held a message already stored; publishing its messages one by one", "messages", len(msgs))
		for _, p := range msgs {
			clearBatchHeaders(p.msg)
			out[p] = c.publishOne(ctx, p.msg)
		}
	default:
		err = fmt.Errorf("atomic batch of %d messages: %w", len(msgs), err)
		for _, p := range msgs {
			out[p] = outcome{err: err}
		}
	}
	return out
}

func (c *committer) publishOne(ctx context.Context, msg *nats.Msg) outcome {
	ack, err := c.js.PublishMsg(ctx, msg)
	if err != nil {
		return outcome{err: err}
	}
	return outcome{duplicate: ack.Duplicate}
}

// holdsStoredID reports the server's refusal of a batch holding a message
// whose Nats-Msg-Id is already stored (or, on a cluster, still being stored).
func holdsStoredID(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstreamext.JSErrCodeBatchPublishDuplicateMsgID ||
		apiErr.ErrorCode == errCodeDuplicateInProcess
}

// clearBatchHeaders makes a message of a refused batch a plain message again.
func clearBatchHeaders(m *nats.Msg) {
	for _, h := range []string{jetstreamext.BatchIDHeader, jetstreamext.BatchSeqHeader, jetstreamext.BatchCommitHeader} {
		m.Header.Del(h)
	}
	m.Reply = ""
}

// msgSize is what a message weighs against the batch's byte bound.
func msgSize(m *nats.Msg) int {
	n := len(m.Subject) + len(m.Data)
	for k, vs := range m.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
