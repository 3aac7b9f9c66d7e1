// Package dotloop is the Dotloop Public API v2 adapter
// (https://dotloop.github.io/public-api/): it opens loops with Loop-It,
// reads loops, their detail and participants, updates participants and a
// loop's property, and manages webhook subscriptions. Calls go through pkg/vendorapi with the
// account's OAuth token (pkg/oauth), paced to 100 requests a minute per user
// from the X-RateLimit-* headers; a 429 is bus.Throttled.
package dotloop

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/jsonscalar"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
)

// Name is the TMS's name in events, and its gateway source name.
const Name = "dotloop"

// Config points the adapter at Dotloop, the sandbox, or any compatible
// server. The env tags are relative: tms-sync reads them under
// TMSSYNC_DOTLOOP_.
type Config struct {
	// BaseURL is the API; AuthURL the OAuth server.
	BaseURL string `env:"BASE_URL" envDefault:"https://api-gateway.dotloop.com/public/v2"`
	AuthURL string `env:"AUTH_URL" envDefault:"https://auth.dotloop.com/oauth"`
	// ClientID and ClientSecret are the registered application's.
	ClientID         string        `env:"CLIENT_ID"`
	ClientSecret     string        `env:"CLIENT_SECRET"`
	ClientSecretFile string        `env:"CLIENT_SECRET_FILE"`
	Timeout          time.Duration `env:"TIMEOUT" envDefault:"15s"`
	// RateLimit per minute is the documented quota per user; the pacer
	// learns the real one from X-RateLimit-Limit and -Remaining.
	RateLimit int `env:"RATE_LIMIT" envDefault:"100"`
}

// Validate reports the first invalid setting, naming it as prefix+NAME.
func (c Config) Validate(prefix string) error {
	if c.ClientID == "" || c.ClientSecret == "" {
		return fmt.Errorf("%sCLIENT_ID and %sCLIENT_SECRET (or _FILE) are required for Dotloop", prefix, prefix)
	}
	if c.RateLimit < 0 {
		return fmt.Errorf("%sRATE_LIMIT must not be negative", prefix)
	}
	if err := vendorapi.CheckEndpoint(prefix+"AUTH_", c.AuthURL, c.Timeout); err != nil {
		return err
	}
	return vendorapi.CheckEndpoint(prefix, c.BaseURL, c.Timeout)
}

// ReadSecret fills ClientSecret from ClientSecretFile (its first line) when
// it is not set, naming the variable as prefix+CLIENT_SECRET_FILE.
func (c *Config) ReadSecret(prefix string) error {
	return service.ReadSecret(&c.ClientSecret, c.ClientSecretFile, prefix+"CLIENT_SECRET_FILE")
}

// TokenURL and AuthorizeURL are the OAuth endpoints under AuthURL.
func (c Config) TokenURL() string     { return strings.TrimRight(c.AuthURL, "/") + "/token" }
func (c Config) AuthorizeURL() string { return strings.TrimRight(c.AuthURL, "/") + "/authorize" }

// OAuthConfig is the OAuth client of c: its tokens are kept under
// "dotloop", shared by every service that calls the account.
func (c Config) OAuthConfig() oauth.Config {
	return oauth.Config{
		Vendor: Name, Area: tms.Area, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		AuthURL: c.AuthorizeURL(), TokenURL: c.TokenURL(),
	}
}

// Dotloop is the adapter.
type Dotloop struct {
	api *vendorapi.Client
}

var _ tms.TMS = (*Dotloop)(nil)

// New returns an adapter calling cfg.BaseURL with src's access tokens (a
// *oauth.Store refreshes them after a 401).
func New(cfg Config, src vendorapi.TokenSource) *Dotloop {
	return &Dotloop{api: vendorapi.New(vendorapi.Config{
		Vendor:   Name,
		Area:     tms.Area,
		BaseURL:  cfg.BaseURL,
		Timeout:  cfg.Timeout,
		Auth:     vendorapi.OAuth(src),
		Classify: vendorapi.DefaultClassifier("message", "error_description", "error"),
		Pacer: vendorapi.NewPacer(vendorapi.PacerConfig{
			Limit: cmp.Or(cfg.RateLimit, 100), Window: time.Minute,
			// Dotloop's X-RateLimit-Reset is the milliseconds left in the
			// window, not its length: the window is the documented minute.
			Headers: vendorapi.RateHeaders{Limit: "X-RateLimit-Limit", Remaining: "X-RateLimit-Remaining"},
		}),
	})}
}

// Name is "dotloop".
func (d *Dotloop) Name() string { return Name }

// Capabilities: Dotloop does everything the interface names.
func (d *Dotloop) Capabilities() tms.Capabilities {
	return tms.Capabilities{Webhooks: true, UpdateParticipants: true, ListTransactions: true, Participants: true, Commission: true, UpdateProperty: true}
}

type loop struct {
	ID              int64  `json:"id"`
	ProfileID       int64  `json:"profileId"`
	Name            string `json:"name"`
	TransactionType string `json:"transactionType"`
	Status          string `json:"status"`
	Created         string `json:"created"`
	Updated         string `json:"updated"`
	LoopURL         string `json:"loopUrl"`
}

func (l loop) transaction() tms.Transaction {
	t := tms.Transaction{
		ID: strconv.FormatInt(l.ID, 10), Profile: strconv.FormatInt(l.ProfileID, 10), Name: l.Name,
		Type: l.TransactionType, Status: l.Status, URL: l.LoopURL,
	}
	t.Created, _ = time.Parse(time.RFC3339, l.Created)
	t.Updated, _ = time.Parse(time.RFC3339, l.Updated)
	return t
}

type data[T any] struct {
	Data T `json:"data"`
}

// LoopIt is the Loop-It request body.
type LoopIt struct {
	Name            string        `json:"name"`
	TransactionType string        `json:"transactionType"`
	Status          string        `json:"status"`
	StreetName      string        `json:"streetName,omitempty"`
	StreetNumber    string        `json:"streetNumber,omitempty"`
	Unit            string        `json:"unit,omitempty"`
	City            string        `json:"city,omitempty"`
	ZipCode         string        `json:"zipCode,omitempty"`
	State           string        `json:"state,omitempty"`
	Country         string        `json:"country,omitempty"`
	MLSPropertyID   string        `json:"mlsPropertyId,omitempty"`
	TemplateID      int64         `json:"templateId,omitempty"`
	Participants    []participant `json:"participants"`
}

type participant struct {
	ID       int64  `json:"id,omitempty"`
	FullName string `json:"fullName"`
	Email    string `json:"email,omitempty"`
	Role     string `json:"role"`
	Phone    string `json:"Phone,omitempty"`
}

func (p participant) party() tms.Party {
	return tms.Party{ID: strconv.FormatInt(p.ID, 10), FullName: p.FullName, Email: p.Email, Phone: p.Phone, Role: p.Role}
}

// LoopItBody maps o to the Loop-It request.
func LoopItBody(o tms.Open) (LoopIt, error) {
	b := LoopIt{Name: o.Name, TransactionType: o.Type, Status: o.Status}
	if o.TemplateID != "" {
		n, err := strconv.ParseInt(o.TemplateID, 10, 64)
		if err != nil {
			return b, fmt.Errorf("dotloop: template id %q is not a number", o.TemplateID)
		}
		b.TemplateID = n
	}
	if p := o.Property; p != nil {
		b.StreetNumber, b.StreetName, b.Unit, b.City, b.State, b.ZipCode, b.Country, b.MLSPropertyID =
			p.StreetNumber, p.StreetName, p.Unit, p.City, p.State, p.PostalCode, p.Country, p.MLSNumber
	}
	for _, p := range o.Parties {
		b.Participants = append(b.Participants, participant{FullName: p.FullName, Email: p.Email, Role: p.Role, Phone: p.Phone})
	}
	return b, nil
}

// Open is POST /loop-it?profile_id=.
func (d *Dotloop) Open(ctx context.Context, o tms.Open) (tms.Transaction, error) {
	body, err := LoopItBody(o)
	if err != nil {
		return tms.Transaction{}, err
	}
	var out data[loop]
	if _, err := d.api.Do(ctx, "loop-it", http.MethodPost, "/loop-it?"+url.Values{"profile_id": {o.Profile}}.Encode(), body, &out); err != nil {
		return tms.Transaction{}, err
	}
	if out.Data.ID == 0 {
		return tms.Transaction{}, errors.New("dotloop: loop-it answered without a loop id")
	}
	return out.Data.transaction(), nil
}

func loopPath(profile, id string) (string, error) {
	for _, s := range []string{profile, id} {
		if _, err := strconv.ParseInt(s, 10, 64); err != nil {
			return "", fmt.Errorf("dotloop: %q is not a numeric id: %w", s, tms.ErrNotFound)
		}
	}
	return "/profile/" + profile + "/loop/" + id, nil
}

func (d *Dotloop) get(ctx context.Context, op, path string, out any) error {
	status, err := d.api.Do(ctx, op, http.MethodGet, path, nil, out)
	if status == http.StatusNotFound {
		return fmt.Errorf("dotloop %s: %w", op, tms.ErrNotFound)
	}
	return err
}

// Transaction is GET /profile/{p}/loop/{id}.
func (d *Dotloop) Transaction(ctx context.Context, profile, id string) (tms.Transaction, error) {
	p, err := loopPath(profile, id)
	if err != nil {
		return tms.Transaction{}, err
	}
	var out data[loop]
	if err := d.get(ctx, "read loop", p, &out); err != nil {
		return tms.Transaction{}, err
	}
	return out.Data.transaction(), nil
}

// Transactions is GET /profile/{p}/loop, the first batch of at most limit (≤ 100).
func (d *Dotloop) Transactions(ctx context.Context, profile string, limit int) ([]tms.Transaction, error) {
	if _, err := strconv.ParseInt(profile, 10, 64); err != nil {
		return nil, fmt.Errorf("dotloop: profile %q is not a numeric id", profile)
	}
	limit = min(max(limit, 1), 100)
	var out data[[]loop]
	q := url.Values{"batch_size": {strconv.Itoa(limit)}, "batch_number": {"1"}}
	if err := d.get(ctx, "list loops", "/profile/"+profile+"/loop?"+q.Encode(), &out); err != nil {
		return nil, err
	}
	ts := make([]tms.Transaction, len(out.Data))
	for i, l := range out.Data {
		ts[i] = l.transaction()
	}
	return ts, nil
}

// Details is GET /profile/{p}/loop/{id}/detail.
func (d *Dotloop) Details(ctx context.Context, profile, id string) (tms.Details, error) {
	p, err := loopPath(profile, id)
	if err != nil {
		return nil, err
	}
	var out data[tms.Details]
	if err := d.get(ctx, "read loop detail", p+"/detail", &out); err != nil {
		return nil, err
	}
	if out.Data == nil {
		out.Data = tms.Details{}
	}
	return out.Data, nil
}

// SectionPropertyAddress is the loop detail's section of the property.
const SectionPropertyAddress = "Property Address"

// PropertyAddress is p as the fields of the "Property Address" section that
// Loop-It fills; empty fields are left out.
func PropertyAddress(p tms.Property) map[string]string {
	out := map[string]string{}
	for k, v := range map[string]string{
		"Street Number": p.StreetNumber, "Street Name": p.StreetName, "Unit Number": p.Unit, "City": p.City,
		"State/Prov": p.State, "Postal Code": p.PostalCode, "Country": p.Country, "MLS Number": p.MLSNumber,
	} {
		if v != "" {
			out[k] = v
		}
	}
	return out
}

// UpdateProperty is Update Loop Details, PATCH /profile/{p}/loop/{id}/detail
// with the "Property Address" section: the fields it names are set, the
// loop's other details are kept.
func (d *Dotloop) UpdateProperty(ctx context.Context, profile, id string, prop tms.Property) error {
	p, err := loopPath(profile, id)
	if err != nil {
		return err
	}
	body := tms.Details{SectionPropertyAddress: PropertyAddress(prop)}
	status, err := d.api.Do(ctx, "update loop detail", http.MethodPatch, p+"/detail", body, nil)
	if status == http.StatusNotFound {
		return fmt.Errorf("dotloop update loop detail: %w", tms.ErrNotFound)
	}
	return err
}

// Participants is GET /profile/{p}/loop/{id}/participant.
func (d *Dotloop) Participants(ctx context.Context, profile, id string) ([]tms.Party, error) {
	p, err := loopPath(profile, id)
	if err != nil {
		return nil, err
	}
	var out data[[]participant]
	if err := d.get(ctx, "list participants", p+"/participant", &out); err != nil {
		return nil, err
	}
	ps := make([]tms.Party, len(out.Data))
	for i, x := range out.Data {
		ps[i] = x.party()
	}
	return ps, nil
}

// UpdateParticipant is PATCH /profile/{p}/loop/{id}/participant/{pid}.
func (d *Dotloop) UpdateParticipant(ctx context.Context, profile, id string, pt tms.Party) (tms.Party, error) {
	p, err := loopPath(profile, id)
	if err != nil {
		return tms.Party{}, err
	}
	if _, err := strconv.ParseInt(pt.ID, 10, 64); err != nil {
		return tms.Party{}, fmt.Errorf("dotloop: participant id %q is not a number", pt.ID)
	}
	body := map[string]string{"fullName": pt.FullName, "email": pt.Email, "Phone": pt.Phone}
	var out data[participant]
	status, err := d.api.Do(ctx, "update participant", http.MethodPatch, p+"/participant/"+pt.ID, body, &out)
	if status == http.StatusNotFound {
		return tms.Party{}, fmt.Errorf("dotloop update participant: %w", tms.ErrNotFound)
	}
	if err != nil {
		return tms.Party{}, err
	}
	return out.Data.party(), nil
}

type subscription struct {
	ID         int64    `json:"id,omitempty"`
	URL        string   `json:"url"`
	EventTypes []string `json:"eventTypes"`
	SigningKey string   `json:"signingKey,omitempty"`
	ExternalID string   `json:"externalId,omitempty"`
	Enabled    bool     `json:"enabled"`
}

func (s subscription) sub() tms.Subscription {
	return tms.Subscription{ID: strconv.FormatInt(s.ID, 10), URL: s.URL, Events: s.EventTypes, ExternalID: s.ExternalID, Enabled: s.Enabled}
}

// Subscribe is POST /subscription.
func (d *Dotloop) Subscribe(ctx context.Context, s tms.Subscription) (tms.Subscription, error) {
	in := subscription{URL: s.URL, EventTypes: s.Events, SigningKey: s.SigningKey, ExternalID: s.ExternalID, Enabled: true}
	var out data[subscription]
	if _, err := d.api.Do(ctx, "create subscription", http.MethodPost, "/subscription", in, &out); err != nil {
		return tms.Subscription{}, err
	}
	return out.Data.sub(), nil
}

// Subscriptions is GET /subscription.
func (d *Dotloop) Subscriptions(ctx context.Context) ([]tms.Subscription, error) {
	var out data[[]subscription]
	if err := d.get(ctx, "list subscriptions", "/subscription", &out); err != nil {
		return nil, err
	}
	subs := make([]tms.Subscription, len(out.Data))
	for i, s := range out.Data {
		subs[i] = s.sub()
	}
	return subs, nil
}

// Unsubscribe is DELETE /subscription/{id}.
func (d *Dotloop) Unsubscribe(ctx context.Context, id string) error {
	if _, err := strconv.ParseInt(id, 10, 64); err != nil {
		return fmt.Errorf("dotloop: subscription id %q is not a number: %w", id, tms.ErrNotFound)
	}
	status, err := d.api.Do(ctx, "delete subscription", http.MethodDelete, "/subscription/"+id, nil, nil)
	if status == http.StatusNotFound {
		return fmt.Errorf("dotloop delete subscription: %w", tms.ErrNotFound)
	}
	return err
}

// Events tms-sync subscribes to.
const (
	EventLoopUpdated = "LOOP_UPDATED"
	EventLoopCreated = "LOOP_CREATED"
)

// ErrBadWebhook is wrapped by every error of ParseWebhook.
var ErrBadWebhook = errors.New("not a Dotloop webhook")

// ParseWebhook reads {"eventId","eventType","timestamp","subscriptionExternalId",
// "event":{"id","profileId","loopId"}}. A loop event without a loop id is an
// error; the loop id falls back to event.id.
func ParseWebhook(body []byte) (tms.Notification, error) {
	var w struct {
		EventID    json.RawMessage `json:"eventId"`
		EventType  string          `json:"eventType"`
		ExternalID string          `json:"subscriptionExternalId"`
		Event      struct {
			ID        json.RawMessage `json:"id"`
			ProfileID json.RawMessage `json:"profileId"`
			LoopID    json.RawMessage `json:"loopId"`
		} `json:"event"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return tms.Notification{}, fmt.Errorf("%w: %w", ErrBadWebhook, err)
	}
	if w.EventType == "" {
		return tms.Notification{}, fmt.Errorf("%w: no eventType", ErrBadWebhook)
	}
	n := tms.Notification{EventID: jsonscalar.String(w.EventID), Event: w.EventType, SubscriptionExternalID: w.ExternalID}
	if !strings.HasPrefix(w.EventType, "LOOP_") || strings.HasPrefix(w.EventType, "LOOP_PARTICIPANT_") && len(w.Event.LoopID) == 0 {
		return n, nil
	}
	n.Profile = jsonscalar.String(w.Event.ProfileID)
	n.Transaction = cmp.Or(jsonscalar.String(w.Event.LoopID), jsonscalar.String(w.Event.ID))
	for _, id := range []string{n.Profile, n.Transaction} {
		if v, err := strconv.ParseInt(id, 10, 64); err != nil || v <= 0 {
			return tms.Notification{}, fmt.Errorf("%w: %s names no loop and profile (%q, %q)", ErrBadWebhook, w.EventType, n.Profile, n.Transaction)
		}
	}
	return n, nil
}
