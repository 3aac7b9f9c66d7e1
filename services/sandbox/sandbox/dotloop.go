package sandbox

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1" //nolint:gosec // Dotloop signs its webhooks with HMAC-SHA1.
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The Dotloop Public API v2 emulation, served under /dotloop: the API at /dotloop/public/v2 (in
// place of https://api-gateway.dotloop.com/public/v2) and the OAuth 2.0 server at
// /dotloop/oauth (in place of https://auth.dotloop.com/oauth).
//
// What it takes from Dotloop's documentation (https://dotloop.github.io/public-api/) and the
// public client code that quotes it: the authorization-code grant with HTTP Basic client
// credentials, access tokens of about 12 hours, refresh tokens; profiles; Loop-It
// (POST /loop-it?profile_id=) with its request and its 201 answer; loops, their detail in
// named sections ("Property Address", "Financials", "Contract Dates", "Referral"), their
// participants; subscriptions; LOOP_UPDATED webhooks signed with X-DOTLOOP-SIGNATURE and
// X-DOTLOOP-TIMESTAMP (HMAC-SHA1 with the subscription's signing key); 100 requests a minute per
// user with X-RateLimit-Limit and X-RateLimit-Remaining. What it assumes (docs/sandbox.md):
//   - A refresh rotates the refresh token: the old one answers invalid_grant afterwards, and
//     the old access token stops working.
//   - The signed string is "<timestamp>.<raw body>" (DotloopSignBody signs the body alone);
//     the signature is lower-case hex; the timestamp is Unix milliseconds, as in the payload.
//   - A participant's phone is its "Phone" field, which Loop-It accepts too.
//   - Detail values are strings as an agent types them ("$525,000.00", "2026-12-01").
//   - GET /profile/{id}/loop lists the profile's loops, newest first, with batch_size (at
//     most 100) and batch_number.

// Dotloop emulation defaults.
const (
	DefaultDotloopClientID     = "sandbox-dotloop-client"
	DefaultDotloopClientSecret = "sandbox-dotloop-secret"
	// DefaultDotloopProfileID is the profile of the sandbox's one agent.
	DefaultDotloopProfileID = 4711
	// DefaultDotloopSigningKey is the signing key of a subscription made without one.
	DefaultDotloopSigningKey = "sandbox-dotloop-signing-key"
	dotloopName              = "dotloop"
)

// Dotloop's statuses and the event the sandbox sends.
const (
	DotloopUnderContract = "UNDER_CONTRACT"
	DotloopSold          = "SOLD"
	DotloopLoopUpdated   = "LOOP_UPDATED"
)

// DotloopOptions configures the Dotloop emulation. Zero fields take the defaults.
type DotloopOptions struct {
	ClientID, ClientSecret string
	// AccessTTL is an access token's life. Default 12h (Dotloop's expires_in is about 43200).
	AccessTTL time.Duration
	// Limit per Window is each user's rate limit. Default 100 per minute.
	Limit  int
	Window time.Duration
	// Profiles are the user's profiles. Default: one INDIVIDUAL profile, DefaultDotloopProfileID.
	Profiles []DotloopProfile
	// SignBody signs the raw body alone instead of "<timestamp>.<body>" (the disputed variant).
	SignBody bool
	// Delivery configures webhook retries.
	Delivery DeliveryOptions
}

func (o *DotloopOptions) setDefaults() {
	if o.ClientID == "" {
		o.ClientID = DefaultDotloopClientID
	}
	if o.ClientSecret == "" {
		o.ClientSecret = DefaultDotloopClientSecret
	}
	if o.AccessTTL <= 0 {
		o.AccessTTL = 12 * time.Hour
	}
	if o.Limit <= 0 {
		o.Limit = 100
	}
	if o.Window <= 0 {
		o.Window = time.Minute
	}
	if len(o.Profiles) == 0 {
		o.Profiles = []DotloopProfile{{ID: DefaultDotloopProfileID, Name: "Sandbox Agent", Type: "INDIVIDUAL", Default: true}}
	}
}

// DotloopProfile is one of the user's profiles.
type DotloopProfile struct {
	ID      int64  `json:"id"`
	Name    string `json:"name"`
	Type    string `json:"type"`
	Default bool   `json:"default"`
}

// DotloopLoop is a loop as GET /profile/{id}/loop/{id} answers it.
type DotloopLoop struct {
	ID              int64     `json:"id"`
	ProfileID       int64     `json:"profileId"`
	Name            string    `json:"name"`
	TransactionType string    `json:"transactionType"`
	Status          string    `json:"status"`
	Created         time.Time `json:"created"`
	Updated         time.Time `json:"updated"`
	LoopURL         string    `json:"loopUrl"`
}

// DotloopParticipant is one participant of a loop.
type DotloopParticipant struct {
	ID       int64  `json:"id"`
	FullName string `json:"fullName"`
	Email    string `json:"email,omitempty"`
	Role     string `json:"role"`
	Phone    string `json:"Phone,omitempty"`
}

// DotloopDetail is a loop's detail: sections of named string fields.
type DotloopDetail map[string]map[string]string

// DotloopLoopState is a loop with everything the sandbox keeps of it.
type DotloopLoopState struct {
	DotloopLoop
	TemplateID   int64                `json:"templateId,omitempty"`
	Detail       DotloopDetail        `json:"detail"`
	Participants []DotloopParticipant `json:"participants"`
	// DetailUpdates counts the PATCHes of its detail (Update Loop Details).
	DetailUpdates int `json:"detailUpdates,omitempty"`
}

// DotloopSubscription is a webhook subscription.
type DotloopSubscription struct {
	ID         int64    `json:"id"`
	URL        string   `json:"url"`
	EventTypes []string `json:"eventTypes"`
	SigningKey string   `json:"signingKey,omitempty"`
	ExternalID string   `json:"externalId,omitempty"`
	Enabled    bool     `json:"enabled"`
	TargetType string   `json:"targetType,omitempty"`
	TargetID   int64    `json:"targetId,omitempty"`
}

// DotloopEvent is the payload of a webhook delivery.
type DotloopEvent struct {
	EventID                string           `json:"eventId"`
	EventType              string           `json:"eventType"`
	Timestamp              int64            `json:"timestamp"`
	SubscriptionID         int64            `json:"subscriptionId"`
	SubscriptionExternalID string           `json:"subscriptionExternalId,omitempty"`
	Event                  DotloopEventLoop `json:"event"`
}

// DotloopEventLoop names the loop an event is about.
type DotloopEventLoop struct {
	ID        int64 `json:"id"`
	ProfileID int64 `json:"profileId"`
	LoopID    int64 `json:"loopId"`
}

// DotloopDelivery is one webhook delivery.
type DotloopDelivery struct {
	SubscriptionID int64        `json:"subscriptionId"`
	Payload        DotloopEvent `json:"payload"`
	Delivery
}

// DotloopTokens is a token answer.
type DotloopTokens = OAuthTokens

// DotloopFinancials is what the page's "sold" button sets in a loop's detail.
type DotloopFinancials struct {
	// Price and Commission are in whole dollars; 0 leaves the field empty.
	Price, Commission int64
	// CloseDate is YYYY-MM-DD; empty is today.
	CloseDate string
	// Referral, when positive, is a referral fee in whole dollars, from ReferralSource.
	Referral       int64
	ReferralSource string
}

// Dotloop is the Dotloop Public API v2 emulation. Its methods are safe for concurrent use.
type Dotloop struct {
	*Kit
	opts  DotloopOptions
	now   func() time.Time
	oauth *oauthServer

	mu     sync.Mutex
	loops  []*DotloopLoopState // in id order
	subs   []DotloopSubscription
	delivs []*DotloopDelivery
	lastID struct{ loop, participant, sub int64 }
	hooks  []func(DotloopLoop)
}

// OnLoopCreated registers fn to be called, outside the sandbox's locks and before the answer
// is written, each time Loop-It creates a loop.
func (d *Dotloop) OnLoopCreated(fn func(DotloopLoop)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hooks = append(d.hooks, fn)
}

func newDotloop(o DotloopOptions, now func() time.Time) *Dotloop {
	o.setDefaults()
	d := &Dotloop{opts: o, now: now, oauth: newOAuthServer(oauthOptions{
		clientID: o.ClientID, clientSecret: o.ClientSecret, prefix: "dl", accessTTL: o.AccessTTL,
		scope: "account:read, profile:*, loop:*, contact:*, template:read", revokeOnRotate: true, now: now,
	})}
	d.resetState()
	d.Kit = NewKit(KitOptions{
		Name: dotloopName, Title: "Dotloop (Public API v2, under /dotloop/public/v2; OAuth under /dotloop/oauth)",
		Note:      "Newest first. The buttons move a loop to under contract, or to sold with a price and a commission, and send LOOP_UPDATED to every subscription.",
		Auth:      d.auth,
		ErrorBody: func(status int, message string) any { return dotloopError{Status: status, Message: message} },
		RateLimit: &RateLimit{
			Limit: o.Limit, Window: o.Window,
			Headers: RateHeaders{Limit: "X-RateLimit-Limit", Remaining: "X-RateLimit-Remaining"},
			Bucket:  d.bucket,
		},
		Webhooks: WebhookOptions{
			SignatureHeader: "X-DOTLOOP-SIGNATURE",
			Header: func(body []byte) map[string]string {
				return map[string]string{"X-DOTLOOP-TIMESTAMP": strconv.FormatInt(eventTimestamp(body), 10), "User-Agent": "dotloop-sandbox"}
			},
			Delivery: o.Delivery,
		},
		State: d.state, Tables: d.tables, Reset: d.resetState, Now: now,
	})
	d.routes()
	return d
}

func (d *Dotloop) resetState() {
	d.oauth.reset()
	d.mu.Lock()
	defer d.mu.Unlock()
	d.loops, d.subs, d.delivs = nil, nil, nil
	d.lastID.loop, d.lastID.participant, d.lastID.sub = 34307, 2354, 0
}

// dotloopError is the sandbox's choice of Dotloop's error body.
type dotloopError struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// SignDotloop returns X-DOTLOOP-SIGNATURE for a delivery: lower-case hex HMAC-SHA1, keyed by the
// subscription's signing key, of "<timestamp>.<body>", or of the body alone when bodyOnly.
func SignDotloop(key string, timestamp int64, body []byte, bodyOnly bool) string {
	mac := hmac.New(sha1.New, []byte(key))
	if !bodyOnly {
		_, _ = mac.Write([]byte(strconv.FormatInt(timestamp, 10) + "."))
	}
	_, _ = mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// eventTimestamp reads the payload's timestamp, which the delivery's header repeats.
func eventTimestamp(body []byte) int64 {
	var e struct {
		Timestamp int64 `json:"timestamp"`
	}
	_ = json.Unmarshal(body, &e)
	return e.Timestamp
}

func randomToken(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// IssueTokens grants a new pair of tokens, as the authorization-code flow ends: for tests and
// the all-in-one, which skip the browser.
func (d *Dotloop) IssueTokens() DotloopTokens { return d.oauth.issue("") }

// ExpireAccessTokens makes every access token expired now, as 12 hours passing would.
func (d *Dotloop) ExpireAccessTokens() { d.oauth.expireAccess() }

// TokenCounts are the access tokens valid now, and the refreshes granted.
func (d *Dotloop) TokenCounts() (valid, refreshes int) { return d.oauth.counts() }

// Loops returns a copy of every loop, in id order.
func (d *Dotloop) Loops() []DotloopLoopState {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]DotloopLoopState, len(d.loops))
	for i, l := range d.loops {
		out[i] = l.clone()
	}
	return out
}

// Subscriptions returns a copy of every subscription.
func (d *Dotloop) Subscriptions() []DotloopSubscription {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.subs)
}

// Deliveries returns a copy of every webhook delivery, oldest first.
func (d *Dotloop) Deliveries() []DotloopDelivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]DotloopDelivery, len(d.delivs))
	for i, x := range d.delivs {
		out[i] = *x
	}
	return out
}

// Subscribe adds a subscription, as POST /subscription does.
func (d *Dotloop) Subscribe(s DotloopSubscription) (DotloopSubscription, error) {
	if err := checkURL(s.URL); err != nil {
		return DotloopSubscription{}, err
	}
	if len(s.EventTypes) == 0 {
		return DotloopSubscription{}, fmt.Errorf("eventTypes must name at least one event")
	}
	if s.SigningKey == "" {
		s.SigningKey = DefaultDotloopSigningKey
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.lastID.sub++
	s.ID = d.lastID.sub
	d.subs = append(d.subs, s)
	return s, nil
}

func (l *DotloopLoopState) clone() DotloopLoopState {
	out := *l
	out.Participants = slices.Clone(l.Participants)
	out.Detail = DotloopDetail{}
	for k, sec := range l.Detail {
		out.Detail[k] = map[string]string{}
		for f, v := range sec {
			out.Detail[k][f] = v
		}
	}
	return out
}

func (d *Dotloop) findLocked(profile, id int64) *DotloopLoopState {
	for _, l := range d.loops {
		if l.ID == id && (profile == 0 || l.ProfileID == profile) {
			return l
		}
	}
	return nil
}

// SetLoopStatus moves loop id to status; for SOLD, f's price, commission and close date go
// into the loop's detail. It sends LOOP_UPDATED to every subscription for it.
func (d *Dotloop) SetLoopStatus(id int64, status string, f DotloopFinancials) error {
	d.mu.Lock()
	l := d.findLocked(0, id)
	if l == nil {
		d.mu.Unlock()
		return fmt.Errorf("loop %d: %w", id, errNotFound)
	}
	now := d.now()
	l.Status, l.Updated = status, stamp(now)
	if status == DotloopSold {
		fin := l.section("Financials")
		if f.Price > 0 {
			fin["Purchase/Sale Price"] = dollars(f.Price)
		}
		if f.Commission > 0 {
			fin["Sale Commission Total"] = dollars(f.Commission)
		}
		date := f.CloseDate
		if date == "" {
			date = now.UTC().Format("2006-01-02")
		}
		l.section("Contract Dates")["Closing Date"] = date
		if f.Referral > 0 {
			ref := l.section("Referral")
			ref["Referral Fee"] = dollars(f.Referral)
			ref["Referral Source"] = f.ReferralSource
		}
	}
	loop := l.DotloopLoop
	d.mu.Unlock()
	d.fire(DotloopLoopUpdated, loop)
	return nil
}

func (l *DotloopLoopState) section(name string) map[string]string {
	if l.Detail == nil {
		l.Detail = DotloopDetail{}
	}
	if l.Detail[name] == nil {
		l.Detail[name] = map[string]string{}
	}
	return l.Detail[name]
}

// dollars formats whole dollars as an agent types them: "$525,000.00".
func dollars(n int64) string {
	s := strconv.FormatInt(n, 10)
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return "$" + string(out) + ".00"
}

// fire sends eventType about loop to every enabled subscription for it, signed with its key.
func (d *Dotloop) fire(eventType string, loop DotloopLoop) {
	if d.Closed() {
		return
	}
	var sends []*DotloopDelivery
	d.mu.Lock()
	for _, s := range d.subs {
		if !s.Enabled || !slices.Contains(s.EventTypes, eventType) {
			continue
		}
		if s.TargetType == "PROFILE" && s.TargetID != 0 && s.TargetID != loop.ProfileID {
			continue
		}
		ev := DotloopEvent{
			EventID: randomToken("evt_"), EventType: eventType, Timestamp: d.now().UnixMilli(),
			SubscriptionID: s.ID, SubscriptionExternalID: s.ExternalID,
			Event: DotloopEventLoop{ID: loop.ID, ProfileID: loop.ProfileID, LoopID: loop.ID},
		}
		body, _ := json.Marshal(ev)
		del := &DotloopDelivery{SubscriptionID: s.ID, Payload: ev, Delivery: Delivery{URL: s.URL, Body: string(body), State: DeliveryPending}}
		del.Signature = SignDotloop(s.SigningKey, ev.Timestamp, body, d.opts.SignBody)
		d.delivs = append(d.delivs, del)
		sends = append(sends, del)
	}
	d.mu.Unlock()
	for _, s := range sends {
		d.Send(&s.Delivery, &d.mu)
	}
}

func (d *Dotloop) state() any {
	d.mu.Lock()
	defer d.mu.Unlock()
	loops := make([]DotloopLoopState, len(d.loops))
	for i, l := range d.loops {
		loops[i] = l.clone()
	}
	delivs := make([]DotloopDelivery, len(d.delivs))
	for i, x := range d.delivs {
		delivs[i] = *x
	}
	subs := slices.Clone(d.subs)
	for i := range subs {
		subs[i].SigningKey = "" // a secret: not shown
	}
	grants, refreshes := d.oauth.stats()
	return struct {
		Profiles      []DotloopProfile      `json:"profiles"`
		Loops         []DotloopLoopState    `json:"loops"`
		Subscriptions []DotloopSubscription `json:"subscriptions"`
		Deliveries    []DotloopDelivery     `json:"deliveries"`
		Grants        int                   `json:"tokenGrants"`
		Refreshes     int                   `json:"tokenRefreshes"`
	}{d.opts.Profiles, loops, nonNil(subs), nonNil(delivs), grants, refreshes}
}
