package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// KitOptions describes one emulated vendor to its Kit. Name and Auth are required; every other
// field has a default.
type KitOptions struct {
	// Name is the vendor's path segment: its API is served under /<Name>/ and its knobs and
	// state under /_sandbox/<Name>/.
	Name string
	// Title heads the vendor's section of the page (default: Name), and Note follows it; the kit
	// adds where the same state is as JSON.
	Title, Note string
	// Auth decides whether a call to the API is authenticated. It returns the account the call
	// acts for, which is its credential (an API key, an access token): rate limits count per
	// account, and ExpireToken expires one. Or it writes the vendor's refusal and returns false;
	// Kit.Unauthorized writes the usual 401.
	Auth func(w http.ResponseWriter, r *http.Request) (account string, ok bool)
	// ErrorBody is the vendor's error body for a status and a message. The kit answers with it
	// for a path the vendor does not emulate, an expired token, a call over the rate limit and
	// a fault without a Body. Default: {"error":"<message>"}.
	ErrorBody func(status int, message string) any
	// NotFound answers a call to a path the vendor does not emulate (after the gate).
	// Default: 404 with ErrorBody.
	NotFound http.HandlerFunc
	// Expired answers a call whose token expired (ExpireToken, or a Fault with ExpireToken).
	// Default: 401 with ErrorBody.
	Expired http.HandlerFunc
	// Throttled answers a call over the rate limit, after the rate-limit headers are set.
	// Default: 429 with Retry-After and ErrorBody.
	Throttled func(w http.ResponseWriter, r *http.Request, retryAfter time.Duration)
	// RateLimit, when set, limits each account over a sliding window and puts the rate-limit
	// headers on every authenticated answer. Nil: no limit and no headers.
	RateLimit *RateLimit
	// Webhooks signs and delivers the webhooks the vendor sends (NewDelivery, Send).
	Webhooks WebhookOptions
	// State is the vendor's state, served as JSON at GET /_sandbox/<Name>/state. Default: {}.
	State func() any
	// Tables show the vendor's state on the page (newest first, by convention).
	Tables func() []PageTable
	// Reset forgets the vendor's own state; Kit.Reset calls it after forgetting the kit's.
	Reset func()
	// Now is the vendor's clock; nil means time.Now.
	Now func() time.Time
}

// RateLimit is a vendor's rate limit: at most Limit calls per account (and bucket) over a
// sliding Window. A call over it is not processed: it answers 429 with Retry-After (the
// seconds until a slot frees, at least 1) and the vendor's error body.
type RateLimit struct {
	Limit int
	// Window defaults to 10 s.
	Window time.Duration
	// Headers names the vendor's rate-limit headers. The zero value is X-RateLimit-Limit,
	// X-RateLimit-Remaining, X-RateLimit-Window (seconds) and X-RateLimit-Context (the bucket's
	// name); a header with an empty name is not sent.
	Headers RateHeaders
	// Bucket, when set, picks the bucket a call counts in; nil: every call counts in one bucket
	// of Limit.
	Bucket func(r *http.Request, account string) Bucket
	// Also are more limits every call counts against besides Limit per Window, each with its
	// own window (QuickBooks Online: 500 a minute and 10 a second). A call over any of them is
	// refused and counted in none.
	Also []RateWindow
}

// RateWindow is one more limit: Limit calls over a sliding Window.
type RateWindow struct {
	Limit  int
	Window time.Duration
}

// RateHeaders are the names of a vendor's rate-limit headers.
type RateHeaders struct {
	Limit, Remaining, Window, Context string
}

// defaultRateHeaders are Follow Up Boss's header names, which LionDesk's emulation borrows.
var defaultRateHeaders = RateHeaders{
	Limit: "X-RateLimit-Limit", Remaining: "X-RateLimit-Remaining",
	Window: "X-RateLimit-Window", Context: "X-RateLimit-Context",
}

// Bucket is what a call counts against.
type Bucket struct {
	// Name tells buckets apart, and is sent in the Context header.
	Name string
	// Limit is the bucket's limit per window; 0 means RateLimit.Limit.
	Limit int
	// Unlimited counts nothing: the headers say Limit, all of it remaining.
	Unlimited bool
	// Key, when set, is what the call counts under instead of its account: a vendor whose
	// limit belongs to a company, whatever token calls for it, names the company.
	Key string
}

// Usage is how an emulation's quota has been used since the last reset: the calls counted
// against it, and the calls refused with 429. Unlimited calls and failing faults are in neither.
type Usage struct {
	Counted int `json:"counted"`
	Refused int `json:"refused"`
}

func (u *Usage) count(allowed bool) {
	if allowed {
		u.Counted++
	} else {
		u.Refused++
	}
}

// Kit is the plumbing every emulated vendor shares: the mount of its API under /<name>/ behind
// a gate (latency, auth, expired tokens, faults, rate limit, in that order), the knobs under
// /_sandbox/<name>/ (state, faults, reset), the webhook sender and the page section. A vendor
// embeds it, gives it its options, and adds its own routes with HandleFunc and HandleKnob.
// Its methods are safe for concurrent use; it never calls the vendor while holding its lock.
type Kit struct {
	opts   KitOptions
	api    *http.ServeMux
	knobs  *http.ServeMux
	sender *webhookSender

	mu      sync.Mutex
	faults  faultQueue
	limits  *slidingWindow
	also    []*slidingWindow
	expired map[string]bool
	latency time.Duration
	usage   Usage
	closed  bool
	onCall  []func(Call)
}

// Call is one call an emulated API answered, as OnCall reports it.
type Call struct {
	Method, Path string
	Query        url.Values
	// Body is the request's body (the API's handler read the same bytes).
	Body []byte
	// Counted says the call counted against the quota and was let through.
	Counted bool
	// CountedAt is when the rate limit took the call (for a counted call,
	// its place in the sliding window), on the kit's clock (KitOptions.Now).
	CountedAt time.Time
	// Start is when the call arrived, before the kit's latency; End when
	// its answer was written.
	Start, End time.Time
}

// OnCall registers fn to be told of every call that reached the API's
// handler (benchmarks attribute calls and their time with it). fn runs on
// the call's goroutine, after the answer is written.
func (k *Kit) OnCall(fn func(Call)) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.onCall = append(k.onCall, fn)
}

// NewKit returns the kit of one vendor, with its default routes: a NotFound for every path of
// the API, and the knobs GET state, POST and DELETE faults, and POST reset. It panics without a
// Name or an Auth, or with a RateLimit that has no positive Limit.
func NewKit(o KitOptions) *Kit {
	if o.Name == "" || strings.Contains(o.Name, "/") || o.Auth == nil {
		panic("sandbox: a kit needs a Name (one path segment) and an Auth")
	}
	if o.Title == "" {
		o.Title = o.Name
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ErrorBody == nil {
		o.ErrorBody = func(_ int, message string) any { return knobError{message} }
	}
	if o.RateLimit != nil {
		rl := *o.RateLimit
		if rl.Limit <= 0 {
			panic("sandbox: a RateLimit needs a positive Limit")
		}
		if rl.Window <= 0 {
			rl.Window = 10 * time.Second
		}
		if rl.Headers == (RateHeaders{}) {
			rl.Headers = defaultRateHeaders
		}
		for _, a := range rl.Also {
			if a.Limit <= 0 || a.Window <= 0 {
				panic("sandbox: every RateLimit.Also needs a positive Limit and Window")
			}
		}
		o.RateLimit = &rl
	}
	k := &Kit{opts: o, api: http.NewServeMux(), knobs: http.NewServeMux(), sender: newWebhookSender(o.Webhooks.Delivery)}
	if k.opts.NotFound == nil {
		k.opts.NotFound = func(w http.ResponseWriter, r *http.Request) {
			k.WriteError(w, http.StatusNotFound, fmt.Sprintf("sandbox: %s %s is not emulated", r.Method, r.URL.Path))
		}
	}
	if k.opts.Expired == nil {
		k.opts.Expired = func(w http.ResponseWriter, _ *http.Request) {
			k.WriteError(w, http.StatusUnauthorized, "Unauthorized: the access token has expired (a sandbox fault)")
		}
	}
	k.resetLocked()

	k.api.HandleFunc("/", k.opts.NotFound)
	k.knobs.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) {
		var state any = struct{}{}
		if k.opts.State != nil {
			state = k.opts.State()
		}
		writeJSON(w, http.StatusOK, state)
	})
	k.knobs.HandleFunc("POST /faults", faultKnob(k.InjectFault))
	k.knobs.HandleFunc("DELETE /faults", func(w http.ResponseWriter, _ *http.Request) {
		k.ClearFaults()
		w.WriteHeader(http.StatusNoContent)
	})
	k.knobs.HandleFunc("POST /reset", func(w http.ResponseWriter, _ *http.Request) {
		k.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	return k
}

// HandleFunc adds a route to the vendor's API, behind the gate: pattern is an http.ServeMux
// pattern without the /<name> prefix, such as "GET /v1/people/{id}".
func (k *Kit) HandleFunc(pattern string, h http.HandlerFunc) { k.api.HandleFunc(pattern, h) }

// HandleKnob adds a knob, unauthenticated, under /_sandbox/<name>: pattern is an http.ServeMux
// pattern without that prefix, such as "PUT /assignment-delay".
func (k *Kit) HandleKnob(pattern string, h http.HandlerFunc) { k.knobs.HandleFunc(pattern, h) }

// mount serves the vendor's API and knobs on mux.
func (k *Kit) mount(mux *http.ServeMux) {
	api, knobs := "/"+k.opts.Name, "/_sandbox/"+k.opts.Name
	mux.Handle(api+"/", http.StripPrefix(api, k.gate(k.api)))
	mux.Handle(knobs+"/", http.StripPrefix(knobs, k.knobs))
}

// WriteError answers status with the vendor's error body.
func (k *Kit) WriteError(w http.ResponseWriter, status int, message string) {
	writeJSON(w, status, k.opts.ErrorBody(status, message))
}

// Unauthorized answers 401 with the vendor's error body and, when challenge is set, a
// WWW-Authenticate header: what an Auth usually writes when it refuses a call.
func (k *Kit) Unauthorized(w http.ResponseWriter, challenge, message string) {
	if challenge != "" {
		w.Header().Set("WWW-Authenticate", challenge)
	}
	k.WriteError(w, http.StatusUnauthorized, message)
}

// BearerToken returns the token of an "Authorization: Bearer <token>" header (the scheme is
// case-insensitive), or "".
func BearerToken(r *http.Request) string {
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// gate waits out the latency, authenticates, refuses an expired token, takes a fault and
// counts the call against the rate limit, in that order, before the call reaches the API.
// Every authenticated answer, faulted or refused with 429, carries the rate-limit headers.
func (k *Kit) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		k.mu.Lock()
		latency, observers := k.latency, slices.Clone(k.onCall)
		k.mu.Unlock()
		if !wait(r.Context(), latency) {
			return
		}
		account, ok := k.opts.Auth(w, r)
		if !ok {
			return
		}
		if k.TokenExpired(account) {
			k.opts.Expired(w, r)
			return
		}
		rl := k.opts.RateLimit
		var bucket Bucket
		if rl != nil && rl.Bucket != nil {
			bucket = rl.Bucket(r, account)
		}
		limit := bucket.Limit
		if limit <= 0 && rl != nil {
			limit = rl.Limit
		}

		now := k.opts.Now()
		key := account + " " + bucket.Name
		if bucket.Key != "" {
			key = bucket.Key + " " + bucket.Name
		}
		k.mu.Lock()
		fault, faulted := k.faults.take(r.Method, r.URL.Path)
		// A fault that only adds latency lets the call go on, counted as usual.
		fails := faulted && (fault.Status != 0 || fault.ExpireToken)
		if fails && fault.ExpireToken {
			k.expired[account] = true
		}
		remaining, retryAfter, allowed := limit, time.Duration(0), true
		switch {
		case rl == nil || bucket.Unlimited:
		case fails:
			remaining = k.limits.remaining(key, limit, now)
		default:
			remaining, retryAfter, allowed = k.takeLocked(key, limit, now)
			k.usage.count(allowed)
		}
		k.mu.Unlock()

		if faulted && !wait(r.Context(), fault.Latency) {
			return
		}
		if fails && fault.ExpireToken {
			k.opts.Expired(w, r)
			return
		}
		if rl != nil {
			k.rateHeaders(w.Header(), bucket.Name, limit, remaining)
		}
		switch {
		case fails:
			writeFault(w, fault, func(status int) any {
				return k.opts.ErrorBody(status, fmt.Sprintf("sandbox: injected fault (%d %s)", status, http.StatusText(status)))
			})
		case !allowed && k.opts.Throttled != nil:
			k.opts.Throttled(w, r, retryAfter)
		case !allowed:
			w.Header().Set("Retry-After", strconv.Itoa(ceilSeconds(retryAfter)))
			per := fmt.Sprintf("%d requests per %d seconds", limit, ceilSeconds(rl.Window))
			if bucket.Name != "" {
				k.WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("Rate limit exceeded for %q: %s", bucket.Name, per))
			} else {
				k.WriteError(w, http.StatusTooManyRequests, "Rate limit exceeded: "+per)
			}
		default:
			if len(observers) == 0 {
				next.ServeHTTP(w, r)
				return
			}
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(w, r)
			c := Call{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Body: body,
				Counted: rl != nil && !bucket.Unlimited, CountedAt: now, Start: start, End: time.Now()}
			for _, fn := range observers {
				fn(c)
			}
		}
	})
}

// takeLocked counts a call under key if it fits the limit and every other (RateLimit.Also).
// The caller holds mu.
func (k *Kit) takeLocked(key string, limit int, now time.Time) (remaining int, retryAfter time.Duration, ok bool) {
	for i, a := range k.opts.RateLimit.Also {
		if wait, full := k.also[i].full(key, a.Limit, now); full {
			return k.limits.remaining(key, limit, now), wait, false
		}
	}
	remaining, retryAfter, ok = k.limits.take(key, limit, now)
	if ok {
		for i, a := range k.opts.RateLimit.Also {
			k.also[i].take(key, a.Limit, now)
		}
	}
	return remaining, retryAfter, ok
}

func (k *Kit) rateHeaders(h http.Header, bucket string, limit, remaining int) {
	names := k.opts.RateLimit.Headers
	for name, value := range map[string]string{
		names.Limit:     strconv.Itoa(limit),
		names.Remaining: strconv.Itoa(remaining),
		names.Window:    strconv.Itoa(ceilSeconds(k.opts.RateLimit.Window)),
		names.Context:   bucket,
	} {
		if name != "" && value != "" {
			h.Set(name, value)
		}
	}
}

// wait waits d, or until ctx is done; it reports whether the call goes on.
func wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// InjectFault queues ft: the next ft.Count (at least 1) authenticated calls that match
// ft.Method and ft.Path (after /<name>) wait ft.Latency, then answer ft.Status, or the expired
// token error with ft.ExpireToken. Status 0 means 500, unless the fault has a Latency or
// ExpireToken. Faults are matched in the order injected.
func (k *Kit) InjectFault(ft Fault) {
	if ft.Status == 0 && ft.Latency <= 0 && !ft.ExpireToken {
		ft.Status = http.StatusInternalServerError
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults.add(ft)
}

// ClearFaults drops every pending fault.
func (k *Kit) ClearFaults() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults.clear()
}

// ExpireToken makes every call with token (the account Auth returns) answer the vendor's
// expired-token error until Reset, as a revoked or expired access token does.
func (k *Kit) ExpireToken(token string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.expired[token] = true
}

// TokenExpired reports whether ExpireToken, or a fault, expired token.
func (k *Kit) TokenExpired(token string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.expired[token]
}

// SetLatency delays every call to the API by d (or until the client gives up), before
// anything else; zero removes it.
func (k *Kit) SetLatency(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.latency = max(d, 0)
}

// Usage returns the use of the rate limit since the last reset.
func (k *Kit) Usage() Usage {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.usage
}

// Reset forgets the kit's state (pending faults, rate-limit windows, expired tokens, latency
// and usage), then the vendor's (KitOptions.Reset).
func (k *Kit) Reset() {
	k.mu.Lock()
	k.resetLocked()
	k.mu.Unlock()
	if k.opts.Reset != nil {
		k.opts.Reset()
	}
}

func (k *Kit) resetLocked() {
	k.faults.clear()
	window := 10 * time.Second
	if k.opts.RateLimit != nil {
		window = k.opts.RateLimit.Window
	}
	k.limits = newSlidingWindow(window)
	k.also = nil
	if k.opts.RateLimit != nil {
		for _, a := range k.opts.RateLimit.Also {
			k.also = append(k.also, newSlidingWindow(a.Window))
		}
	}
	k.expired = map[string]bool{}
	k.latency = 0
	k.usage = Usage{}
}

// Close stops retrying the vendor's webhook deliveries and waits for those in flight. Sends
// after Close fail at once.
func (k *Kit) Close() {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
	k.sender.close()
}

// Closed reports whether Close was called.
func (k *Kit) Closed() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.closed
}

// pageSection is the vendor's section of the page.
func (k *Kit) pageSection() pageSection {
	s := pageSection{
		Title: k.opts.Title,
		Note:  strings.TrimSpace(k.opts.Note + " The same state as JSON: GET /_sandbox/" + k.opts.Name + "/state."),
	}
	if k.opts.Tables != nil {
		s.Tables = k.opts.Tables()
	}
	return s
}
