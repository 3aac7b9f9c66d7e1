package gateway

// HoldCommits makes the group commit behave as if a publish were in flight:
// deliveries queue until release starts the publishing loop, so a test
// knows exactly which deliveries share a batch. The gateway must be built
// with GroupCommit on, and nothing may be in flight.
func (g *Gateway) HoldCommits() (release func()) {
	c := g.commits
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		panic("HoldCommits: a publish is in flight")
	}
	c.running = true
	return func() { go c.loop() }
}

// QueuedCommits is the number of deliveries waiting for the next batch.
func (g *Gateway) QueuedCommits() int {
	c := g.commits
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}
