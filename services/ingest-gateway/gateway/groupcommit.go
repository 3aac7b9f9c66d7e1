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

// MaxGroupCommitInFlight bounds GATEWAY_GROUP_COMMIT_IN_FLIGHT, well under
// the atomic batches the server keeps open per stream (50 by default,
// nats-server's max_batch_inflight_per_stream).
const MaxGroupCommitInFlight = 16

// DefaultGroupCommitInFlight is the batches committing at once by default.
const DefaultGroupCommitInFlight = 1

// errCodeDuplicateInProcess is the server's refusal of a message whose
// Nats-Msg-Id is still being stored (JSStreamDuplicateMessageConflict, on a
// cluster); nats.go names no constant for it.
const errCodeDuplicateInProcess jetstream.ErrorCode = 10158

// committer stores deliveries in JetStream by group commit.
//
// When nothing is in flight, a delivery is published at once, alone, as it
// would be without group commit. Deliveries that arrive while a publish is
// in flight join the open batch, and the open batch is published as one
// JetStream atomic batch (written and synced once, stored whole or not at
// all) once a commit slot is free (inFlight of them) and gather's
// condition holds. Each delivery learns its batch's outcome only after the
// server acknowledged the commit.
//
// A delivery whose Nats-Msg-Id is already in an open batch or in a commit
// in flight is not published again: it waits for the first's outcome and
// is its duplicate (or shares its failure). The server would refuse a
// batch that holds one id twice, and, on a cluster, a message whose id
// another batch is still storing (error 10158).
//
// No goroutine outlives the work: a commit runs in a goroutine of its own,
// and a timer fires only while a batch waits.
type committer struct {
	js       jetstream.JetStream
	maxMsgs  int
	maxBytes int
	inFlight int
	timeout  time.Duration
	log      *slog.Logger
	metrics  commitMetrics

	mu sync.Mutex
	// committing counts the commits (and publishes alone) awaiting the
	// server's ack.
	committing int
	// open are the batches that wait for a commit slot, oldest first;
	// deliveries join the last one.
	open []*batch
	// first is the first delivery of each Nats-Msg-Id in an open batch or
	// in a commit in flight.
	first map[string]*pending
	// The open batch is committed once it holds want deliveries, or at
	// deadline (gather).
	want     int
	deadline time.Time
	timer    *time.Timer
	// answered and took are the last commit's, for the next gather.
	answered int
	took     time.Duration
	// holding, in tests, keeps every delivery in the open batch, and
	// stalled, when set, is waited for before a commit publishes.
	holding bool
	stalled <-chan struct{}
}

// newCommitter is the group commit of cfg; a bound left at 0 takes its default.
func newCommitter(js jetstream.JetStream, cfg Config, log *slog.Logger) *committer {
	c := &committer{
		js:       js,
		maxMsgs:  cfg.GroupCommitMaxMsgs,
		maxBytes: cfg.GroupCommitMaxBytes,
		inFlight: cfg.GroupCommitInFlight,
		timeout:  cfg.PublishTimeout,
		log:      log,
		metrics:  newCommitMetrics(),
		first:    map[string]*pending{},
	}
	if c.maxMsgs <= 0 || c.maxMsgs > MaxGroupCommitMsgs {
		c.maxMsgs = MaxGroupCommitMsgs
	}
	if c.maxBytes <= 0 {
		c.maxBytes = DefaultGroupCommitMaxBytes
	}
	if c.inFlight <= 0 || c.inFlight > MaxGroupCommitInFlight {
		c.inFlight = DefaultGroupCommitInFlight
	}
	return c
}

// pending is one delivery waiting for its outcome.
type pending struct {
	msg  *nats.Msg
	id   string
	size int
	// done receives the outcome once; buffered, so that no one waits for a
	// caller that went away.
	done chan outcome
	// duplicates are the deliveries of the same id that arrived while this
	// one was open or in flight; they share its outcome.
	duplicates []*pending
}

type outcome struct {
	duplicate bool
	err       error
}

// batch is an atomic batch being formed. Its first message is sent to the
// server as soon as a second delivery joins (see join); the others are
// sent with the commit.
type batch struct {
	members []*pending
	bytes   int
	full    bool
	// pub is the batch on the server, once its first message is sent.
	pub jetstreamext.BatchPublisher
	// early is done once the first message is sent; firstErr is its failure.
	early    sync.WaitGroup
	firstErr error
}

type commitMetrics struct {
	batchSize prometheus.Histogram
	fallbacks prometheus.Counter
	waiting   prometheus.Gauge
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
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "brokerflow_gateway_commit_waiting",
			Help: "Deliveries waiting for the ack of the publish or batch that stores them.",
		}),
	}
}

func (m commitMetrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.batchSize, m.fallbacks, m.waiting}
}

// store persists msg and returns whether it was a duplicate (its
// Nats-Msg-Id already stored within the dedup window), after JetStream's
// ack of the publish or batch that carried it. The error is the publish's,
// or ctx's when ctx ended first (the message may then be stored or not:
// once sent, a message is committed with its batch).
func (c *committer) store(ctx context.Context, msg *nats.Msg) (duplicate bool, err error) {
	p := &pending{msg: msg, id: msg.Header.Get(jetstream.MsgIDHeader), size: msgSize(msg), done: make(chan outcome, 1)}
	c.metrics.waiting.Inc()
	defer c.metrics.waiting.Dec()
	c.mu.Lock()
	switch f := c.first[p.id]; {
	case f != nil:
		f.duplicates = append(f.duplicates, p)
		c.mu.Unlock()
	case c.committing == 0 && len(c.open) == 0 && !c.holding && !c.gathering(time.Now()):
		// Nothing in flight: published at once, alone.
		c.first[p.id] = p
		c.committing++
		c.mu.Unlock()
		start := time.Now()
		o := c.publishOne(ctx, msg)
		c.metrics.batchSize.Observe(1)
		c.finish([]*pending{p}, map[*pending]outcome{p: o}, time.Since(start))
	default:
		c.first[p.id] = p
		second, first := c.join(p)
		c.maybeCommit()
		c.mu.Unlock()
		if second != nil {
			c.sendFirst(second, first)
		}
	}
	select {
	case o := <-p.done:
		return o.duplicate, o.err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// join adds p to the last open batch, or to a new one when there is none
// or it is full, and returns that batch and its first delivery when p is
// its second: the caller then sends the first with sendFirst, without c.mu.
// c.mu is held.
func (c *committer) join(p *pending) (second *batch, first *pending) {
	var b *batch
	if n := len(c.open); n > 0 && !c.open[n-1].full {
		b = c.open[n-1]
		if b.bytes+p.size > c.maxBytes {
			b.full = true
			b = nil
		}
	}
	if b == nil {
		b = &batch{}
		c.open = append(c.open, b)
	}
	b.members = append(b.members, p)
	b.bytes += p.size
	b.full = b.full || len(b.members) >= c.maxMsgs
	if len(b.members) == 2 {
		b.early.Add(1)
		return b, b.members[0]
	}
	return nil, nil
}

// sendFirst sends b's first delivery to the server, opening the atomic
// batch there. The server makes each batch's staging store (on a single
// server with file storage, a file store of its own, created, synced and
// removed per batch: most of a batch's cost) when its first message comes,
// so it does that while the batch is still forming and the commit before
// is answered. Only the first goes early: messages that trickle in one by
// one made the commit slower than sending them all at once. A batch of
// one is not sent early: it is published alone, without staging.
func (c *committer) sendFirst(b *batch, first *pending) {
	defer b.early.Done()
	// No I/O here. No flow control: the commit's ack (or error) answers
	// for the batch.
	b.pub, b.firstErr = jetstreamext.NewBatchPublisher(c.js, jetstreamext.BatchFlowControl{AckFirst: false})
	if b.firstErr == nil {
		b.firstErr = b.pub.AddMsg(first.msg)
	}
}

// gathering reports whether the deliveries just answered are still
// awaited for the open batch. c.mu is held.
func (c *committer) gathering(now time.Time) bool {
	return c.want > 0 && now.Before(c.deadline)
}

// maxGather bounds gather's wait.
const maxGather = 10 * time.Millisecond

// maybeCommit commits the oldest open batches while a commit slot is free
// and each is full or gathered. c.mu is held.
//
// Gather: the senders just answered often send again at once (a client
// with more webhooks to send). Without a pause, the first of them would be
// committed alone and the others would queue behind it, and commits would
// alternate between one delivery and the rest, each paying a whole commit.
// So after a commit of several deliveries, or when deliveries already
// wait, the open batch waits for as many more as were just answered, for
// at most half the commit's time (and maxGather): a batch's cost is mostly
// fixed (JetStream stages each batch in a store of its own), so a short
// wait that merges two commits into one saves most of one. A delivery
// alone, at low load, waits for nobody: after a commit of one with nothing
// open, the next delivery is published at once.
func (c *committer) maybeCommit() {
	now := time.Now()
	for len(c.open) > 0 && c.committing < c.inFlight && !c.holding {
		b := c.open[0]
		if !b.full && len(b.members) < c.want && now.Before(c.deadline) {
			c.wakeAt(c.deadline)
			return
		}
		c.open = c.open[1:]
		c.committing++
		// The next open batch, when another slot is free, waits for as many
		// deliveries as the last commit answered.
		c.want, c.deadline = c.answered, now.Add(c.pause())
		go c.commit(b, c.stalled)
	}
}

// pause is how long an open batch waits for the senders just answered.
func (c *committer) pause() time.Duration {
	return min(c.took/2, maxGather)
}

// wakeAt makes the timer check the open batches at t. c.mu is held.
func (c *committer) wakeAt(t time.Time) {
	d := time.Until(t)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.maybeCommit()
		})
		return
	}
	c.timer.Reset(d)
}

// commit commits b and tells each of its deliveries the outcome.
func (c *committer) commit(b *batch, stalled <-chan struct{}) {
	if stalled != nil {
		<-stalled
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	c.metrics.batchSize.Observe(float64(len(b.members)))
	var out map[*pending]outcome
	if len(b.members) == 1 {
		p := b.members[0]
		out = map[*pending]outcome{p: c.publishOne(ctx, p.msg)}
	} else {
		b.early.Wait()
		out = c.publishBatch(ctx, b)
	}
	c.finish(b.members, out, time.Since(start))
}

// finish tells the deliveries of a commit that took so long their
// outcomes, and those of their duplicates, frees the commit's slot and
// sets the next gather.
func (c *committer) finish(members []*pending, out map[*pending]outcome, took time.Duration) {
	answered := 0
	c.mu.Lock()
	c.committing--
	for _, p := range members {
		delete(c.first, p.id)
		answered += 1 + len(p.duplicates)
	}
	c.answered, c.took = answered, took
	open := 0
	if len(c.open) > 0 {
		open = len(c.open[0].members)
	}
	c.want, c.deadline = 0, time.Time{}
	if open > 0 || answered >= 2 {
		c.want, c.deadline = min(open+answered, c.maxMsgs), time.Now().Add(c.pause())
	}
	c.maybeCommit()
	c.mu.Unlock()
	for _, p := range members {
		o := out[p]
		p.done <- o
		for _, d := range p.duplicates {
			d.done <- outcome{duplicate: true, err: o.err}
		}
	}
}

// publishBatch sends the rest of b, whose first message was sent, and
// commits it. A batch the server refuses because one of its messages is
// already stored is published again one message at a time, so that the
// duplicate is told so and the others are stored; any other failure is
// every message's.
func (c *committer) publishBatch(ctx context.Context, b *batch) map[*pending]outcome {
	msgs := b.members
	out := make(map[*pending]outcome, len(msgs))
	err := b.firstErr
	for _, p := range msgs[1 : len(msgs)-1] {
		if err != nil {
			break
		}
		err = b.pub.AddMsg(p.msg)
	}
	if err == nil {
		_, err = b.pub.CommitMsg(ctx, msgs[len(msgs)-1].msg)
	}
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
