package quickbooks

import (
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// perSecond keeps the calls of one process within limit per window (the
// company's 10 a second), beside vendorapi's Pacer, which keeps the minute.
// A call counts from when it is sent until a window after its answer: the
// company counted it somewhere in between, so it has left the company's
// window by then whatever the network's delays. golang.org/x/time/rate is a
// token bucket: it spaces calls, but cannot know when an answer came, and a
// call delayed on the way would land in the same second as the next ones.
type perSecond struct {
	limit  int
	window time.Duration
	next   http.RoundTripper

	mu       sync.Mutex
	inFlight int
	answered []time.Time // answer times still in the window, oldest first
	wake     chan struct{}
}

func newPerSecond(limit int, window time.Duration, next http.RoundTripper) *perSecond {
	return &perSecond{limit: max(limit, 1), window: window, next: next, wake: make(chan struct{})}
}

func (p *perSecond) RoundTrip(req *http.Request) (*http.Response, error) {
	for {
		p.mu.Lock()
		now := time.Now()
		i := 0
		for i < len(p.answered) && !now.Before(p.answered[i].Add(p.window)) {
			i++
		}
		p.answered = p.answered[i:]
		if p.inFlight+len(p.answered) < p.limit {
			p.inFlight++
			p.mu.Unlock()
			break
		}
		wait := p.window
		if len(p.answered) > 0 {
			wait = p.answered[0].Add(p.window).Sub(now)
		}
		wake := p.wake
		p.mu.Unlock()
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-req.Context().Done():
			t.Stop()
			return nil, req.Context().Err()
		case <-wake:
			t.Stop()
		case <-t.C:
		}
	}
	resp, err := p.next.RoundTrip(req)
	p.mu.Lock()
	p.inFlight--
	p.answered = append(p.answered, time.Now())
	close(p.wake)
	p.wake = make(chan struct{})
	p.mu.Unlock()
	return resp, err
}

// remarshal decodes v (a decoded JSON value) into out.
func remarshal(v, out any) error {
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}
