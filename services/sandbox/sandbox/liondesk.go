package sandbox

import (
	"slices"
	"sync"
	"time"
)

// DefaultLionDeskToken is the OAuth access token the LionDesk emulation accepts by default.
const DefaultLionDeskToken = "sandbox-liondesk-token"

// LionDeskOptions configures the LionDesk emulation. Zero fields take the defaults.
//
// LionDesk documents no rate limit (none was found). The sandbox emulates one anyway,
// a sliding window per access token, so that adapters meet 429s in tests; its size is an
// assumption, not a vendor figure.
type LionDeskOptions struct {
	// Tokens are the valid OAuth access tokens (Authorization: Bearer), one per user.
	// Default: DefaultLionDeskToken. Obtaining or refreshing them is not emulated.
	Tokens []string
	// Window is the sliding rate-limit window. Default 10s (assumed).
	Window time.Duration
	// Limit is the number of calls per token per window. Default 60 (assumed).
	Limit int
}

func (o *LionDeskOptions) setDefaults() {
	if len(o.Tokens) == 0 {
		o.Tokens = []string{DefaultLionDeskToken}
	}
	if o.Window <= 0 {
		o.Window = 10 * time.Second
	}
	if o.Limit <= 0 {
		o.Limit = 60
	}
}

// LionDeskContact is a contact as the emulated LionDesk v2 /contacts represents it. The fields
// are the documented POST /contacts fields [O]; id, created_at and updated_at are
// the sandbox's choice of what an answer adds, as the answer's shape is not documented. Unset
// text fields are empty strings and unset ids are null.
type LionDeskContact struct {
	ID             int64     `json:"id"`
	AssignedUserID *int64    `json:"assigned_user_id"`
	FirstName      string    `json:"first_name"`
	LastName       string    `json:"last_name"`
	Email          string    `json:"email"`
	MobilePhone    string    `json:"mobile_phone"`
	HomePhone      string    `json:"home_phone"`
	OfficePhone    string    `json:"office_phone"`
	Fax            string    `json:"fax"`
	Company        string    `json:"company"`
	Birthday       string    `json:"birthday"`
	Anniversary    string    `json:"anniversary"`
	SpouseName     string    `json:"spouse_name"`
	SpouseEmail    string    `json:"spouse_email"`
	SpousePhone    string    `json:"spouse_phone"`
	SpouseBirthday string    `json:"spouse_birthday"`
	Tags           string    `json:"tags"`
	HotnessID      *int64    `json:"hotness_id"`
	SourceID       *int64    `json:"source_id"`
	CreatedAt      time.Time `json:"created_at"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// LionDeskNote is one note made by POST /contacts/{id}/notes (a sandbox assumption: the notes
// endpoint is not in the quoted documentation).
type LionDeskNote struct {
	ID        int64     `json:"id"`
	ContactID int64     `json:"contact_id"`
	Content   string    `json:"content"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// LionDeskSource is one contact source (/contact-sources, documented with {"name":"Zillow"}).
type LionDeskSource struct {
	ID   int64  `json:"id"`
	Name string `json:"name"`
}

// LionDesk is the LionDesk API v2 emulation, served under /liondesk. Unlike Follow Up Boss it
// does not deduplicate: every POST /contacts makes a new contact, as nothing in LionDesk's
// documentation says otherwise. Its methods are safe for concurrent use.
type LionDesk struct {
	*Kit
	opts LionDeskOptions
	now  func() time.Time

	mu       sync.Mutex
	contacts []*LionDeskContact // in id order
	notes    []LionDeskNote
	sources  []LionDeskSource
	lastID   struct{ contact, note, source int64 }
}

func newLionDesk(o LionDeskOptions, now func() time.Time) *LionDesk {
	o.setDefaults()
	o.Tokens = slices.Clone(o.Tokens)
	l := &LionDesk{opts: o, now: now}
	// Reset (the kit's) forgets contacts, notes, sources, faults and rate-limit windows; ids
	// restart at 1.
	l.Kit = NewKit(KitOptions{
		Name: liondeskName, Title: "LionDesk (API v2, under /liondesk)",
		Note:      "Newest first. No deduplication: every POST /contacts is a new contact.",
		Auth:      l.auth,
		ErrorBody: func(status int, message string) any { return liondeskError{Code: status, Message: message} },
		RateLimit: &RateLimit{Limit: o.Limit, Window: o.Window},
		State:     l.state, Tables: l.tables, Reset: l.reset, Now: now,
	})
	l.routes()
	return l
}

func (l *LionDesk) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.contacts, l.notes, l.sources = nil, nil, nil
	l.lastID.contact, l.lastID.note, l.lastID.source = 0, 0, 0
}

// Contacts returns a copy of every contact, in id order.
func (l *LionDesk) Contacts() []LionDeskContact {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]LionDeskContact, len(l.contacts))
	for i, c := range l.contacts {
		out[i] = c.clone()
	}
	return out
}

// Notes returns a copy of every note, in id order.
func (l *LionDesk) Notes() []LionDeskNote {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.notes)
}

// Sources returns a copy of every contact source, in id order.
func (l *LionDesk) Sources() []LionDeskSource {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sources)
}

func (c *LionDeskContact) clone() LionDeskContact {
	out := *c
	out.AssignedUserID = cloneID(c.AssignedUserID)
	out.HotnessID = cloneID(c.HotnessID)
	out.SourceID = cloneID(c.SourceID)
	return out
}

func cloneID(p *int64) *int64 {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// findContactLocked returns the contact with id, or nil.
func (l *LionDesk) findContactLocked(id int64) *LionDeskContact {
	i, ok := slices.BinarySearchFunc(l.contacts, id, func(c *LionDeskContact, id int64) int {
		switch {
		case c.ID < id:
			return -1
		case c.ID > id:
			return 1
		}
		return 0
	})
	if !ok {
		return nil
	}
	return l.contacts[i]
}

func (l *LionDesk) sourceExistsLocked(id int64) bool {
	return slices.ContainsFunc(l.sources, func(s LionDeskSource) bool { return s.ID == id })
}

// phones returns every phone of the contact, for the phone search.
func (c *LionDeskContact) phones() []string {
	return []string{c.MobilePhone, c.HomePhone, c.OfficePhone}
}
