package vendorapi

import (
	"context"
	"math"
	"net/http"
	"slices"
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
// It spaces its calls evenly at Target of the limit, less the others' use,
// and never lets a window hold more of its calls than the limit less the
// most the others may have used. That cap is safe because a call counts as
// ours from the moment it is sent until a window after its answer came (the
// vendor counted it somewhere in between, so it leaves the vendor's window
// no later), a call whose answer has not come yet counts too, and every
// call of ours the vendor may have counted unseen is taken as the others'.
// The others' use is read from each answer, so a replica that speeds up is
// seen within a call.
//
// A Client with Config.Pacer waits for it before each counted call and
// feeds it each answer. Clients of one account share one Pacer.
type Pacer struct {
	headers RateHeaders
	exempt  func(*http.Request) bool
	lim     *rate.Limiter

	mu           sync.Mutex
	limit        int
	window       time.Duration
	ours         []answered  // our counted calls answered, still in the window
	inFlight     []time.Time // when our counted calls not answered yet were sent
	others       int         // the account's calls in the window that are not ours, as last seen
	othersAtMost int         // the same, counting every call of ours that may be in it as theirs
	pausedUntil  time.Time
	now          func() time.Time
}

// answered is one of our counted calls: when it was sent and answered.
type answered struct{ sent, at time.Time }

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

// Target is the share of the account's limit the pacer aims for, for all
// replicas together. What it leaves, 3 calls in 100, covers the others'
// calls sent and not yet seen in an answer.
const Target = 0.97

// NewPacer paces calls to cfg.Limit per cfg.Window.
func NewPacer(cfg PacerConfig) *Pacer {
	if cfg.Headers == (RateHeaders{}) {
		cfg.Headers = XRateLimit
	}
	p := &Pacer{headers: cfg.Headers, exempt: cfg.Exempt, limit: max(cfg.Limit, 1), window: cfg.Window, now: time.Now}
	if p.window <= 0 {
		p.window = time.Second
	}
	// A small burst: the calls go out evenly, and the window's count caps
	// them again.
	p.lim = rate.NewLimiter(p.share(0), max(1, p.limit/50))
	return p
}

// budget is how many calls the window holds for all replicas.
// The caller holds mu, or owns p alone.
func (p *Pacer) budget() int { return int(Target * float64(p.limit)) }

// share is the rate left for us when others use others calls per window.
// The caller holds mu, or owns p alone.
func (p *Pacer) share(others int) rate.Limit {
	left := float64(p.budget() - others)
	return rate.Limit(max(left, 1) / p.window.Seconds())
}

// counts says whether the vendor counts req against the quota.
func (p *Pacer) counts(req *http.Request) bool { return p.exempt == nil || !p.exempt(req) }

// wait blocks until a call fits: not paused, within the smoothed rate, and
// within the window's budget minus what the others have used in it. A call
// it lets through (it returns the time it was sent) must be followed by done.
func (p *Pacer) wait(ctx context.Context) (time.Time, error) {
	if err := p.lim.Wait(ctx); err != nil {
		return time.Time{}, err
	}
	for {
		p.mu.Lock()
		now := p.now()
		d := p.pausedUntil.Sub(now)
		if d <= 0 {
			p.ours = p.prune()
			if len(p.ours)+len(p.inFlight) < max(p.limit-p.othersNow(), 1) {
				p.inFlight = append(p.inFlight, now)
				p.mu.Unlock()
				return now, nil
			}
			// Full: wait for our oldest answer to leave the window, or,
			// with none, for the others' calls to.
			d = p.window / 20
			if len(p.ours) > 0 {
				d = p.ours[0].at.Add(p.window).Sub(now)
			}
		}
		p.mu.Unlock()
		t := time.NewTimer(max(d, time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return time.Time{}, ctx.Err()
		case <-t.C:
		}
	}
}

// othersNow is the most the others may have used of the window by now:
// what was last seen, counting as theirs every call of ours the vendor may
// have counted, and what they may have sent since: a call, or, when they
// are seen busy, what the pacer leaves of the limit (1 - Target), their
// calls in flight. The caller holds mu.
func (p *Pacer) othersNow() int {
	switch {
	case p.othersAtMost == 0:
		return 0
	case p.others == 0:
		return p.othersAtMost + 1
	}
	return p.othersAtMost + max(1, int(math.Ceil((1-Target)*float64(p.limit))))
}

// prune drops our calls that have left the window. The caller holds mu.
func (p *Pacer) prune() []answered {
	cut := p.now().Add(-p.window)
	i := 0
	for i < len(p.ours) && p.ours[i].at.Before(cut) {
		i++
	}
	return p.ours[i:]
}

// done ends the call wait let through at sent: it counts as ours for a
// window from now, and the answer's headers (nil when there was none) tell
// the account's state.
func (p *Pacer) done(sent time.Time, h http.Header) {
	p.mu.Lock()
	if i := slices.Index(p.inFlight, sent); i >= 0 {
		p.inFlight = slices.Delete(p.inFlight, i, i+1)
	}
	now := p.now()
	p.ours = append(p.prune(), answered{sent: sent, at: now})
	// Our calls sent before this one have likely reached the vendor: its
	// count includes them. It certainly includes this one and those
	// answered before this one was sent that are still in the window.
	likely, sure := 0, 0
	for _, t := range p.inFlight {
		if t.Before(sent) {
			likely++
		}
	}
	for _, a := range p.ours {
		if !a.at.After(sent) && a.sent.After(now.Add(-p.window)) || a.sent.Equal(sent) {
			sure++
		}
	}
	p.mu.Unlock()
	if h != nil {
		p.observe(h, likely, sure)
	}
}

// observe adapts to the account's state as the vendor reports it: the
// calls it counts beyond our answered ones and those in flight it has
// seen are the others' (a call of ours it counted early only makes the
// pacer careful).
func (p *Pacer) observe(h http.Header, likely, sure int) {
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
	p.others = max(0, limit-remaining-len(p.ours)-likely)
	p.othersAtMost = max(0, limit-remaining-sure)
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
