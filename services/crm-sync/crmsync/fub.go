package crmsync

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// FollowUpBoss is the Follow Up Boss API v1 adapter. It searches people by
// email, then by phone, and always sends a lead as POST /v1/events (with
// person.id when the person is known), so that Follow Up Boss's own lead
// routing and action plans run. POST /v1/people is never used for leads.
type FollowUpBoss struct {
	api    *jsonAPI
	system string
}

var _ CRM = (*FollowUpBoss)(nil)

// NewFollowUpBoss returns an adapter for the API at cfg.BaseURL: the vendor,
// the sandbox, or any compatible server.
func NewFollowUpBoss(cfg FUBConfig, client *http.Client) *FollowUpBoss {
	if client == nil {
		client = &http.Client{Timeout: cfg.Timeout}
	}
	return &FollowUpBoss{
		api: &jsonAPI{
			crm:    "followupboss",
			base:   strings.TrimRight(cfg.BaseURL, "/"),
			client: client,
			authorize: func(req *http.Request) {
				req.SetBasicAuth(cfg.APIKey, "")
				if cfg.System != "" {
					req.Header.Set("X-System", cfg.System)
					req.Header.Set("X-System-Key", cfg.SystemKey)
				}
			},
			errorKeys: []string{"errorMessage"},
		},
		system: cfg.System,
	}
}

// Name is "followupboss".
func (f *FollowUpBoss) Name() string { return "followupboss" }

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
	Source   string       `json:"source"`
	System   string       `json:"system,omitempty"`
	Type     string       `json:"type"`
	Message  string       `json:"message,omitempty"`
	Person   fubPerson    `json:"person"`
	Property *fubProperty `json:"property,omitempty"`
}

// Find searches GET /v1/people by email, then by phone.
func (f *FollowUpBoss) Find(ctx context.Context, id Identity) (Match, bool, error) {
	return findByEmailThenPhone(ctx, id, func(ctx context.Context, by, value string) (int64, error) {
		var page struct {
			People []struct {
				ID int64 `json:"id"`
			} `json:"people"`
		}
		path := "/v1/people?" + url.Values{by: {value}, "limit": {"1"}}.Encode()
		if _, err := f.api.do(ctx, "search people by "+by, http.MethodGet, path, nil, &page); err != nil || len(page.People) == 0 {
			return 0, err
		}
		return page.People[0].ID, nil
	})
}

// Record sends the lead as POST /v1/events. Follow Up Boss answers 201 when
// it created the person, 200 when it matched one, and 204 when the source's
// lead flow is archived.
func (f *FollowUpBoss) Record(ctx context.Context, l *leadv1.Lead, contactID string) (Recorded, error) {
	ev := f.event(l)
	if contactID != "" {
		id, err := strconv.ParseInt(contactID, 10, 64)
		if err != nil {
			return Recorded{}, fmt.Errorf("followupboss: contact id %q is not a person id: %w", contactID, err)
		}
		ev.Person.ID = id
	}
	var person struct {
		ID int64 `json:"id"`
	}
	status, err := f.api.do(ctx, "send event", http.MethodPost, "/v1/events", ev, &person)
	if err != nil {
		return Recorded{}, err
	}
	if status == http.StatusNoContent {
		return Recorded{Ignored: true}, nil
	}
	if person.ID == 0 {
		return Recorded{}, fmt.Errorf("followupboss: send event: HTTP %d without a person id", status)
	}
	return Recorded{ContactID: strconv.FormatInt(person.ID, 10), Created: status == http.StatusCreated}, nil
}

// event maps the canonical lead to a Follow Up Boss event.
func (f *FollowUpBoss) event(l *leadv1.Lead) fubEvent {
	c := l.GetContact()
	ev := fubEvent{
		Source:  l.GetLeadSource(),
		System:  f.system,
		Type:    fubEventType(l),
		Message: l.GetInquiry().GetMessage(),
		Person:  fubPerson{FirstName: c.GetFirstName(), LastName: c.GetLastName()},
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
