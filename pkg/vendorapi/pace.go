package vendorapi

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Pacer keeps a vendor account under its quota. The quota belongs to the
// account and every replica shares it, so the vendor's own rate-limit
// headers are the shared truth: the pacer starts from the documented limit,
// learns the account's real limit and window from the headers, and gives
// itself what the others leave: the calls the account has used in the
// window beyond its own are someone else's. A throttled answer (a 429, or
// what the vendor's Classifier calls Throttled) stops every call until its
// Retry-After has passed.
//
// A Client with Config.Pacer waits for it before each counted call and
// feeds it each answer. Clients of one account share one Pacer.
type Pacer struct {
	headers RateHeaders
	exempt  func(*http.Request) bool
	lim     *rate.Limiter

	mu          sync.Mutex
	limit       int
	window      time.Duration
	ours        []time.Time // our counted calls still in the window
	others      int         // the account's calls in the window that are not ours, as last seen
	pausedUntil time.Time
	now         func() time.Time
}

// RateHeaders names a vendor's rate-limit headers: the limit, the calls left
// in the window, and the window in seconds. A header left empty is not read;
// without a Window header the window is the configured one (Dotloop's
// documented minute).
type RateHeaders struct {
	Limit     string
	Remaining string
	Window    string
}

// XRateLimit are the X-RateLimit-Limit, -Remaining and -Window headers that
// Follow Up Boss sends (and the sandbox's LionDesk).
var XRateLimit = RateHeaders{Limit: "X-RateLimit-Limit", Remaining: "X-RateLimit-Remaining", Window: "X-RateLimit-Window"}

// PacerConfig is an account's documented quota.
type PacerConfig struct {
	// Limit calls per Window; both must be positive.
	Limit  int
	Window time.Duration
	// Headers are where the vendor reports the account's state; the zero
	// value means XRateLimit.
	Headers RateHeaders
	// Exempt, when not nil, names the calls the vendor does not count
	// (Follow Up Boss: POST /v1/events).
	Exempt func(*http.Request) bool
}

// headroom is the share of the quota the pacer aims for, leaving room for
// the skew between its clock and the vendor's window.
const headroom = 0.85

// NewPacer paces calls to cfg.Limit per cfg.Window.
func NewPacer(cfg PacerConfig) *Pacer {
	if cfg.Headers == (RateHeaders{}) {
		cfg.Headers = XRateLimit
	}
	p := &Pacer{headers: cfg.Headers, exempt: cfg.Exempt, limit: max(cfg.Limit, 1), window: cfg.Window, now: time.Now}
	if p.window <= 0 {
		p.window = time.Second
	}
	// A small burst: at most headroom of the limit plus limit/20 can fall
	// in any one window.
	p.lim = rate.NewLimiter(p.share(0), max(1, p.limit/20))
	return p
}

// share is the rate left for us when others use others calls per window.
// The caller holds mu, or owns p alone.
func (p *Pacer) share(others int) rate.Limit {
	left := headroom*float64(p.limit) - float64(others)
	return rate.Limit(max(left, 1) / p.window.Seconds())
}

// counts says whether the vendor counts req against the quota.
func (p *Pacer) counts(req *http.Request) bool { return p.exempt == nil || !p.exempt(req) }

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

// observe adapts to the account's state as the vendor reports it.
func (p *Pacer) observe(h http.Header) {
	limit, err1 := strconv.Atoi(h.Get(p.headers.Limit))
	remaining, err2 := strconv.Atoi(h.Get(p.headers.Remaining))
	if err1 != nil || err2 != nil || limit <= 0 {
		return
	}
	p.mu.Lock()
	window := p.window
	if p.headers.Window != "" {
		// A vendor that names its window in a header: only a valid one counts.
		windowS, err := strconv.Atoi(h.Get(p.headers.Window))
		if err != nil || windowS <= 0 {
			p.mu.Unlock()
			return
		}
		window = time.Duration(windowS) * time.Second
	}
	p.limit, p.window = limit, window
	p.ours = p.prune()
	p.others = max(0, limit-remaining-len(p.ours))
	share := p.share(p.others)
	p.mu.Unlock()
	p.lim.SetLimit(share)
	if remaining <= 0 {
		// Nothing left: wait for the oldest calls to leave the window.
		p.Pause(p.window / 10)
	}
}

// Pause stops every counted call for d (at least a second).
func (p *Pacer) Pause(d time.Duration) {
	d = max(d, time.Second)
	p.mu.Lock()
	defer p.mu.Unlock()
	if until := p.now().Add(d); until.After(p.pausedUntil) {
		p.pausedUntil = until
	}
}
