package sandbox

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The SkySlope emulation, served under /skyslope. SkySlope has separate APIs on separate hosts;
// the sandbox serves two of them side by side:
//
//   - The Partnership ("Forms") API (https://forms.skyslope.com/partner/api/docs), at
//     /skyslope/partner/api, with its OAuth 2.0 server (https://accounts.skyslope.com/oauth2) at
//     /skyslope/oauth2: the authorization-code grant with PKCE (S256), scope forms.files, and
//     refresh tokens (offline_access) that rotate. POST /files {"name","representationType",
//     "property"} answers {"fileId"}; GET /files?page&pageSize (at most 500) answers
//     {"totalRecords","files"}; errors are {"code","message","errors","traceId"}.
//   - The Listings/Sales ("Files") API (https://api.skyslope.com), at /skyslope: POST
//     /auth/login with "Authorization: SS <accessKey>:<hmac>" and "Timestamp", where hmac is
//     base64(HMAC-SHA256(accessSecret, clientId:clientSecret:timestamp)), answers
//     {"Session","Expiration"}; later calls send "Session: <session>". GET /api/files/sales and
//     GET /api/files/sales/{saleGuid}.
//
// What it assumes, because the public material does not say (docs/sandbox.md#skyslope):
//   - A Forms file also appears at once as a sale in the Files API, whose "fileId" is the Forms
//     file's id (in SkySlope a Forms file is sent to Transaction Management by a person).
//   - GET /files lists newest first; a listed file has fileId, name, representationType,
//     property and createdDate.
//   - GET /api/files/sales?earliestDate=<unix seconds>&pageNumber=<n> lists the sales modified
//     at or after earliestDate, oldest change first, 10 a page, as {"value":[…]}; a sale has
//     saleGuid, fileId, status ("Pending", "Closed"), salePrice (a number), actualClosingDate,
//     mlsNumber, property, createdOn, modifiedOn. GET /api/files/sales/{guid} answers
//     {"value":{"sale":{…}}}.
//   - The commission a person enters on a sale is kept in the sandbox's state only: the public
//     Files API documentation does not show commission fields, so the sandbox does not serve them.
//   - A session lasts an hour; rate limits are not published, so there are none.

// SkySlope emulation defaults.
const (
	DefaultSkySlopeClientID          = "sandbox-skyslope-client"
	DefaultSkySlopeClientSecret      = "sandbox-skyslope-secret"
	DefaultSkySlopeAccessKey         = "sandbox-skyslope-access-key"
	DefaultSkySlopeAccessSecret      = "sandbox-skyslope-access-secret"
	DefaultSkySlopeFilesClientID     = "sandbox-skyslope-files-client"
	DefaultSkySlopeFilesClientSecret = "sandbox-skyslope-files-secret"
	skyslopeName                     = "skyslope"
)

// SkySlope's sale statuses as the sandbox uses them.
const (
	SkySlopePending = "Pending"
	SkySlopeClosed  = "Closed"
)

// SkySlopeRepresentationTypes are the Forms API's representation types.
var SkySlopeRepresentationTypes = []string{"Buyer", "Seller", "Tenant", "Landlord"}

// SkySlopeOptions configures the SkySlope emulation. Zero fields take the defaults.
type SkySlopeOptions struct {
	// ClientID and ClientSecret are the Forms API's OAuth client.
	ClientID, ClientSecret string
	// AccessKey and AccessSecret are a user's Files API keys; FilesClientID and
	// FilesClientSecret the brokerage's Files API client.
	AccessKey, AccessSecret          string
	FilesClientID, FilesClientSecret string
	// AccessTTL is an access token's life (default 1h); SessionTTL a Files API session's (1h).
	AccessTTL, SessionTTL time.Duration
	// Skew is how far a login's Timestamp may be from the sandbox's clock (default 5 min).
	Skew time.Duration
}

func (o *SkySlopeOptions) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.ClientID, DefaultSkySlopeClientID)
	def(&o.ClientSecret, DefaultSkySlopeClientSecret)
	def(&o.AccessKey, DefaultSkySlopeAccessKey)
	def(&o.AccessSecret, DefaultSkySlopeAccessSecret)
	def(&o.FilesClientID, DefaultSkySlopeFilesClientID)
	def(&o.FilesClientSecret, DefaultSkySlopeFilesClientSecret)
	if o.AccessTTL <= 0 {
		o.AccessTTL = time.Hour
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = time.Hour
	}
	if o.Skew <= 0 {
		o.Skew = 5 * time.Minute
	}
}

// SkySlopeProperty is a Forms file's property.
type SkySlopeProperty struct {
	StreetNumber string `json:"streetNumber"`
	StreetName   string `json:"streetName"`
	UnitNumber   string `json:"unitNumber,omitempty"`
	City         string `json:"city"`
	State        string `json:"state"`
	PostalCode   string `json:"postalCode"`
	County       string `json:"county,omitempty"`
}

// SkySlopeFile is a Forms file.
type SkySlopeFile struct {
	FileID             int64            `json:"fileId"`
	Name               string           `json:"name"`
	RepresentationType string           `json:"representationType"`
	Property           SkySlopeProperty `json:"property"`
	CreatedDate        time.Time        `json:"createdDate"`
}

// SkySlopeSale is a sale as the Files API answers it.
type SkySlopeSale struct {
	SaleGUID          string           `json:"saleGuid"`
	FileID            int64            `json:"fileId,omitempty"`
	Status            string           `json:"status"`
	SalePrice         float64          `json:"salePrice,omitempty"`
	ActualClosingDate string           `json:"actualClosingDate,omitempty"`
	MLSNumber         string           `json:"mlsNumber,omitempty"`
	Property          SkySlopeProperty `json:"property"`
	CreatedOn         time.Time        `json:"createdOn"`
	ModifiedOn        time.Time        `json:"modifiedOn"`
}

// SkySlopeSaleState is a sale with what the sandbox keeps beside it.
type SkySlopeSaleState struct {
	SkySlopeSale
	// Commission is what a person entered as the gross commission (whole dollars); the API
	// does not serve it.
	Commission int64 `json:"commissionEntered,omitempty"`
}

// SkySlopeClosing is what the page's "close" button sets on a sale.
type SkySlopeClosing struct {
	// Price and Commission are whole dollars; a Price of 0 closes the sale without one.
	Price, Commission int64
	// CloseDate is YYYY-MM-DD; empty is today.
	CloseDate string
}

// SkySlope is the SkySlope emulation. Its methods are safe for concurrent use.
type SkySlope struct {
	*Kit
	opts  SkySlopeOptions
	now   func() time.Time
	oauth *oauthServer

	mu       sync.Mutex
	files    []SkySlopeFile // in id order
	sales    []*SkySlopeSaleState
	sessions map[string]time.Time // session → expiry
	logins   int
	lastFile int64
	lastSale int
}

func newSkySlope(o SkySlopeOptions, now func() time.Time) *SkySlope {
	o.setDefaults()
	s := &SkySlope{opts: o, now: now, oauth: newOAuthServer(oauthOptions{
		clientID: o.ClientID, clientSecret: o.ClientSecret, prefix: "ss", accessTTL: o.AccessTTL,
		scope: "forms.files offline_access", pkce: true, revokeOnRotate: true, now: now,
	})}
	s.resetState()
	s.Kit = NewKit(KitOptions{
		Name: skyslopeName, Title: "SkySlope (Forms API under /skyslope/partner/api, OAuth under /skyslope/oauth2; Files API under /skyslope/api)",
		Note: "Newest first. A Forms file appears at once as a pending sale in the Files API. The buttons close a sale, with a sale price and a commission, or without a price; the commission is kept here only, as the Files API does not serve it.",
		Auth: s.auth,
		ErrorBody: func(status int, message string) any {
			return skyslopeError{Code: strconv.Itoa(status), Message: message, Errors: []string{}}
		},
		State: s.state, Tables: s.tables, Reset: s.resetState, Now: now,
	})
	s.routes()
	return s
}

func (s *SkySlope) resetState() {
	s.oauth.reset()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files, s.sales, s.sessions = nil, nil, map[string]time.Time{}
	s.logins, s.lastFile, s.lastSale = 0, 477308, 0
}

// skyslopeError is the Forms API's error body, which the sandbox uses for both APIs.
type skyslopeError struct {
	Code    string   `json:"code"`
	Message string   `json:"message"`
	Errors  []string `json:"errors"`
	TraceID string   `json:"traceId,omitempty"`
}

// SignSkySlopeLogin is the HMAC of a Files API login: base64(HMAC-SHA256(accessSecret,
// clientID:clientSecret:timestamp)).
func SignSkySlopeLogin(accessSecret, clientID, clientSecret, timestamp string) string {
	mac := hmac.New(sha256.New, []byte(accessSecret))
	_, _ = mac.Write([]byte(clientID + ":" + clientSecret + ":" + timestamp))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// IssueTokens grants a new pair of Forms API tokens, as the authorization-code flow ends: for
// tests and the all-in-one, which skip the browser.
func (s *SkySlope) IssueTokens() OAuthTokens { return s.oauth.issue("") }

// ExpireAccessTokens makes every Forms API access token expired now.
func (s *SkySlope) ExpireAccessTokens() { s.oauth.expireAccess() }

// ExpireSessions makes every Files API session expired now.
func (s *SkySlope) ExpireSessions() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for k := range s.sessions {
		s.sessions[k] = now
	}
}

// TokenCounts are the Forms API access tokens valid now, the refreshes granted, and the Files
// API logins.
func (s *SkySlope) TokenCounts() (valid, refreshes, logins int) {
	valid, refreshes = s.oauth.counts()
	s.mu.Lock()
	defer s.mu.Unlock()
	return valid, refreshes, s.logins
}

// Files returns every Forms file, in id order.
func (s *SkySlope) Files() []SkySlopeFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.files)
}

// Sales returns every sale, in creation order.
func (s *SkySlope) Sales() []SkySlopeSaleState {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SkySlopeSaleState, len(s.sales))
	for i, x := range s.sales {
		out[i] = *x
	}
	return out
}

// createFile adds a Forms file and its pending sale.
func (s *SkySlope) createFile(name, repType string, p SkySlopeProperty) SkySlopeFile {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC()
	s.lastFile++
	f := SkySlopeFile{FileID: s.lastFile, Name: name, RepresentationType: repType, Property: p, CreatedDate: now}
	s.files = append(s.files, f)
	s.addSaleLocked(SkySlopeSale{FileID: f.FileID, Property: p})
	return f
}

func (s *SkySlope) addSaleLocked(sale SkySlopeSale) *SkySlopeSaleState {
	s.lastSale++
	now := s.now().UTC()
	sale.SaleGUID = fmt.Sprintf("5a1e0000-0000-4000-8000-%012d", s.lastSale)
	if sale.Status == "" {
		sale.Status = SkySlopePending
	}
	sale.CreatedOn, sale.ModifiedOn = now, now
	st := &SkySlopeSaleState{SkySlopeSale: sale}
	s.sales = append(s.sales, st)
	return st
}

// AddSale adds a sale to the Files API that no Forms file made (entered in SkySlope by a
// person), and returns it.
func (s *SkySlope) AddSale(p SkySlopeProperty) SkySlopeSale {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addSaleLocked(SkySlopeSale{Property: p}).SkySlopeSale
}

// CloseSale closes the sale guid with c's price, commission and close date, as a person does in
// SkySlope; its modifiedOn moves to now.
func (s *SkySlope) CloseSale(guid string, c SkySlopeClosing) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.sales, func(x *SkySlopeSaleState) bool { return x.SaleGUID == guid })
	if i < 0 {
		return fmt.Errorf("sale %s: %w", guid, errNotFound)
	}
	x := s.sales[i]
	now := s.now().UTC()
	x.Status, x.ModifiedOn = SkySlopeClosed, now
	x.SalePrice = float64(c.Price)
	x.Commission = c.Commission
	x.ActualClosingDate = c.CloseDate
	if x.ActualClosingDate == "" {
		x.ActualClosingDate = now.Format("2006-01-02")
	}
	return nil
}

// SaleOfFile is the sale a Forms file became, if any.
func (s *SkySlope) SaleOfFile(fileID int64) (SkySlopeSale, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, x := range s.sales {
		if x.FileID == fileID {
			return x.SkySlopeSale, true
		}
	}
	return SkySlopeSale{}, false
}

func (s *SkySlope) state() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	sales := make([]SkySlopeSaleState, len(s.sales))
	for i, x := range s.sales {
		sales[i] = *x
	}
	grants, refreshes := s.oauth.stats()
	return struct {
		Files     []SkySlopeFile      `json:"files"`
		Sales     []SkySlopeSaleState `json:"sales"`
		Grants    int                 `json:"tokenGrants"`
		Refreshes int                 `json:"tokenRefreshes"`
		Logins    int                 `json:"filesApiLogins"`
	}{nonNil(slices.Clone(s.files)), nonNil(sales), grants, refreshes, s.logins}
}
