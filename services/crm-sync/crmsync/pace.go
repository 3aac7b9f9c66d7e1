package crmsync

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Pacer keeps a CRM account under its quota. The quota belongs to the
// account and every replica shares it, so the CRM's own X-RateLimit-*
// headers are the shared truth: the pacer starts from the documented limit,
// learns the account's real limit and window from the headers, and gives
// itself what the others leave: the calls the account has used in the
// window beyond its own are someone else's. A 429 stops every call until
// its Retry-After has passed.
//
// It is an http.RoundTripper, so it wraps any adapter's HTTP client.
type Pacer struct {
	base   http.RoundTripper
	exempt func(*http.Request) bool
	lim    *rate.Limiter

	mu          sync.Mutex
	limit       int
	window      time.Duration
	ours        []time.Time // our counted calls still in the window
	others      int         // the account's calls in the window that are not ours, as last seen
	pausedUntil time.Time
	now         func() time.Time
}

// headroom is the share of the quota the pacer aims for, leaving room for
// the skew between its clock and the CRM's window.
const headroom = 0.85

// NewPacer paces calls to limit per window. exempt, when not nil, names the
// calls the CRM does not count (Follow Up Boss: POST /v1/events).
func NewPacer(base http.RoundTripper, limit int, window time.Duration, exempt func(*http.Request) bool) *Pacer {
	if base == nil {
		base = http.DefaultTransport
	}
	p := &Pacer{base: base, exempt: exempt, limit: limit, window: window, now: time.Now}
	// A small burst: at most headroom of the limit plus limit/20 can fall
	// in any one window.
	p.lim = rate.NewLimiter(p.share(0), max(1, limit/20))
	return p
}

// share is the rate left for us when others use others calls per window.
// The caller holds mu, or owns p alone.
func (p *Pacer) share(others int) rate.Limit {
	left := headroom*float64(p.limit) - float64(others)
	return rate.Limit(max(left, 1) / p.window.Seconds())
}

// RoundTrip waits for the quota, sends the request, and learns from the answer.
func (p *Pacer) RoundTrip(req *http.Request) (*http.Response, error) {
	counted := p.exempt == nil || !p.exempt(req)
	if counted {
		if err := p.wait(req.Context()); err != nil {
			return nil, err
		}
	}
	resp, err := p.base.RoundTrip(req)
	if err == nil && counted {
		p.observe(resp)
	}
	return resp, err
}

// wait blocks until a call fits: not paused, within the smoothed rate, and
// within the window's budget, which is our share of the quota minus what the
// others have used in the window.
func (p *Pacer) wait(ctx context.Context) error {
	if err := p.lim.Wait(ctx); err != nil {
		return err
	}
	for {
		p.mu.Lock()
		now := p.now()
		d := p.pausedUntil.Sub(now)
		if d <= 0 {
			p.ours = p.prune()
			budget := int(headroom*float64(p.limit)) - p.others
			if len(p.ours) < max(budget, 1) {
				p.ours = append(p.ours, now)
				p.mu.Unlock()
				return nil
			}
			// Full: wait for our oldest call to leave the window.
			d = p.ours[0].Add(p.window).Sub(now)
		}
		p.mu.Unlock()
		t := time.NewTimer(max(d, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// prune drops our calls that have left the window. The caller holds mu.
func (p *Pacer) prune() []time.Time {
	cut := p.now().Add(-p.window)
	i := 0
	for i < len(p.ours) && p.ours[i].Before(cut) {
		i++
	}
	return p.ours[i:]
}

// observe adapts to the account's state as the CRM reports it.
func (p *Pacer) observe(resp *http.Response) {
	if resp.StatusCode == http.StatusTooManyRequests {
		p.pause(retryAfter(resp.Header))
		return
	}
	limit, err1 := strconv.Atoi(resp.Header.Get("X-RateLimit-Limit"))
	remaining, err2 := strconv.Atoi(resp.Header.Get("X-RateLimit-Remaining"))
	windowS, err3 := strconv.Atoi(resp.Header.Get("X-RateLimit-Window"))
	if err1 != nil || err2 != nil || err3 != nil || limit <= 0 || windowS <= 0 {
		return
	}
	p.mu.Lock()
	p.limit, p.window = limit, time.Duration(windowS)*time.Second
	p.ours = p.prune()
	p.others = max(0, limit-remaining-len(p.ours))
	share := p.share(p.others)
	p.mu.Unlock()
	p.lim.SetLimit(share)
	if remaining <= 0 {
		// Nothing left: wait for the oldest calls to leave the window.
		p.pause(p.window / 10)
	}
}

func (p *Pacer) pause(d time.Duration) {
	if d <= 0 {
		d = time.Second
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if until := p.now().Add(d); until.After(p.pausedUntil) {
		p.pausedUntil = until
	}
}

// FUBExempt names the calls Follow Up Boss does not count against the
// account's quota: POST /v1/events is unlimited.
func FUBExempt(req *http.Request) bool {
	return req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/v1/events")
}
