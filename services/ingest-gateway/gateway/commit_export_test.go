package gateway

import "time"

// HoldCommits makes the group commit behave as if a publish were in flight:
// deliveries queue until release starts the publishing loop, so a test
// knows exactly which deliveries share a batch. The gateway must be built
// with GroupCommit on. A publishing loop still finishing (it answers its
// batch before it stops) is waited for.
func (g *Gateway) HoldCommits() (release func()) {
	c := g.commits
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		if !c.running {
			c.running = true
			c.mu.Unlock()
			return func() { go c.loop() }
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			panic("HoldCommits: a publish stayed in flight for 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// QueuedCommits is the number of deliveries waiting for the next batch.
func (g *Gateway) QueuedCommits() int {
	c := g.commits
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}
