package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Defaults of the Follow Up Boss emulation: the API key it accepts and the registered system.
const (
	DefaultFUBAPIKey    = "sandbox-fub-api-key"
	DefaultFUBSystem    = "brokerflow"
	DefaultFUBSystemKey = "sandbox-fub-system-key"
	// DefaultFUBGlobalLimit is the documented "global" limit per 10-second
	// window of a registered system.
	DefaultFUBGlobalLimit = 250
)

// fubUnlimited is what the rate-limit headers say for POST /v1/events, which FUB documents as
// unlimited without saying what its headers then carry. A large integer keeps clients that
// parse the headers as numbers working.
const fubUnlimited = 1_000_000

// FUBOptions configures the Follow Up Boss emulation. Zero fields take the defaults.
type FUBOptions struct {
	// APIKeys are the valid HTTP Basic usernames (with a blank password), one per account.
	// Default: DefaultFUBAPIKey.
	APIKeys []string
	// SystemName and SystemKey are the registered system (X-System, X-System-Key).
	// Defaults: DefaultFUBSystem, DefaultFUBSystemKey.
	SystemName, SystemKey string
	// AssignmentDelay hides a person created by POST /v1/events from the other endpoints for
	// this long, as FUB does until agent assignment completes. Default 0.
	AssignmentDelay time.Duration
	// Window is the sliding rate-limit window. Default 10s.
	Window time.Duration
	// GlobalLimit is the "global" limit per window of a registered system. Default 250.
	GlobalLimit int
	// EventsLimit is the "events" limit per window of GET /v1/events for a registered system
	// (FUB documents 20, and 10 without a valid X-System-Key). Default 20.
	EventsLimit int
	// UnregisteredLimit is the "global" limit per window without a valid X-System-Key.
	// Default 125.
	UnregisteredLimit int
	// Webhooks configures webhook delivery (fub_webhooks.go).
	Webhooks FUBWebhookOptions
}

func (o *FUBOptions) setDefaults() {
	if len(o.APIKeys) == 0 {
		o.APIKeys = []string{DefaultFUBAPIKey}
	}
	if o.SystemName == "" {
		o.SystemName = DefaultFUBSystem
	}
	if o.SystemKey == "" {
		o.SystemKey = DefaultFUBSystemKey
	}
	if o.AssignmentDelay < 0 {
		o.AssignmentDelay = 0
	}
	if o.Window <= 0 {
		o.Window = 10 * time.Second
	}
	if o.GlobalLimit <= 0 {
		o.GlobalLimit = DefaultFUBGlobalLimit
	}
	if o.UnregisteredLimit <= 0 {
		o.UnregisteredLimit = 125
	}
	if o.EventsLimit <= 0 {
		o.EventsLimit = 20
	}
}

// FUBValue is one email address or phone number of a person.
type FUBValue struct {
	Value     string `json:"value"`
	Type      string `json:"type,omitempty"`
	IsPrimary bool   `json:"isPrimary,omitempty"`
}

// FUBPerson is a person as FUB's /v1/people represents it.
type FUBPerson struct {
	ID           int64      `json:"id"`
	Created      time.Time  `json:"created"`
	Updated      time.Time  `json:"updated"`
	LastActivity time.Time  `json:"lastActivity"`
	Name         string     `json:"name"`
	FirstName    string     `json:"firstName"`
	LastName     string     `json:"lastName"`
	Stage        string     `json:"stage"`
	Source       string     `json:"source"`
	SourceURL    string     `json:"sourceUrl"`
	Emails       []FUBValue `json:"emails"`
	Phones       []FUBValue `json:"phones"`
	Tags         []string   `json:"tags"`
	AssignedTo   string     `json:"assignedTo"`
	// AssignedUserID is the assigned agent's user id; absent when unassigned.
	AssignedUserID *int64 `json:"assignedUserId,omitempty"`
}

// FUBEvent is one event recorded by POST /v1/events.
type FUBEvent struct {
	ID       int64  `json:"id"`
	PersonID int64  `json:"personId"`
	Type     string `json:"type"`
	Source   string `json:"source"`
	System   string `json:"system"`
	Message  string `json:"message"`
	// Description is the event's description as sent.
	Description string    `json:"description"`
	Created     time.Time `json:"created"`
	// Property is the event's property object as sent, or nil.
	Property json.RawMessage `json:"property,omitempty"`
}

// FUBNote is one note created by POST /v1/notes.
type FUBNote struct {
	ID       int64     `json:"id"`
	PersonID int64     `json:"personId"`
	Subject  string    `json:"subject"`
	Body     string    `json:"body"`
	IsHTML   bool      `json:"isHtml"`
	Created  time.Time `json:"created"`
}

// FUB is the Follow Up Boss API v1 emulation, served under /fub. Its methods are safe for
// concurrent use.
type FUB struct {
	*Kit
	opts FUBOptions
	now  func() time.Time

	mu       sync.Mutex
	people   []*fubPerson // in id order
	events   []FUBEvent
	notes    []FUBNote
	lastID   struct{ person, event, note int64 }
	delay    time.Duration
	archived map[string]bool
	hooks    []func(FUBPerson)
	wh       *fubWebhooks
}

// fubPerson is a stored person and the moment agent assignment completes.
type fubPerson struct {
	FUBPerson
	visibleAt time.Time
}

func newFUB(o FUBOptions, now func() time.Time) *FUB {
	o.setDefaults()
	o.APIKeys = slices.Clone(o.APIKeys)
	f := &FUB{opts: o, now: now}
	// Reset (the kit's) empties the state (webhook registrations included) and restores the
	// knobs (faults, assignment delay, archived sources, rate-limit windows, usage, webhook base
	// URL) to the Options. Hooks stay registered.
	f.Kit = NewKit(KitOptions{
		Name: strings.TrimPrefix(fubPrefix, "/"), Title: "Follow Up Boss (API v1, under /fub)", Note: "Newest first.",
		Auth:      f.auth,
		ErrorBody: func(_ int, message string) any { return fubError{ErrorMessage: message} },
		RateLimit: &RateLimit{Limit: o.GlobalLimit, Window: o.Window, Bucket: f.bucket},
		Webhooks:  fubWebhookOptions(o),
		State:     f.state, Tables: f.tables, Reset: f.reset, Now: now,
	})
	f.wh = newFUBWebhooks(o, now, f.Kit)
	f.reset()
	f.routes()
	return f
}

func (f *FUB) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.people, f.events, f.notes = nil, nil, nil
	f.lastID.person, f.lastID.event, f.lastID.note = 0, 0, 0
	f.delay = f.opts.AssignmentDelay
	f.archived = map[string]bool{}
	f.wh.reset()
}

// People returns a copy of every person, hidden ones included, in id order.
func (f *FUB) People() []FUBPerson {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FUBPerson, len(f.people))
	for i, p := range f.people {
		out[i] = p.clone()
	}
	return out
}

// Events returns a copy of every recorded event, in id order.
func (f *FUB) Events() []FUBEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FUBEvent, len(f.events))
	for i, e := range f.events {
		e.Property = bytes.Clone(e.Property)
		out[i] = e
	}
	return out
}

// Notes returns a copy of every note, in id order.
func (f *FUB) Notes() []FUBNote {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.notes)
}

// SetAssignmentDelay sets the delay for people created from now on; a negative d means 0.
// People already created keep the delay they were created with.
func (f *FUB) SetAssignmentDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = max(0, d)
}

// ArchiveSource makes POST /v1/events answer 204 with no body, and record nothing, for events
// whose source equals source (case-insensitively), as FUB does when the lead flow of a source
// is archived. Reset undoes it.
func (f *FUB) ArchiveSource(source string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.archived[strings.ToLower(strings.TrimSpace(source))] = true
}

// OnPersonCreated registers fn to be called, outside the sandbox's locks and before the
// response is written, each time POST /v1/events creates a person.
func (f *FUB) OnPersonCreated(fn func(FUBPerson)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks = append(f.hooks, fn)
}

func (p *fubPerson) clone() FUBPerson {
	c := p.FUBPerson
	c.Emails = slices.Clone(nonNil(c.Emails))
	c.Phones = slices.Clone(nonNil(c.Phones))
	c.Tags = slices.Clone(nonNil(c.Tags))
	c.AssignedUserID = cloneID(c.AssignedUserID)
	return c
}

// AssignPerson assigns person id to the agent userID (0 unassigns), as an agent does in FUB.
// It fires no webhook: the sandbox's webhooks cover stages, names, emails and phones.
func (f *FUB) AssignPerson(id, userID int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.findLocked(id)
	if p == nil {
		return fmt.Errorf("person %d: %w", id, ErrFUBPersonNotFound)
	}
	if userID == 0 {
		p.AssignedUserID = nil
	} else {
		p.AssignedUserID = &userID
	}
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// visible reports whether agent assignment of p has completed at now.
func (p *fubPerson) visible(now time.Time) bool { return !now.Before(p.visibleAt) }

// findLocked returns the person with id, whether or not it is visible.
func (f *FUB) findLocked(id int64) *fubPerson {
	i, ok := slices.BinarySearchFunc(f.people, id, func(p *fubPerson, id int64) int {
		switch {
		case p.ID < id:
			return -1
		case p.ID > id:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return f.people[i]
}

// emailKey and phoneKey normalize values for matching: emails case-insensitively, phones on
// their last 10 digits.
func emailKey(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

func phoneKey(s string) string {
	d := make([]byte, 0, len(s))
	for i := range len(s) {
		if s[i] >= '0' && s[i] <= '9' {
			d = append(d, s[i])
		}
	}
	if len(d) > 10 {
		d = d[len(d)-10:]
	}
	return string(d)
}

func hasValue(vs []FUBValue, key func(string) string, want string) bool {
	if want == "" {
		return false
	}
	for _, v := range vs {
		if key(v.Value) == want {
			return true
		}
	}
	return false
}

// matchLocked applies FUB's deduplication rule: a person matches if an email matches, or if a
// phone and both the first and last name match. Hidden people count: FUB's own dedup sees them.
// The oldest matching person wins, an email match before a phone match.
func (f *FUB) matchLocked(in *fubEventPerson) *fubPerson {
	for _, p := range f.people {
		for _, e := range in.Emails {
			if hasValue(p.Emails, emailKey, emailKey(e.Value)) {
				return p
			}
		}
	}
	first, last := in.names()
	if first == "" && last == "" {
		return nil
	}
	for _, p := range f.people {
		if !strings.EqualFold(p.FirstName, first) || !strings.EqualFold(p.LastName, last) {
			continue
		}
		for _, ph := range in.Phones {
			if hasValue(p.Phones, phoneKey, phoneKey(ph.Value)) {
				return p
			}
		}
	}
	return nil
}

// merge adds the event person's new emails, phones and tags to p.
func (p *fubPerson) merge(in *fubEventPerson, now time.Time) {
	p.Emails = addValues(p.Emails, in.Emails, emailKey)
	p.Phones = addValues(p.Phones, in.Phones, phoneKey)
	for _, t := range in.Tags {
		if t = strings.TrimSpace(t); t != "" && !slices.ContainsFunc(p.Tags, func(s string) bool { return strings.EqualFold(s, t) }) {
			p.Tags = append(p.Tags, t)
		}
	}
	p.Updated, p.LastActivity = stamp(now), stamp(now)
}

// stamp is a time as FUB shows it: UTC, whole seconds.
func stamp(t time.Time) time.Time { return t.UTC().Truncate(time.Second) }

func addValues(have, add []FUBValue, key func(string) string) []FUBValue {
	for _, v := range add {
		v.Value = strings.TrimSpace(v.Value)
		k := key(v.Value)
		if k == "" || hasValue(have, key, k) {
			continue
		}
		v.IsPrimary = len(have) == 0
		have = append(have, v)
	}
	return have
}

// createLocked stores a new person from an event.
func (f *FUB) createLocked(in *fubEventPerson, source, sourceURL string, now time.Time) *fubPerson {
	f.lastID.person++
	first, last := in.names()
	p := &fubPerson{
		FUBPerson: FUBPerson{
			ID: f.lastID.person, Created: stamp(now), Updated: stamp(now), LastActivity: stamp(now),
			Name: strings.TrimSpace(first + " " + last), FirstName: first, LastName: last,
			Stage: "Lead", Source: source, SourceURL: sourceURL,
			Emails: []FUBValue{}, Phones: []FUBValue{}, Tags: []string{},
		},
		visibleAt: now.Add(f.delay),
	}
	p.merge(in, now)
	f.people = append(f.people, p)
	return p
}
