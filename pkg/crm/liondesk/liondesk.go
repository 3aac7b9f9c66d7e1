// Package liondesk is the LionDesk API v2 adapter: it puts leads into
// LionDesk (search, create the contact, add the inquiry as a note) and lists
// the contacts changed since a time, since LionDesk sends no webhooks.
package liondesk

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// Name is the CRM's name in events.
const Name = "liondesk"

// Config points the adapter at the vendor, the sandbox, or any compatible
// server. The env tags are relative: crm-sync reads them under
// CRMSYNC_LIONDESK_.
type Config struct {
	BaseURL string `env:"BASE_URL" envDefault:"https://api-v2.liondesk.com"`
	// AccessToken is an OAuth access token (Authorization: Bearer). Nothing
	// refreshes it yet: a revoked or expired token fails every call with
	// 401, a permanent error, until it is replaced.
	AccessToken     string        `env:"ACCESS_TOKEN"`
	AccessTokenFile string        `env:"ACCESS_TOKEN_FILE"`
	Timeout         time.Duration `env:"TIMEOUT" envDefault:"15s"`
	// LionDesk publishes no rate limit; 60 per 10 s is an assumption (the
	// sandbox's), and the pacer learns the real one from X-RateLimit-*.
	// Zero means that default.
	RateLimit  int           `env:"RATE_LIMIT" envDefault:"60"`
	RateWindow time.Duration `env:"RATE_WINDOW" envDefault:"10s"`
}

// Validate reports the first invalid setting, naming it as the variable
// prefix+NAME (e.g. CRMSYNC_LIONDESK_ACCESS_TOKEN).
func (c Config) Validate(prefix string) error {
	if c.AccessToken == "" {
		return fmt.Errorf("%sACCESS_TOKEN is required for LionDesk", prefix)
	}
	if c.RateLimit < 0 || c.RateWindow < 0 {
		return fmt.Errorf("%sRATE_LIMIT and %sRATE_WINDOW must not be negative", prefix, prefix)
	}
	return vendorapi.CheckEndpoint(prefix, c.BaseURL, c.Timeout)
}

// LionDesk is the LionDesk API v2 adapter. LionDesk has no endpoint like
// Follow Up Boss's events and does not deduplicate contacts, so Brokerflow's
// own search is what keeps one contact per person: a lead for a person that
// Find did not locate becomes POST /contacts followed by a note with the
// inquiry; a lead for a known contact becomes only the note.
//
// Parts of the contract it relies on are not in LionDesk's public
// documentation (search by email and phone, notes, the shape of answers);
// docs/crm.md lists them. OAuth token refresh is not built: the access token
// is used as configured.
type LionDesk struct {
	api *vendorapi.Client

	// sourceMu serializes resolving a lead source to a contact source id,
	// so that one process creates each source once.
	sourceMu sync.Mutex
	sources  map[string]int64 // lower-cased name → source_id
}

// New returns an adapter for the API at cfg.BaseURL: the vendor, the
// sandbox, or any compatible server. Its calls are paced to cfg's quota.
func New(cfg Config) *LionDesk {
	return &LionDesk{
		api: vendorapi.New(vendorapi.Config{
			Vendor:   Name,
			Area:     crm.Area,
			BaseURL:  cfg.BaseURL,
			Timeout:  cfg.Timeout,
			Auth:     vendorapi.Bearer(cfg.AccessToken),
			Classify: vendorapi.DefaultClassifier("message", "error"),
			Pacer:    vendorapi.NewPacer(vendorapi.PacerConfig{Limit: cmp.Or(cfg.RateLimit, 60), Window: cmp.Or(cfg.RateWindow, 10*time.Second)}),
		}),
		sources: map[string]int64{},
	}
}

// Name is "liondesk".
func (l *LionDesk) Name() string { return Name }

type liondeskID struct {
	ID int64 `json:"id"`
}

type liondeskPage struct {
	Data []struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"data"`
	Total int `json:"total"`
}

// liondeskNewContact is the body of POST /contacts: documented fields only.
type liondeskNewContact struct {
	FirstName   string `json:"first_name,omitempty"`
	LastName    string `json:"last_name,omitempty"`
	Email       string `json:"email,omitempty"`
	MobilePhone string `json:"mobile_phone,omitempty"`
	HomePhone   string `json:"home_phone,omitempty"`
	SourceID    int64  `json:"source_id,omitempty"`
}

type liondeskNote struct {
	Content string `json:"content"`
}

// Find searches GET /contacts by email, then by phone. LionDesk may hold
// several contacts for one person (it does not deduplicate); the first
// answered, the oldest in the sandbox, wins.
func (l *LionDesk) Find(ctx context.Context, id crm.Identity) (crm.Match, bool, error) {
	return crm.FindByEmailThenPhone(ctx, id, func(ctx context.Context, by, value string) (string, error) {
		var page liondeskPage
		path := "/contacts?" + url.Values{by: {value}, "limit": {"1"}}.Encode()
		if _, err := l.api.Do(ctx, "search contacts by "+by, http.MethodGet, path, nil, &page); err != nil || len(page.Data) == 0 {
			return "", err
		}
		return strconv.FormatInt(page.Data[0].ID, 10), nil
	})
}

// Record adds the lead as a note on contactID, or, without one, creates the
// contact (POST /contacts, with the lead source as its contact source) and
// then adds the note.
//
// If the note fails after the contact was made, Record returns the error
// and crm-sync retries the lead: its Find then locates the new contact by
// email or phone and only the note is added. A lead with neither would get a
// second contact on that retry (the normalizer rejects such leads).
func (l *LionDesk) Record(ctx context.Context, lead *leadv1.Lead, contactID string) (crm.Recorded, error) {
	if contactID != "" {
		id, err := strconv.ParseInt(contactID, 10, 64)
		if err != nil || id <= 0 {
			return crm.Recorded{}, fmt.Errorf("liondesk: contact id %q is not a contact id", contactID)
		}
		if err := l.addNote(ctx, id, lead); err != nil {
			return crm.Recorded{}, err
		}
		return crm.Recorded{ContactID: contactID}, nil
	}

	c := lead.GetContact()
	body := liondeskNewContact{
		FirstName: c.GetFirstName(), LastName: c.GetLastName(), Email: c.GetEmail(),
		MobilePhone: c.GetMobilePhone(), HomePhone: c.GetHomePhone(),
	}
	if body.FirstName == "" && body.LastName == "" {
		body.FirstName = c.GetFullName()
	}
	if src := crm.SourceOf(lead); src != "" {
		id, err := l.sourceID(ctx, src)
		if err != nil {
			return crm.Recorded{}, err
		}
		body.SourceID = id
	}
	var created liondeskID
	status, err := l.api.Do(ctx, "create contact", http.MethodPost, "/contacts", body, &created)
	if err != nil {
		return crm.Recorded{}, err
	}
	if created.ID == 0 {
		return crm.Recorded{}, fmt.Errorf("liondesk: create contact: HTTP %d without a contact id", status)
	}
	if err := l.addNote(ctx, created.ID, lead); err != nil {
		return crm.Recorded{}, fmt.Errorf("contact %d created, its note not: %w: %w", created.ID, crm.ErrPartlyDone, err)
	}
	return crm.Recorded{ContactID: strconv.FormatInt(created.ID, 10), Created: true}, nil
}

func (l *LionDesk) addNote(ctx context.Context, contactID int64, lead *leadv1.Lead) error {
	return l.postNote(ctx, contactID, NoteText(lead))
}

func (l *LionDesk) postNote(ctx context.Context, contactID int64, content string) error {
	path := "/contacts/" + strconv.FormatInt(contactID, 10) + "/notes"
	_, err := l.api.Do(ctx, "add note", http.MethodPost, path, liondeskNote{Content: content}, nil)
	return err
}

// sourceID returns the id of the contact source named name
// (case-insensitively), creating the source when the account has none.
// Several sources may share a name; the lowest id wins.
func (l *LionDesk) sourceID(ctx context.Context, name string) (int64, error) {
	key := strings.ToLower(name)
	l.sourceMu.Lock()
	defer l.sourceMu.Unlock()
	if id, ok := l.sources[key]; ok {
		return id, nil
	}
	const pageSize = 100
	var found int64
	for offset := 0; ; offset += pageSize {
		var page liondeskPage
		path := "/contact-sources?" + url.Values{"limit": {strconv.Itoa(pageSize)}, "offset": {strconv.Itoa(offset)}}.Encode()
		if _, err := l.api.Do(ctx, "list contact sources", http.MethodGet, path, nil, &page); err != nil {
			return 0, err
		}
		for _, s := range page.Data {
			if strings.EqualFold(strings.TrimSpace(s.Name), name) && (found == 0 || s.ID < found) {
				found = s.ID
			}
		}
		if len(page.Data) == 0 || offset+len(page.Data) >= page.Total {
			break
		}
	}
	if found == 0 {
		var created liondeskID
		status, err := l.api.Do(ctx, "create contact source", http.MethodPost, "/contact-sources", map[string]string{"name": name}, &created)
		if err != nil {
			return 0, err
		}
		if created.ID == 0 {
			return 0, fmt.Errorf("liondesk: create contact source: HTTP %d without an id", status)
		}
		found = created.ID
	}
	l.sources[key] = found
	return found, nil
}

// NoteText is the text of the note that carries a lead into LionDesk:
// everything of the lead that the contact's fields do not hold (inquiry,
// message, property, price, campaign, requested agent), one item a line.
func NoteText(l *leadv1.Lead) string {
	var b strings.Builder
	line := func(label, value string) {
		if value = strings.TrimSpace(value); value != "" {
			fmt.Fprintf(&b, "%s: %s\n", label, value)
		}
	}
	fmt.Fprintf(&b, "New lead from %s %s\n", orUnknown(crm.SourceOf(l)), crm.LeadMarker(l.GetLeadId()))
	in := l.GetInquiry()
	line("Inquiry", inquiryName(in.GetType()))
	line("Message", in.GetMessage())
	if p := in.GetProperty(); p != nil {
		cityLine := strings.TrimSpace(strings.Join(nonEmpty(p.GetStateOrProvince(), p.GetPostalCode()), " "))
		line("Property", strings.Join(nonEmpty(p.GetUnparsedAddress(), p.GetCity(), cityLine), ", "))
		line("MLS number", p.GetListingId())
		line("Price", formatMoney(p.GetListPrice().GetAmountMinor(), p.GetListPrice().GetCurrencyCode()))
		line("Listing", p.GetUrl())
	}
	if c := l.GetCampaign(); c != nil {
		var parts []string
		for _, kv := range [][2]string{
			{"utm_source", c.GetUtmSource()}, {"utm_medium", c.GetUtmMedium()}, {"utm_campaign", c.GetUtmCampaign()},
			{"utm_term", c.GetUtmTerm()}, {"utm_content", c.GetUtmContent()},
		} {
			if kv[1] != "" {
				parts = append(parts, kv[0]+"="+kv[1])
			}
		}
		line("Campaign", strings.Join(parts, ", "))
		line("Landing page", c.GetLandingPageUrl())
	}
	if a := l.GetAgent(); a != nil {
		agent := a.GetName()
		if a.GetEmail() != "" {
			agent = strings.TrimSpace(agent + " <" + a.GetEmail() + ">")
		}
		if a.GetMemberId() != "" {
			agent = strings.TrimSpace(agent + " (member id " + a.GetMemberId() + ")")
		}
		line("Agent requested", agent)
	}
	if c := l.GetContact(); c.GetRawPhone() != "" && c.GetMobilePhone() == "" {
		line("Phone as sent", c.GetRawPhone())
	}
	if t := l.GetReceivedAt(); t != nil {
		line("Received", t.AsTime().UTC().Format(time.RFC3339))
	}
	return strings.TrimRight(b.String(), "\n")
}

func inquiryName(t leadv1.InquiryType) string {
	switch t {
	case leadv1.InquiryType_INQUIRY_TYPE_BUY:
		return "buy"
	case leadv1.InquiryType_INQUIRY_TYPE_SELL:
		return "sell"
	case leadv1.InquiryType_INQUIRY_TYPE_RENT:
		return "rent"
	default:
		return ""
	}
}

// formatMoney writes an amount in minor units as "449000.00 USD"; zero is
// no price.
func formatMoney(minor int64, currency string) string {
	if minor == 0 {
		return ""
	}
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return strings.TrimSpace(fmt.Sprintf("%s%d.%02d %s", sign, minor/100, minor%100, currency))
}

func nonEmpty(values ...string) []string {
	out := values[:0:0]
	for _, v := range values {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

func orUnknown(s string) string {
	if s == "" {
		return "an unknown source"
	}
	return s
}
