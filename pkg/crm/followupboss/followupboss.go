// Package followupboss is the Follow Up Boss API v1 adapter: it puts leads
// into Follow Up Boss (search, then POST /v1/events) and reads the people
// its webhooks name.
package followupboss

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// Name is the CRM's name in events, and its gateway source name.
const Name = "followupboss"

// Config points the adapter at the vendor, the sandbox, or any compatible
// server. The env tags are relative: crm-sync reads them under CRMSYNC_FUB_.
type Config struct {
	BaseURL string `env:"BASE_URL" envDefault:"https://api.followupboss.com"`
	// APIKey is the account's API key (HTTP Basic username).
	APIKey     string `env:"API_KEY"`
	APIKeyFile string `env:"API_KEY_FILE"`
	// System and SystemKey are the registered system (X-System, X-System-Key).
	System        string        `env:"SYSTEM" envDefault:"brokerflow"`
	SystemKey     string        `env:"SYSTEM_KEY"`
	SystemKeyFile string        `env:"SYSTEM_KEY_FILE"`
	Timeout       time.Duration `env:"TIMEOUT" envDefault:"15s"`
	// RateLimit per RateWindow is the account's documented quota for the
	// calls Follow Up Boss counts (250 per 10 s for a registered system,
	// 125 without); the pacer learns the real one from its headers. Zero
	// means the documented default.
	RateLimit  int           `env:"RATE_LIMIT" envDefault:"250"`
	RateWindow time.Duration `env:"RATE_WINDOW" envDefault:"10s"`
	// EventsRateLimit per RateWindow is the tighter quota of GET /v1/events
	// (HasLead): 20 per 10 s for a registered system, 10 without. Zero
	// means 20.
	EventsRateLimit int `env:"EVENTS_RATE_LIMIT" envDefault:"20"`
}

// Validate reports the first invalid setting, naming it as the variable
// prefix+NAME (e.g. CRMSYNC_FUB_API_KEY).
func (c Config) Validate(prefix string) error {
	if c.APIKey == "" {
		return fmt.Errorf("%sAPI_KEY is required for Follow Up Boss", prefix)
	}
	if c.RateLimit < 0 || c.RateWindow < 0 || c.EventsRateLimit < 0 {
		return fmt.Errorf("%sRATE_LIMIT, %sEVENTS_RATE_LIMIT and %sRATE_WINDOW must not be negative", prefix, prefix, prefix)
	}
	return vendorapi.CheckEndpoint(prefix, c.BaseURL, c.Timeout)
}

// FollowUpBoss is the Follow Up Boss API v1 adapter. It searches people by
// email, then by phone, and always sends a lead as POST /v1/events (with
// person.id when the person is known), so that Follow Up Boss's own lead
// routing and action plans run. POST /v1/people is never used for leads.
type FollowUpBoss struct {
	api *vendorapi.Client
	// events lists events (GET /v1/events), which Follow Up Boss limits
	// apart from, and more tightly than, the global quota: its own pacer
	// learns that limit from its own answers' headers.
	events *vendorapi.Client
	system string
}

// New returns an adapter for the API at cfg.BaseURL: the vendor, the
// sandbox, or any compatible server. Its calls are paced to cfg's quota.
func New(cfg Config) *FollowUpBoss {
	header := http.Header{}
	if cfg.System != "" {
		header.Set("X-System", cfg.System)
		header.Set("X-System-Key", cfg.SystemKey)
	}
	client := func(p *vendorapi.Pacer) *vendorapi.Client {
		return vendorapi.New(vendorapi.Config{
			Vendor:   Name,
			Area:     crm.Area,
			BaseURL:  cfg.BaseURL,
			Timeout:  cfg.Timeout,
			Auth:     vendorapi.Basic(cfg.APIKey, ""),
			Header:   header,
			Classify: vendorapi.DefaultClassifier("errorMessage"),
			Pacer:    p,
		})
	}
	window := cmp.Or(cfg.RateWindow, 10*time.Second)
	return &FollowUpBoss{
		api: client(vendorapi.NewPacer(vendorapi.PacerConfig{Limit: cmp.Or(cfg.RateLimit, 250), Window: window, Exempt: Unmetered})),
		events: client(vendorapi.NewPacer(vendorapi.PacerConfig{Limit: cmp.Or(cfg.EventsRateLimit, 20), Window: window,
			Exempt: func(req *http.Request) bool { return !listsEvents(req) }})),
		system: cfg.System,
	}
}

// Unmetered names the calls that the global pacer does not count: POST
// /v1/events, which Follow Up Boss does not limit, and GET /v1/events, which
// it limits apart ("events") and which the adapter paces on its own.
func Unmetered(req *http.Request) bool {
	return strings.HasSuffix(req.URL.Path, "/v1/events") && (req.Method == http.MethodPost || req.Method == http.MethodGet)
}

func listsEvents(req *http.Request) bool {
	return req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/v1/events")
}

// Name is "followupboss".
func (f *FollowUpBoss) Name() string { return Name }

type fubValue struct {
	Value string `json:"value"`
}

type fubPerson struct {
	ID        int64      `json:"id,omitempty"`
	FirstName string     `json:"firstName,omitempty"`
	LastName  string     `json:"lastName,omitempty"`
	Emails    []fubValue `json:"emails,omitempty"`
	Phones    []fubValue `json:"phones,omitempty"`
	Tags      []string   `json:"tags,omitempty"`
}

type fubProperty struct {
	Street    string `json:"street,omitempty"`
	City      string `json:"city,omitempty"`
	State     string `json:"state,omitempty"`
	Code      string `json:"code,omitempty"`
	MLSNumber string `json:"mlsNumber,omitempty"`
	Price     int64  `json:"price,omitempty"`
	ForRent   bool   `json:"forRent,omitempty"`
	URL       string `json:"url,omitempty"`
}

type fubEvent struct {
	Source  string `json:"source"`
	System  string `json:"system,omitempty"`
	Type    string `json:"type"`
	Message string `json:"message,omitempty"`
	// Description carries crm.LeadMarker, for HasLead.
	Description string       `json:"description,omitempty"`
	Person      fubPerson    `json:"person"`
	Property    *fubProperty `json:"property,omitempty"`
}

// Find searches GET /v1/people by email, then by phone.
func (f *FollowUpBoss) Find(ctx context.Context, id crm.Identity) (crm.Match, bool, error) {
	return crm.FindByEmailThenPhone(ctx, id, func(ctx context.Context, by, value string) (string, error) {
		var page struct {
			People []struct {
				ID int64 `json:"id"`
			} `json:"people"`
		}
		path := "/v1/people?" + url.Values{by: {value}, "limit": {"1"}}.Encode()
		if _, err := f.api.Do(ctx, "search people by "+by, http.MethodGet, path, nil, &page); err != nil || len(page.People) == 0 {
			return "", err
		}
		return strconv.FormatInt(page.People[0].ID, 10), nil
	})
}

// Record sends the lead as POST /v1/events. Follow Up Boss answers 201 when
// it created the person, 200 when it matched one, and 204 when the source's
// lead flow is archived; the body of a 200 or 201 is the person, which
// Recorded.Person carries.
func (f *FollowUpBoss) Record(ctx context.Context, l *leadv1.Lead, contactID string) (crm.Recorded, error) {
	ev := f.event(l)
	if contactID != "" {
		id, err := strconv.ParseInt(contactID, 10, 64)
		if err != nil {
			return crm.Recorded{}, fmt.Errorf("followupboss: contact id %q is not a person id: %w", contactID, err)
		}
		ev.Person.ID = id
	}
	var person fubPersonView
	status, err := f.api.Do(ctx, "send event", http.MethodPost, "/v1/events", ev, &person)
	if err != nil {
		return crm.Recorded{}, err
	}
	if status == http.StatusNoContent {
		return crm.Recorded{Ignored: true}, nil
	}
	if person.ID == 0 {
		return crm.Recorded{}, fmt.Errorf("followupboss: send event: HTTP %d without a person id", status)
	}
	p := person.person()
	return crm.Recorded{ContactID: p.ID, Created: status == http.StatusCreated, Person: &p}, nil
}

// event maps the canonical lead to a Follow Up Boss event.
func (f *FollowUpBoss) event(l *leadv1.Lead) fubEvent {
	c := l.GetContact()
	ev := fubEvent{
		Source:      crm.SourceOf(l),
		System:      f.system,
		Type:        fubEventType(l),
		Message:     eventMessage(l),
		Description: crm.LeadMarker(l.GetLeadId()),
		Person:      fubPerson{FirstName: c.GetFirstName(), LastName: c.GetLastName()},
	}
	if c.GetEmail() != "" {
		ev.Person.Emails = []fubValue{{Value: c.GetEmail()}}
	}
	if c.GetMobilePhone() != "" {
		ev.Person.Phones = []fubValue{{Value: c.GetMobilePhone()}}
	}
	if p := l.GetInquiry().GetProperty(); p != nil {
		ev.Property = &fubProperty{
			Street:    p.GetUnparsedAddress(),
			City:      p.GetCity(),
			State:     p.GetStateOrProvince(),
			Code:      p.GetPostalCode(),
			MLSNumber: p.GetListingId(),
			Price:     p.GetListPrice().GetAmountMinor() / 100,
			ForRent:   l.GetInquiry().GetType() == leadv1.InquiryType_INQUIRY_TYPE_RENT,
			URL:       p.GetUrl(),
		}
	}
	return ev
}

// eventMessage is the lead's message, followed by its crm.LeadMarker on a
// line of its own: the marker is in the message as well as in the
// description because the message is the field Follow Up Boss surely keeps
// and shows, and HasLead looks in both.
func eventMessage(l *leadv1.Lead) string {
	marker := crm.LeadMarker(l.GetLeadId())
	if m := strings.TrimSpace(l.GetInquiry().GetMessage()); m != "" {
		return m + "\n\n" + marker
	}
	return marker
}

// fubEventType picks the event type that triggers Follow Up Boss's action
// plans: a seller is a Seller Inquiry, a lead about a property a Property
// Inquiry, a message a General Inquiry, and anything else a Registration.
func fubEventType(l *leadv1.Lead) string {
	switch {
	case l.GetInquiry().GetType() == leadv1.InquiryType_INQUIRY_TYPE_SELL:
		return "Seller Inquiry"
	case l.GetInquiry().GetProperty() != nil:
		return "Property Inquiry"
	case l.GetInquiry().GetMessage() != "":
		return "General Inquiry"
	default:
		return "Registration"
	}
}
