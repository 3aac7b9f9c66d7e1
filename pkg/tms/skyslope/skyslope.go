// Package skyslope is the SkySlope adapter. SkySlope's APIs are only partly
// public, and the adapter does what their public parts allow:
//
//   - The Partnership ("Forms") API (https://forms.skyslope.com/partner/api/docs),
//     with the account's OAuth tokens (pkg/oauth; authorization code with
//     PKCE, refresh tokens that rotate): Open creates a Forms file
//     (POST /files) with the representation type and the property;
//     Transaction and Transactions read GET /files.
//   - The Listings/Sales ("Files") API (https://api.skyslope.com), behind its
//     HMAC session login (POST /auth/login, then the Session header): Details
//     and Sales read the sales (GET /api/files/sales), their status,
//     sale price and closing date.
//
// What neither allows answers tms.ErrUnsupported, and Capabilities say so:
// reading or updating a transaction's participants (a Forms file is opened
// with a name, a representation type and a property only), webhooks (the
// Forms API's cover document signing only, and are not signed), and the
// commission of a closing (the Files API's commission fields are not in its
// public documentation). docs/tms.md#skyslope has the table.
package skyslope

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
)

// Name is the TMS's name in events and configuration.
const Name = "skyslope"

// Scopes are the Forms API's OAuth scopes Brokerflow asks for: files, and
// a refresh token.
var Scopes = []string{"forms.files", "offline_access"}

// StatusClosed is the Files API's status of a closed sale.
const StatusClosed = "Closed"

// The sections and fields of a sale's Details.
const (
	SectionSale     = "Sale"
	FieldSaleGUID   = "Sale Guid"
	FieldStatus     = "Status"
	FieldSalePrice  = "Sale Price"
	FieldCloseDate  = "Actual Closing Date"
	FieldMLSNumber  = "MLS Number"
	SectionProperty = "Property"
)

// Config points the adapter at SkySlope, the sandbox, or any compatible
// server. The env tags are relative: tms-sync reads them under
// TMSSYNC_SKYSLOPE_.
type Config struct {
	// FormsURL is the Forms API; AuthURL its OAuth server; FilesURL the
	// Listings/Sales API.
	FormsURL string `env:"FORMS_BASE_URL" envDefault:"https://forms.skyslope.com/partner/api"`
	AuthURL  string `env:"AUTH_BASE_URL" envDefault:"https://accounts.skyslope.com/oauth2"`
	FilesURL string `env:"FILES_BASE_URL" envDefault:"https://api.skyslope.com"`
	// ClientID and ClientSecret are the Forms API's OAuth client (a
	// partner's). The secret may be empty for a public client (PKCE alone).
	ClientID         string `env:"CLIENT_ID"`
	ClientSecret     string `env:"CLIENT_SECRET"`
	ClientSecretFile string `env:"CLIENT_SECRET_FILE"`
	// AccessKey and AccessSecret are the Files API keys a SkySlope user
	// generates (a broker's or an admin's, to see the brokerage's sales);
	// FilesClientID and FilesClientSecret the brokerage's Files API client,
	// from its SkySlope Customer Success Manager.
	AccessKey             string        `env:"ACCESS_KEY"`
	AccessSecret          string        `env:"ACCESS_SECRET"`
	AccessSecretFile      string        `env:"ACCESS_SECRET_FILE"`
	FilesClientID         string        `env:"FILES_CLIENT_ID"`
	FilesClientSecret     string        `env:"FILES_CLIENT_SECRET"`
	FilesClientSecretFile string        `env:"FILES_CLIENT_SECRET_FILE"`
	Timeout               time.Duration `env:"TIMEOUT" envDefault:"15s"`
	// MaxPages bounds the pages one read of the Forms files or the sales
	// walks (the Files API answers 10 sales a page).
	MaxPages int `env:"MAX_PAGES" envDefault:"100"`
}

// Validate reports the first invalid setting, naming it as prefix+NAME.
func (c Config) Validate(prefix string) error {
	switch {
	case c.ClientID == "":
		return fmt.Errorf("%sCLIENT_ID is required for SkySlope's Forms API", prefix)
	case c.AccessKey == "" || c.AccessSecret == "" || c.FilesClientID == "" || c.FilesClientSecret == "":
		return fmt.Errorf("%sACCESS_KEY, %sACCESS_SECRET, %sFILES_CLIENT_ID and %sFILES_CLIENT_SECRET (or their _FILE) are required for SkySlope's Files API", prefix, prefix, prefix, prefix)
	case c.MaxPages < 1:
		return fmt.Errorf("%sMAX_PAGES must be at least 1", prefix)
	case c.Timeout <= 0:
		return fmt.Errorf("%sTIMEOUT must be positive", prefix)
	}
	for _, e := range []struct{ name, url string }{{"FORMS_", c.FormsURL}, {"AUTH_", c.AuthURL}, {"FILES_", c.FilesURL}} {
		if err := vendorapi.CheckEndpoint(prefix+e.name, e.url, c.Timeout); err != nil {
			return err
		}
	}
	return nil
}

// ReadSecrets fills each secret from its _FILE (its first line) when it is
// not set, naming the variable as prefix+NAME.
func (c *Config) ReadSecrets(prefix string) error {
	for _, s := range []struct {
		name string
		v    *string
		file string
	}{
		{"CLIENT_SECRET_FILE", &c.ClientSecret, c.ClientSecretFile},
		{"ACCESS_SECRET_FILE", &c.AccessSecret, c.AccessSecretFile},
		{"FILES_CLIENT_SECRET_FILE", &c.FilesClientSecret, c.FilesClientSecretFile},
	} {
		if err := service.ReadSecret(s.v, s.file, prefix+s.name); err != nil {
			return err
		}
	}
	return nil
}

// TokenURL and AuthorizeURL are the OAuth endpoints under AuthURL.
func (c Config) TokenURL() string     { return strings.TrimRight(c.AuthURL, "/") + "/token" }
func (c Config) AuthorizeURL() string { return strings.TrimRight(c.AuthURL, "/") + "/authorize" }

// OAuth is the Forms API's OAuth client: PKCE, the scopes, the account's
// record named "skyslope" in the oauth_tokens bucket.
func (c Config) OAuth() oauth.Config {
	return oauth.Config{
		Vendor: Name, Area: tms.Area, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		AuthURL: c.AuthorizeURL(), TokenURL: c.TokenURL(), Scopes: Scopes, PKCE: true,
	}
}

// SkySlope is the adapter.
type SkySlope struct {
	forms, files *vendorapi.Client
	maxPages     int
}

var _ tms.TMS = (*SkySlope)(nil)

// New returns an adapter calling the Forms API with src's access tokens (a
// *oauth.Store refreshes them after a 401) and the Files API with sessions
// it logs in for.
func New(cfg Config, src vendorapi.TokenSource) *SkySlope {
	classify := vendorapi.DefaultClassifier("message", "error_description", "error")
	login := vendorapi.New(vendorapi.Config{
		Vendor: Name, Area: tms.Area, BaseURL: cfg.FilesURL, Timeout: cfg.Timeout, Classify: classify,
		Auth: loginAuth{key: cfg.AccessKey, secret: cfg.AccessSecret, clientID: cfg.FilesClientID, clientSecret: cfg.FilesClientSecret, now: time.Now},
	})
	return &SkySlope{
		forms: vendorapi.New(vendorapi.Config{
			Vendor: Name, Area: tms.Area, BaseURL: cfg.FormsURL, Timeout: cfg.Timeout, Classify: classify, Auth: vendorapi.OAuth(src),
		}),
		files: vendorapi.New(vendorapi.Config{
			Vendor: Name, Area: tms.Area, BaseURL: cfg.FilesURL, Timeout: cfg.Timeout, Classify: classify,
			Auth: &sessionAuth{login: login, body: loginBody{ClientID: cfg.FilesClientID, ClientSecret: cfg.FilesClientSecret}, now: time.Now},
		}),
		maxPages: cmp.Or(cfg.MaxPages, 100),
	}
}

// Name is "skyslope".
func (s *SkySlope) Name() string { return Name }

// Capabilities: opening and listing Forms files; nothing else the interface
// names.
func (s *SkySlope) Capabilities() tms.Capabilities {
	return tms.Capabilities{ListTransactions: true}
}

// SignLogin is the Files API login's HMAC: base64(HMAC-SHA256(accessSecret,
// clientID:clientSecret:timestamp)).
func SignLogin(accessSecret, clientID, clientSecret, timestamp string) string {
	mac := hmac.New(sha256.New, []byte(accessSecret))
	_, _ = mac.Write([]byte(clientID + ":" + clientSecret + ":" + timestamp))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// loginAuth signs POST /auth/login: "Authorization: SS <key>:<hmac>" and
// "Timestamp".
type loginAuth struct {
	key, secret, clientID, clientSecret string
	now                                 func() time.Time
}

func (l loginAuth) Authorize(req *http.Request, _ []byte) error {
	ts := l.now().UTC().Format(time.RFC3339)
	req.Header.Set("Timestamp", ts)
	req.Header.Set("Authorization", "SS "+l.key+":"+SignLogin(l.secret, l.clientID, l.clientSecret, ts))
	return nil
}

type loginBody struct {
	ClientID     string `json:"ClientId"`
	ClientSecret string `json:"ClientSecret"`
}

// sessionAuth sends a Files API session as the Session header, logging in
// for one when it has none or it is about to expire, and again after a 401.
// Sessions are not shared between replicas: each logs in for its own.
type sessionAuth struct {
	login *vendorapi.Client
	body  loginBody
	now   func() time.Time

	mu      sync.Mutex
	session string
	expires time.Time
}

func (a *sessionAuth) Authorize(req *http.Request, _ []byte) error {
	s, err := a.get(req.Context())
	if err != nil {
		return err
	}
	req.Header.Set("Session", s)
	return nil
}

// Refresh forgets the refused session (unless another call already
// replaced it) and logs in again.
func (a *sessionAuth) Refresh(ctx context.Context, refused *http.Request) error {
	a.mu.Lock()
	if a.session == refused.Header.Get("Session") {
		a.session = ""
	}
	a.mu.Unlock()
	_, err := a.get(ctx)
	return err
}

func (a *sessionAuth) get(ctx context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.session != "" && a.now().Add(time.Minute).Before(a.expires) {
		return a.session, nil
	}
	var out struct {
		Session    string `json:"Session"`
		Expiration string `json:"Expiration"`
	}
	if _, err := a.login.Do(ctx, "log in to the Files API", http.MethodPost, "/auth/login", a.body, &out); err != nil {
		return "", err
	}
	if out.Session == "" {
		return "", errors.New("skyslope: the login answered without a session")
	}
	a.session = out.Session
	a.expires = a.now().Add(time.Hour)
	if t, err := time.Parse(time.RFC3339, out.Expiration); err == nil {
		a.expires = t
	}
	return a.session, nil
}

// Representation types of the Forms API for Brokerflow's transaction types.
var representation = map[string]string{tms.TypePurchase: "Buyer", tms.TypeListing: "Seller"}

func typeOf(rep string) string {
	for t, r := range representation {
		if strings.EqualFold(r, rep) {
			return t
		}
	}
	return ""
}

// Property is a Forms file's property.
type Property struct {
	StreetNumber string `json:"streetNumber"`
	StreetName   string `json:"streetName"`
	UnitNumber   string `json:"unitNumber,omitempty"`
	City         string `json:"city"`
	State        string `json:"state"`
	PostalCode   string `json:"postalCode"`
	County       string `json:"county,omitempty"`
}

// NewFile is the body of POST /files.
type NewFile struct {
	Name               string   `json:"name"`
	RepresentationType string   `json:"representationType"`
	Property           Property `json:"property"`
}

// ErrIncomplete is wrapped by the (permanent) error of an Open the Forms
// API would refuse: a type it has no representation for, or a property
// without the fields it requires.
var ErrIncomplete = errors.New("skyslope: the file cannot be created")

// FileBody maps o to the Forms API's request.
func FileBody(o tms.Open) (NewFile, error) {
	rep, ok := representation[o.Type]
	if !ok {
		return NewFile{}, fmt.Errorf("%w: transaction type %q has no SkySlope representation type", ErrIncomplete, o.Type)
	}
	p := o.Property
	if p == nil {
		p = &tms.Property{}
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"street number", p.StreetNumber}, {"street name", p.StreetName}, {"city", p.City}, {"state", p.State}, {"postal code", p.PostalCode},
	} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return NewFile{}, fmt.Errorf("%w: SkySlope requires the property's %s", ErrIncomplete, strings.Join(missing, ", "))
	}
	if len(strings.TrimSpace(p.State)) != 2 {
		return NewFile{}, fmt.Errorf("%w: SkySlope wants the state as 2 letters, not %q", ErrIncomplete, p.State)
	}
	return NewFile{Name: o.Name, RepresentationType: rep, Property: Property{
		StreetNumber: p.StreetNumber, StreetName: p.StreetName, UnitNumber: p.Unit, City: p.City,
		State: strings.ToUpper(strings.TrimSpace(p.State)), PostalCode: p.PostalCode,
	}}, nil
}

// Open is POST /files. The parties are not sent: the Forms API takes none.
func (s *SkySlope) Open(ctx context.Context, o tms.Open) (tms.Transaction, error) {
	body, err := FileBody(o)
	if err != nil {
		return tms.Transaction{}, bus.WithCode("tms.incomplete_transaction", bus.AsPermanent(err))
	}
	var out struct {
		FileID int64 `json:"fileId"`
	}
	if _, err := s.forms.Do(ctx, "create file", http.MethodPost, "/files", body, &out); err != nil {
		return tms.Transaction{}, err
	}
	if out.FileID == 0 {
		return tms.Transaction{}, errors.New("skyslope: create file answered without a file id")
	}
	return tms.Transaction{ID: strconv.FormatInt(out.FileID, 10), Profile: o.Profile, Name: o.Name, Type: o.Type}, nil
}

type file struct {
	FileID             int64     `json:"fileId"`
	Name               string    `json:"name"`
	RepresentationType string    `json:"representationType"`
	CreatedDate        time.Time `json:"createdDate"`
}

func (f file) transaction(profile string) tms.Transaction {
	return tms.Transaction{ID: strconv.FormatInt(f.FileID, 10), Profile: profile, Name: f.Name, Type: typeOf(f.RepresentationType), Created: f.CreatedDate}
}

func (s *SkySlope) filesPage(ctx context.Context, page, size int) ([]file, int, error) {
	var out struct {
		TotalRecords int    `json:"totalRecords"`
		Files        []file `json:"files"`
	}
	q := url.Values{"page": {strconv.Itoa(page)}, "pageSize": {strconv.Itoa(size)}}
	if _, err := s.forms.Do(ctx, "list files", http.MethodGet, "/files?"+q.Encode(), nil, &out); err != nil {
		return nil, 0, err
	}
	return out.Files, out.TotalRecords, nil
}

// Transaction finds Forms file id in GET /files (the public API has no read
// of one file), at most MaxPages pages of 500.
func (s *SkySlope) Transaction(ctx context.Context, profile, id string) (tms.Transaction, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return tms.Transaction{}, fmt.Errorf("skyslope: %q is not a Forms file id: %w", id, tms.ErrNotFound)
	}
	for page, seen := 1, 0; page <= s.maxPages; page++ {
		files, total, err := s.filesPage(ctx, page, 500)
		if err != nil {
			return tms.Transaction{}, err
		}
		for _, f := range files {
			if f.FileID == n {
				return f.transaction(profile), nil
			}
		}
		if seen += len(files); len(files) == 0 || seen >= total {
			break
		}
	}
	return tms.Transaction{}, fmt.Errorf("skyslope: Forms file %s: %w", id, tms.ErrNotFound)
}

// Transactions is the first page of GET /files, at most limit (≤ 500).
func (s *SkySlope) Transactions(ctx context.Context, profile string, limit int) ([]tms.Transaction, error) {
	files, _, err := s.filesPage(ctx, 1, min(max(limit, 1), 500))
	if err != nil {
		return nil, err
	}
	ts := make([]tms.Transaction, len(files))
	for i, f := range files {
		ts[i] = f.transaction(profile)
	}
	return ts, nil
}

// Sale is a sale as the Files API lists it: the fields the adapter reads.
type Sale struct {
	SaleGUID          string    `json:"saleGuid"`
	FileID            int64     `json:"fileId"`
	Status            string    `json:"status"`
	SalePrice         *float64  `json:"salePrice"`
	ActualClosingDate string    `json:"actualClosingDate"`
	MLSNumber         string    `json:"mlsNumber"`
	Property          Property  `json:"property"`
	CreatedOn         time.Time `json:"createdOn"`
	ModifiedOn        time.Time `json:"modifiedOn"`
	// Raw is the sale as the Files API answered it, every field included.
	Raw json.RawMessage `json:"-"`
}

// Change is the sale as a tms.Change: its transaction id is the Forms file
// it was made from, when it names one, or else its own GUID.
func (x Sale) Change() tms.Change {
	id := x.SaleGUID
	if x.FileID != 0 {
		id = strconv.FormatInt(x.FileID, 10)
	}
	p := x.Property
	name := strings.TrimSpace(strings.TrimSpace(p.StreetNumber+" "+p.StreetName) + ", " + p.City)
	sale := map[string]string{FieldSaleGUID: x.SaleGUID, FieldStatus: x.Status, FieldCloseDate: x.ActualClosingDate, FieldMLSNumber: x.MLSNumber}
	if x.SalePrice != nil && *x.SalePrice > 0 {
		sale[FieldSalePrice] = strconv.FormatFloat(*x.SalePrice, 'f', 2, 64)
	}
	return tms.Change{
		Transaction: tms.Transaction{ID: id, Name: strings.Trim(name, ", "), Status: x.Status, Created: x.CreatedOn, Updated: x.ModifiedOn},
		Details: tms.Details{SectionSale: sale, SectionProperty: {
			"Street Number": p.StreetNumber, "Street Name": p.StreetName, "Unit Number": p.UnitNumber,
			"City": p.City, "State": p.State, "Postal Code": p.PostalCode,
		}},
	}
}

// salesPageSize is the Files API's fixed page of sales.
const salesPageSize = 10

// Sales lists the sales modified at or after since (whole seconds), oldest
// change first, walking at most MaxPages pages.
func (s *SkySlope) Sales(ctx context.Context, since time.Time) ([]Sale, error) {
	var all []Sale
	for page := 1; page <= s.maxPages; page++ {
		q := url.Values{"pageNumber": {strconv.Itoa(page)}}
		if !since.IsZero() {
			q.Set("earliestDate", strconv.FormatInt(since.Unix(), 10))
		}
		var out struct {
			Value []json.RawMessage `json:"value"`
		}
		if _, err := s.files.Do(ctx, "list sales", http.MethodGet, "/api/files/sales?"+q.Encode(), nil, &out); err != nil {
			return nil, err
		}
		for _, raw := range out.Value {
			x, err := ParseSale(raw)
			if err != nil {
				return nil, bus.WithCode("tms.bad_answer", fmt.Errorf("skyslope list sales: %w", err))
			}
			all = append(all, x)
		}
		if len(out.Value) < salesPageSize {
			break
		}
	}
	return all, nil
}

var guidRe = regexp.MustCompile(`^[0-9a-fA-F-]{36}$`)

// Details reads the sale of transaction id: GET /api/files/sales/{guid} for
// a sale's GUID, or the sale made from Forms file id, found in the sales
// list. It carries no commission (not in the public API).
func (s *SkySlope) Details(ctx context.Context, _, id string) (tms.Details, error) {
	if guidRe.MatchString(id) {
		var out struct {
			Value struct {
				Sale Sale `json:"sale"`
			} `json:"value"`
		}
		status, err := s.files.Do(ctx, "read sale", http.MethodGet, "/api/files/sales/"+id, nil, &out)
		if status == http.StatusNotFound {
			return nil, fmt.Errorf("skyslope read sale: %w", tms.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		return out.Value.Sale.Change().Details, nil
	}
	sales, err := s.Sales(ctx, time.Time{})
	if err != nil {
		return nil, err
	}
	for _, x := range sales {
		if c := x.Change(); c.Transaction.ID == id {
			return c.Details, nil
		}
	}
	return nil, fmt.Errorf("skyslope: no sale of Forms file %s: %w", id, tms.ErrNotFound)
}

// UpdateProperty is not built: a Forms file is never opened without its
// property (Open requires one), so there is nothing to fill in later. The
// Forms API documents PATCH /files/{fileId} ("Update File Details",
// fileData.premisesAddress), which no account has been run against.
func (s *SkySlope) UpdateProperty(context.Context, string, string, tms.Property) error {
	return fmt.Errorf("skyslope update property: %w", tms.ErrUnsupported)
}

// Participants: the Forms API takes and shows no parties.
func (s *SkySlope) Participants(context.Context, string, string) ([]tms.Party, error) {
	return nil, fmt.Errorf("skyslope participants: %w", tms.ErrUnsupported)
}

// UpdateParticipant: the public APIs update no party.
func (s *SkySlope) UpdateParticipant(context.Context, string, string, tms.Party) (tms.Party, error) {
	return tms.Party{}, fmt.Errorf("skyslope update participant: %w", tms.ErrUnsupported)
}

// Subscribe: SkySlope's webhooks cover document signing only, unsigned.
func (s *SkySlope) Subscribe(context.Context, tms.Subscription) (tms.Subscription, error) {
	return tms.Subscription{}, fmt.Errorf("skyslope webhooks: %w", tms.ErrUnsupported)
}

// Subscriptions: see Subscribe.
func (s *SkySlope) Subscriptions(context.Context) ([]tms.Subscription, error) {
	return nil, fmt.Errorf("skyslope webhooks: %w", tms.ErrUnsupported)
}

// Unsubscribe: see Subscribe.
func (s *SkySlope) Unsubscribe(context.Context, string) error {
	return fmt.Errorf("skyslope webhooks: %w", tms.ErrUnsupported)
}

// ErrBadSale is wrapped by every error of ParseSale.
var ErrBadSale = errors.New("not a SkySlope sale")

// ParseSale reads a sale as the Files API lists it (and tms-sync stores it).
func ParseSale(body []byte) (Sale, error) {
	var x Sale
	if err := json.Unmarshal(body, &x); err != nil {
		return Sale{}, fmt.Errorf("%w: %w", ErrBadSale, err)
	}
	if x.SaleGUID == "" || x.Status == "" {
		return Sale{}, fmt.Errorf("%w: no saleGuid or status", ErrBadSale)
	}
	x.Raw = append(json.RawMessage(nil), body...)
	return x, nil
}
