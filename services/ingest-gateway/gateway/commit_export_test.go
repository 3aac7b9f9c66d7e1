package gateway

import (
	"time"

	dto "github.com/prometheus/client_model/go"
)

// HoldCommits makes the group commit behave as if a commit were in flight:
// deliveries join the open batch until release commits it, so a test
// knows exactly which deliveries share a batch. The gateway must be built
// with GroupCommit on. A commit still finishing is waited for.
func (g *Gateway) HoldCommits() (release func()) {
	c := g.commits
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		if c.committing == 0 && len(c.open) == 0 {
			c.holding = true
			c.mu.Unlock()
			return func() {
				c.mu.Lock()
				defer c.mu.Unlock()
				c.holding = false
				c.want, c.deadline = 0, time.Time{}
				c.maybeCommit()
			}
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			panic("HoldCommits: a commit stayed in flight for 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// QueuedCommits is the number of deliveries waiting for the next commit:
// those in the open batches and their duplicates.
func (g *Gateway) QueuedCommits() int {
	c := g.commits
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, b := range c.open {
		for _, p := range b.members {
			n += 1 + len(p.duplicates)
		}
	}
	return n
}

// StallCommits makes each commit that starts from now on wait, in flight,
// until resume; so a test can have several batches in flight at once.
func (g *Gateway) StallCommits() (resume func()) {
	c := g.commits
	ch := make(chan struct{})
	c.mu.Lock()
	c.stalled = ch
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		c.stalled = nil
		c.mu.Unlock()
		close(ch)
	}
}

// CommitsInFlight is the number of commits (and publishes alone) awaiting
// the server's ack.
func (g *Gateway) CommitsInFlight() int {
	c := g.commits
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.committing
}

// PendingCommits is the number of deliveries waiting for their commit's
// ack: in the open batches, in flight, or a duplicate of one of those.
func (g *Gateway) PendingCommits() int {
	m := &dto.Metric{}
	if err := g.commits.metrics.waiting.Write(m); err != nil {
		panic(err)
	}
	return int(m.GetGauge().GetValue())
}
