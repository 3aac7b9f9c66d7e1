package sandbox

import (
	"crypto/hmac"
	"crypto/sha1" // the legacy X-Hub-Signature, which Meta sends beside the sha256 one
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The Facebook Graph API lead read and the Lead Ads webhook (Meta's Lead Ads documentation). A
// lead source (Facebook) sends ids only: Meta posts a signed "leadgen" notification carrying a
// leadgen_id, and the receiver reads the lead with
// GET https://graph.facebook.com/<version>/<leadgen_id>?access_token=…. The sandbox serves that
// read under /graph, holds the test leads, and builds, signs and delivers the notifications.

// Default credentials and ids of the Graph emulation.
const (
	// DefaultGraphAccessToken is the Page access token the emulation accepts by default.
	DefaultGraphAccessToken = "sandbox-graph-token"
	// DefaultGraphAppSecret is the App Secret that signs the notifications by default
	// (X-Hub-Signature-256) and checks an appsecret_proof.
	DefaultGraphAppSecret = "sandbox-facebook-app-secret"
	// DefaultGraphPageID is the Page of a lead added without one.
	DefaultGraphPageID = "100000000000001"
	// DefaultGraphFormID and DefaultGraphAdID are the form and ad of the page's test leads.
	DefaultGraphFormID = "200000000000001"
	DefaultGraphAdID   = "300000000000001"
)

// graphFirstLeadID is the id before the first generated lead id: Graph ids are numeric strings
// of 15 or more digits (the exact range is a sandbox choice).
const graphFirstLeadID = 900000000000000

// Delivery states of a GraphDelivery (the kit's, as Follow Up Boss's).
const (
	GraphDeliveryPending   = DeliveryPending
	GraphDeliveryDelivered = DeliveryDelivered
	GraphDeliveryFailed    = DeliveryFailed
)

// GraphOptions configures the Facebook Graph emulation. Zero fields take the defaults.
type GraphOptions struct {
	// AccessTokens are the valid access tokens (?access_token=…). Default:
	// DefaultGraphAccessToken. How they are obtained, exchanged or debugged is not emulated.
	AccessTokens []string
	// AppSecret signs the notifications and checks an appsecret_proof. Default:
	// DefaultGraphAppSecret.
	AppSecret string
	// PageID is the Page of a lead added without one. Default: DefaultGraphPageID.
	PageID string
	// CallbackURL, when set, receives a signed leadgen notification for every lead submitted
	// with Submit or the page's button (Meta's "callback URL" of the app's Page subscription).
	CallbackURL string
	// Delivery configures how the notifications are delivered.
	Delivery DeliveryOptions
}

func (o *GraphOptions) setDefaults() {
	o.AccessTokens = slices.Clone(o.AccessTokens)
	if len(o.AccessTokens) == 0 {
		o.AccessTokens = []string{DefaultGraphAccessToken}
	}
	if o.AppSecret == "" {
		o.AppSecret = DefaultGraphAppSecret
	}
	if o.PageID == "" {
		o.PageID = DefaultGraphPageID
	}
}

// GraphField is one answer of a lead form: field_data is a list of these, in the form's order.
// Values is a list because a question may take several answers.
type GraphField struct {
	Name   string   `json:"name"`
	Values []string `json:"values"`
}

// GraphLead is one lead as the sandbox holds it. The read answers its fields under Graph's
// names (id, created_time, ad_id, adset_id, campaign_id, form_id, field_data); PageID is where
// its notification comes from. Empty ad fields make an organic lead: the read omits them.
type GraphLead struct {
	ID          string       `json:"id"`
	CreatedTime time.Time    `json:"created_time"`
	PageID      string       `json:"page_id,omitempty"`
	FormID      string       `json:"form_id,omitempty"`
	AdID        string       `json:"ad_id,omitempty"`
	AdsetID     string       `json:"adset_id,omitempty"`
	CampaignID  string       `json:"campaign_id,omitempty"`
	Fields      []GraphField `json:"field_data"`
}

// Field returns the values of the field named name, or nil.
func (l GraphLead) Field(name string) []string {
	for _, f := range l.Fields {
		if f.Name == name {
			return f.Values
		}
	}
	return nil
}

func (l GraphLead) clone() GraphLead {
	l.Fields = slices.Clone(l.Fields)
	for i := range l.Fields {
		l.Fields[i].Values = slices.Clone(l.Fields[i].Values)
	}
	return l
}

// graphWebhook is the documented notification payload ([S], a gist).
type graphWebhook struct {
	Object string       `json:"object"`
	Entry  []graphEntry `json:"entry"`
}

type graphEntry struct {
	ID      string        `json:"id"`
	Time    int64         `json:"time"`
	Changes []graphChange `json:"changes"`
}

type graphChange struct {
	Field string           `json:"field"`
	Value graphChangeValue `json:"value"`
}

// graphChangeValue is one "leadgen" change. Ids are strings, as Graph writes every id;
// created_time is Unix seconds. An organic lead has no ad_id or adgroup_id.
type graphChangeValue struct {
	AdID        string `json:"ad_id,omitempty"`
	FormID      string `json:"form_id,omitempty"`
	LeadgenID   string `json:"leadgen_id"`
	CreatedTime int64  `json:"created_time"`
	PageID      string `json:"page_id"`
	AdgroupID   string `json:"adgroup_id,omitempty"`
}

// GraphDelivery is the record of one notification posted to the callback URL: its Delivery's
// Signature is the X-Hub-Signature-256.
type GraphDelivery struct {
	LeadIDs []string `json:"leadIds"`
	Delivery
}

// ErrGraphLeadExists is returned by AddLead for an id the sandbox already holds.
var ErrGraphLeadExists = errors.New("lead already exists")

// Graph is the Facebook Graph API emulation (the lead read), served under /graph, and the
// sender of Lead Ads notifications. Its methods are safe for concurrent use. Close (the kit's)
// stops retrying deliveries; submits after it deliver nothing.
type Graph struct {
	*Kit
	opts GraphOptions
	now  func() time.Time

	mu          sync.Mutex
	leads       []GraphLead // in the order added
	lastID      int64
	callbackURL string
	deliveries  []*GraphDelivery
}

func newGraph(o GraphOptions, now func() time.Time) *Graph {
	o.setDefaults()
	g := &Graph{opts: o, now: now}
	// Reset (the kit's) forgets leads, deliveries, faults, expired tokens and the latency;
	// generated ids restart; the callback URL returns to its option. Deliveries in flight
	// finish.
	g.Kit = NewKit(KitOptions{
		Name: graphName, Title: "Facebook Lead Ads (Graph API lead read, under /graph)",
		Note: "Newest first. A submitted test lead is added and, when a callback URL is set, its leadgen notification is " +
			"posted there signed with X-Hub-Signature-256.",
		Auth: g.auth, ErrorBody: graphErrorFor, NotFound: g.notEmulated,
		Expired: func(w http.ResponseWriter, _ *http.Request) {
			writeGraphError(w, http.StatusBadRequest, graphExpiredToken())
		},
		Webhooks: WebhookOptions{
			SignatureHeader: "X-Hub-Signature-256",
			Sign:            func(body []byte) string { return SignFacebook(o.AppSecret, body) },
			Header: func(body []byte) map[string]string {
				return map[string]string{
					"X-Hub-Signature": signFacebookSHA1(o.AppSecret, body),
					"User-Agent":      "facebookplatform/1.0 (+http://developers.facebook.com)",
				}
			},
			Delivery: o.Delivery,
		},
		State: g.state, Tables: g.tables, Reset: g.reset, Now: now,
	})
	g.reset()
	g.routes()
	return g
}

func (g *Graph) reset() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.leads, g.lastID, g.deliveries = nil, graphFirstLeadID, nil
	g.callbackURL = g.opts.CallbackURL
}

// AddLead adds a test lead, as a person submitting a lead form would, and returns it as held.
// An empty ID gets a fresh numeric id, an empty PageID the default Page, a zero CreatedTime
// the sandbox's clock (Graph's times have whole seconds). It sends no notification: see
// Submit and Notification.
func (g *Graph) AddLead(l GraphLead) (GraphLead, error) {
	l = l.clone()
	for _, f := range l.Fields {
		if strings.TrimSpace(f.Name) == "" {
			return GraphLead{}, errors.New("add lead: a field has no name")
		}
	}
	if l.PageID == "" {
		l.PageID = g.opts.PageID
	}
	if l.CreatedTime.IsZero() {
		l.CreatedTime = g.now()
	}
	l.CreatedTime = l.CreatedTime.UTC().Truncate(time.Second)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case l.ID == "":
		for {
			g.lastID++
			l.ID = strconv.FormatInt(g.lastID, 10)
			if g.findLocked(l.ID) < 0 {
				break
			}
		}
	case strings.ContainsAny(l.ID, "/?#"):
		return GraphLead{}, fmt.Errorf("add lead: id %q is not a Graph id", l.ID)
	case g.findLocked(l.ID) >= 0:
		return GraphLead{}, fmt.Errorf("add lead %s: %w", l.ID, ErrGraphLeadExists)
	}
	g.leads = append(g.leads, l)
	return l.clone(), nil
}

// Submit adds the lead and, when a callback URL is set, posts its signed notification there in
// the background, retried as DeliveryOptions says. It is what the page's "submit a test lead"
// button does, and what Meta's Lead Ads Testing Tool does.
func (g *Graph) Submit(l GraphLead) (GraphLead, error) {
	l, err := g.AddLead(l)
	if err != nil {
		return l, err
	}
	g.deliver(l.ID)
	return l, nil
}

// Leads returns a copy of every lead, in the order added.
func (g *Graph) Leads() []GraphLead {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]GraphLead, len(g.leads))
	for i, l := range g.leads {
		out[i] = l.clone()
	}
	return out
}

// Lead returns the lead with id.
func (g *Graph) Lead(id string) (GraphLead, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	i := g.findLocked(id)
	if i < 0 {
		return GraphLead{}, false
	}
	return g.leads[i].clone(), true
}

func (g *Graph) findLocked(id string) int {
	return slices.IndexFunc(g.leads, func(l GraphLead) bool { return l.ID == id })
}

// ExpireAccessToken makes token answer Graph's expired-session error (code 190, subcode 463)
// until Reset, as a Page token does when the user who issued it changes their password.
func (g *Graph) ExpireAccessToken(token string) { g.ExpireToken(token) }

// SetCallbackURL sets where Submit and the page's button post notifications; empty stops them.
func (g *Graph) SetCallbackURL(u string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.callbackURL = u
}

// CallbackURL returns where notifications are posted, or "".
func (g *Graph) CallbackURL() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.callbackURL
}

// Deliveries returns a copy of every notification delivery so far, oldest first.
func (g *Graph) Deliveries() []GraphDelivery {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]GraphDelivery, len(g.deliveries))
	for i, d := range g.deliveries {
		out[i] = *d
		out[i].LeadIDs = slices.Clone(d.LeadIDs)
	}
	return out
}

// AppSecret returns the App Secret that signs the notifications.
func (g *Graph) AppSecret() string { return g.opts.AppSecret }

// Notification returns the leadgen webhook body Meta would post for the leads:
// {"object":"page","entry":[{"id":<page>,"time":<now>,"changes":[{"field":"leadgen",
// "value":{"ad_id","form_id","leadgen_id","created_time","page_id","adgroup_id"}}]}]},
// one entry per Page in the order the leads are given. An id the sandbox does not hold still
// gets a change, on the default Page and at the clock's time, so that tests can send a
// notification whose lead will not be found. Sign it with SignFacebook and the App Secret.
func (g *Graph) Notification(leadIDs ...string) []byte {
	now := g.now().UTC()
	g.mu.Lock()
	wh := graphWebhook{Object: "page", Entry: []graphEntry{}}
	for _, id := range leadIDs {
		l := GraphLead{ID: id, PageID: g.opts.PageID, CreatedTime: now}
		if i := g.findLocked(id); i >= 0 {
			l = g.leads[i]
		}
		change := graphChange{Field: "leadgen", Value: graphChangeValue{
			AdID: l.AdID, FormID: l.FormID, LeadgenID: l.ID, CreatedTime: l.CreatedTime.Unix(),
			PageID: l.PageID, AdgroupID: l.AdID,
		}}
		j := slices.IndexFunc(wh.Entry, func(e graphEntry) bool { return e.ID == l.PageID })
		if j < 0 {
			wh.Entry = append(wh.Entry, graphEntry{ID: l.PageID, Time: now.Unix()})
			j = len(wh.Entry) - 1
		}
		wh.Entry[j].Changes = append(wh.Entry[j].Changes, change)
	}
	g.mu.Unlock()
	b, _ := json.Marshal(wh)
	return b
}

// SignFacebook returns the X-Hub-Signature-256 of body under appSecret:
// "sha256=" + hex(HMAC-SHA256(key = appSecret, message = body)).
func SignFacebook(appSecret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(appSecret))
	_, _ = mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// signFacebookSHA1 returns the legacy X-Hub-Signature: "sha1=" + hex(HMAC-SHA1).
func signFacebookSHA1(appSecret string, body []byte) string {
	mac := hmac.New(sha1.New, []byte(appSecret))
	_, _ = mac.Write(body)
	return "sha1=" + hex.EncodeToString(mac.Sum(nil))
}

// appSecretProof is Graph's appsecret_proof of token: hex(HMAC-SHA256(key = app secret,
// message = token)).
func appSecretProof(appSecret, token string) string {
	mac := hmac.New(sha256.New, []byte(appSecret))
	_, _ = mac.Write([]byte(token))
	return hex.EncodeToString(mac.Sum(nil))
}

// deliver posts the signed notification of the leads to the callback URL, if one is set.
func (g *Graph) deliver(leadIDs ...string) {
	target := g.CallbackURL()
	if target == "" || len(leadIDs) == 0 {
		return
	}
	body := g.Notification(leadIDs...)
	d := &GraphDelivery{LeadIDs: slices.Clone(leadIDs), Delivery: g.NewDelivery(target, body)}
	g.mu.Lock()
	g.deliveries = append(g.deliveries, d)
	g.mu.Unlock()
	g.Send(&d.Delivery, &g.mu)
}
