// Package quickbooks is the QuickBooks Online Accounting API v3 adapter
// (https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/invoice):
// it books a closing's commission as an Invoice or a SalesReceipt, with the
// paying Customer, the agent (a Class, or a Vendor), the Items of its lines
// and the property address, and a Bill for the agent's payout.
//
// Calls go through pkg/vendorapi with the company's OAuth tokens and realm
// id (pkg/oauth), with minorversion=75 on every call. Every create carries a
// requestid derived from the booking's key and the document's role, so that
// a retry returns the original and creates nothing. Calls are paced to the
// company's 500 a minute and 10 a second; a 429 or the ThrottleExceeded
// fault (3001, often XML) is bus.Throttled with a 60 s wait.
package quickbooks

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
)

// Name is the ledger's name in events and in the oauth_tokens bucket.
const Name = "quickbooks"

// MinorVersion is sent on every call: the lowest Intuit serves since
// August 2025 (lower ones are ignored).
const MinorVersion = 75

// ThrottleWait is how long a throttled company is left alone: Intuit says
// to wait 60 s after a 429.
const ThrottleWait = 60 * time.Second

// Scope is the OAuth scope of the Accounting API.
const Scope = "com.intuit.quickbooks.accounting"

// Config points the adapter at QuickBooks Online, the sandbox, or any
// compatible server. The env tags are relative: ledger-sync reads them
// under its own prefix (e.g. LEDGERSYNC_QUICKBOOKS_).
type Config struct {
	// BaseURL is the API, without /v3/company/{realmId}.
	BaseURL string `env:"BASE_URL" envDefault:"https://quickbooks.api.intuit.com"`
	// AuthURL is the consent page, TokenURL the token endpoint.
	AuthURL  string `env:"AUTH_URL" envDefault:"https://appcenter.intuit.com/connect/oauth2"`
	TokenURL string `env:"TOKEN_URL" envDefault:"https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer"`
	// ClientID and ClientSecret are the registered application's.
	ClientID         string `env:"CLIENT_ID"`
	ClientSecret     string `env:"CLIENT_SECRET"`
	ClientSecretFile string `env:"CLIENT_SECRET_FILE"`
	// RealmID is the company; empty means the one `brokerflow connect
	// quickbooks` stored with the tokens.
	RealmID string        `env:"REALM_ID"`
	Timeout time.Duration `env:"TIMEOUT" envDefault:"30s"`
	// IncomeAccount is the income account of the Items the adapter creates,
	// ExpenseAccount the account of the payout Bill's line, by name.
	IncomeAccount  string `env:"INCOME_ACCOUNT" envDefault:"Services"`
	ExpenseAccount string `env:"EXPENSE_ACCOUNT" envDefault:"Commissions & fees"`
	// RateLimit per RateWindow, and PerSecond a second, are the company's
	// throttle (500 a minute and 10 a second). They are this process's: two
	// replicas booking for one company should share it (RATE_LIMIT=250 each).
	RateLimit  int           `env:"RATE_LIMIT" envDefault:"500"`
	RateWindow time.Duration `env:"RATE_WINDOW" envDefault:"1m"`
	PerSecond  int           `env:"PER_SECOND" envDefault:"10"`
}

// Validate reports the first invalid setting, naming it as prefix+NAME.
func (c Config) Validate(prefix string) error {
	if c.ClientID == "" || c.ClientSecret == "" {
		return fmt.Errorf("%sCLIENT_ID and %sCLIENT_SECRET (or _FILE) are required for QuickBooks Online", prefix, prefix)
	}
	if c.RateLimit <= 0 || c.RateWindow <= 0 || c.PerSecond <= 0 {
		return fmt.Errorf("%sRATE_LIMIT, %sRATE_WINDOW and %sPER_SECOND must be positive", prefix, prefix, prefix)
	}
	if c.IncomeAccount == "" || c.ExpenseAccount == "" {
		return fmt.Errorf("%sINCOME_ACCOUNT and %sEXPENSE_ACCOUNT name the accounts and must not be empty", prefix, prefix)
	}
	for _, e := range []struct{ name, url string }{{"AUTH_URL", c.AuthURL}, {"TOKEN_URL", c.TokenURL}} {
		if u, err := url.Parse(e.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%s%s %q is not an absolute http(s) URL", prefix, e.name, e.url)
		}
	}
	return vendorapi.CheckEndpoint(prefix, c.BaseURL, c.Timeout)
}

// ReadSecret fills ClientSecret from ClientSecretFile (its first line) when
// it is not set, naming the variable as prefix+CLIENT_SECRET_FILE.
func (c *Config) ReadSecret(prefix string) error {
	return service.ReadSecret(&c.ClientSecret, c.ClientSecretFile, prefix+"CLIENT_SECRET_FILE")
}

// OAuthConfig is the OAuth client of c: its tokens are kept under
// "quickbooks", with the company's realm id from the consent redirect.
func (c Config) OAuthConfig() oauth.Config {
	return oauth.Config{
		Vendor: Name, Area: ledger.Area, ClientID: c.ClientID, ClientSecret: c.ClientSecret,
		AuthURL: c.AuthURL, TokenURL: c.TokenURL, Scopes: []string{Scope}, AccountParam: "realmId",
	}
}

// Company gives the realm id of the connected company (*oauth.Store does).
type Company interface {
	Account(ctx context.Context) (string, error)
}

// QuickBooks is the adapter. It is safe for concurrent use.
type QuickBooks struct {
	api   *vendorapi.Client
	cfg   Config
	src   vendorapi.TokenSource
	cache sync.Map // realm + "\x00" + kind + "\x00" + name → id (accounts, items, classes)
}

var _ ledger.Ledger = (*QuickBooks)(nil)

// New returns an adapter calling cfg.BaseURL with src's access tokens (a
// *oauth.Store refreshes them after a 401, and names the company when
// cfg.RealmID is empty).
func New(cfg Config, src vendorapi.TokenSource) *QuickBooks {
	cfg.RateLimit = cmp.Or(cfg.RateLimit, 500)
	cfg.RateWindow = cmp.Or(cfg.RateWindow, time.Minute)
	cfg.PerSecond = cmp.Or(cfg.PerSecond, 10)
	cfg.IncomeAccount = cmp.Or(cfg.IncomeAccount, "Services")
	cfg.ExpenseAccount = cmp.Or(cfg.ExpenseAccount, "Commissions & fees")
	return &QuickBooks{cfg: cfg, src: src, api: vendorapi.New(vendorapi.Config{
		Vendor:   Name,
		Area:     ledger.Area,
		BaseURL:  strings.TrimRight(cfg.BaseURL, "/") + "/v3/company",
		Timeout:  cfg.Timeout,
		Auth:     vendorapi.OAuth(src),
		Classify: classify,
		// QuickBooks reports nothing of the quota in headers: the pacer
		// keeps to the configured limit.
		Pacer:     vendorapi.NewPacer(vendorapi.PacerConfig{Limit: cfg.RateLimit, Window: cfg.RateWindow}),
		Transport: newPerSecond(cfg.PerSecond, time.Second, http.DefaultTransport),
	})}
}

// classify is QuickBooks' classifier with Intuit's 60 s wait after a
// throttle that names no Retry-After.
func classify(a vendorapi.Answer) vendorapi.Verdict {
	v := vendorapi.QuickBooksClassifier(a)
	if v.Class == vendorapi.Throttled && v.RetryAfter <= 0 {
		v.RetryAfter = ThrottleWait
	}
	return v
}

// Name is "quickbooks".
func (q *QuickBooks) Name() string { return Name }

// realm is the company to book in.
func (q *QuickBooks) realm(ctx context.Context) (string, error) {
	if q.cfg.RealmID != "" {
		return q.cfg.RealmID, nil
	}
	c, ok := q.src.(Company)
	if !ok {
		return "", bus.AsPermanent(errors.New("quickbooks: no realm id configured, and the token source does not name the company"))
	}
	realm, err := c.Account(ctx)
	return realm, reconnect(err)
}

// reconnect makes an error of a refused refresh token wrap
// ledger.ErrReconnect, permanent, with the reason code
// ledger.oauth_invalid_grant and the command to run.
func reconnect(err error) error {
	if err == nil || !errors.Is(err, oauth.ErrReconnect) {
		return err
	}
	return bus.WithCode(ledger.Area+".oauth_invalid_grant", bus.AsPermanent(fmt.Errorf("%w: QuickBooks refused the refresh token; run `brokerflow connect quickbooks`: %w", ledger.ErrReconnect, err)))
}

// RequestID is the requestid of the create of role (customer, vendor,
// item:<name>, class, invoice, bill) for the booking key: unique per
// company, stable across retries and replicas, at most 50 characters.
func RequestID(key, role string) string {
	sum := sha256.Sum256([]byte(key + "\x00" + role))
	return "bf-" + hex.EncodeToString(sum[:])[:40]
}

// ref is a QuickBooks reference.
type ref struct {
	Value string `json:"value"`
	Name  string `json:"name,omitempty"`
}

type emailAddr struct {
	Address string `json:"Address"`
}

type phone struct {
	FreeFormNumber string `json:"FreeFormNumber"`
}

// party is a Customer or a Vendor as the adapter reads and writes it.
type party struct {
	ID               string     `json:"Id,omitempty"`
	DisplayName      string     `json:"DisplayName"`
	PrimaryEmailAddr *emailAddr `json:"PrimaryEmailAddr,omitempty"`
	PrimaryPhone     *phone     `json:"PrimaryPhone,omitempty"`
	// Notes (Customer) and AcctNum (Vendor) hold Brokerflow's key of the
	// party, to recognize it by name when it has no email.
	Notes   string `json:"Notes,omitempty"`
	AcctNum string `json:"AcctNum,omitempty"`
	Active  *bool  `json:"Active,omitempty"`
}

type named struct {
	ID   string `json:"Id,omitempty"`
	Name string `json:"Name"`
}

type item struct {
	ID               string `json:"Id,omitempty"`
	Name             string `json:"Name"`
	Type             string `json:"Type"`
	IncomeAccountRef *ref   `json:"IncomeAccountRef,omitempty"`
}

type address struct {
	Line1 string `json:"Line1"`
}

type customField struct {
	DefinitionID string `json:"DefinitionId"`
	Name         string `json:"Name"`
	Type         string `json:"Type"`
	StringValue  string `json:"StringValue"`
}

type lineDetail struct {
	ItemRef    *ref    `json:"ItemRef,omitempty"`
	AccountRef *ref    `json:"AccountRef,omitempty"`
	ClassRef   *ref    `json:"ClassRef,omitempty"`
	Qty        float64 `json:"Qty,omitempty"`
	UnitPrice  float64 `json:"UnitPrice,omitempty"`
}

type line struct {
	Amount                        float64     `json:"Amount"`
	Description                   string      `json:"Description,omitempty"`
	DetailType                    string      `json:"DetailType"`
	SalesItemLineDetail           *lineDetail `json:"SalesItemLineDetail,omitempty"`
	AccountBasedExpenseLineDetail *lineDetail `json:"AccountBasedExpenseLineDetail,omitempty"`
}

// document is an Invoice, a SalesReceipt or a Bill.
type document struct {
	ID          string        `json:"Id,omitempty"`
	DocNumber   string        `json:"DocNumber,omitempty"`
	TxnDate     string        `json:"TxnDate,omitempty"`
	CustomerRef *ref          `json:"CustomerRef,omitempty"`
	VendorRef   *ref          `json:"VendorRef,omitempty"`
	ClassRef    *ref          `json:"ClassRef,omitempty"`
	ShipAddr    *address      `json:"ShipAddr,omitempty"`
	CustomField []customField `json:"CustomField,omitempty"`
	PrivateMemo string        `json:"PrivateMemo,omitempty"`
	CurrencyRef *ref          `json:"CurrencyRef,omitempty"`
	Line        []line        `json:"Line"`
	TotalAmt    float64       `json:"TotalAmt,omitempty"`
}

// path is a company path with minorversion (and requestid for a create).
func path(realm, rest string, q url.Values) string {
	if q == nil {
		q = url.Values{}
	}
	q.Set("minorversion", strconv.Itoa(MinorVersion))
	return "/" + url.PathEscape(realm) + "/" + rest + "?" + q.Encode()
}

// create posts v as a new entity with the requestid of key and role, and
// decodes the entity of the answer into out.
func (q *QuickBooks) create(ctx context.Context, realm, entity, key, role string, v, out any) error {
	wrap := map[string]any{}
	_, err := q.api.Do(ctx, "create "+strings.ToLower(entity)+" ("+role+")", http.MethodPost,
		path(realm, strings.ToLower(entity), url.Values{"requestid": {RequestID(key, role)}}), v, &wrap)
	if err != nil {
		return reconnect(err)
	}
	return remarshal(wrap[entity], out)
}

// query runs a select and decodes the entity's rows into out (a pointer to
// a slice).
func (q *QuickBooks) query(ctx context.Context, realm, op, entity, where string, out any) error {
	var resp struct {
		QueryResponse map[string]any `json:"QueryResponse"`
	}
	stmt := "select * from " + entity + " where " + where + " maxresults 10"
	if _, err := q.api.Do(ctx, op, http.MethodGet, path(realm, "query", url.Values{"query": {stmt}}), nil, &resp); err != nil {
		return reconnect(err)
	}
	if rows, ok := resp.QueryResponse[entity]; ok {
		return remarshal(rows, out)
	}
	return nil
}

// quote is a query's string literal: Intuit escapes a quote with a
// backslash.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// faultCode is the QuickBooks fault code of err ("6240"), or "".
func faultCode(err error) string {
	var ve *vendorapi.Error
	if errors.As(err, &ve) {
		return ve.Code
	}
	return ""
}

// Book books b: the Customer, the agent's Class or Vendor, the Items, the
// document, and the payout Bill. A retry with the same b.Key finds or
// replays what the first call created.
func (q *QuickBooks) Book(ctx context.Context, b ledger.Booking) (ledger.Booked, error) {
	if err := check(b); err != nil {
		return ledger.Booked{}, err
	}
	realm, err := q.realm(ctx)
	if err != nil {
		return ledger.Booked{}, err
	}
	out := ledger.Booked{CompanyID: realm, Document: b.Document}
	customer, err := q.findOrCreateParty(ctx, realm, "Customer", b.Key, b.Payer.Key, b.Payer.DisplayName, b.Payer.Email, b.Payer.Phone)
	if err != nil {
		return out, fmt.Errorf("quickbooks: customer for booking %s: %w", b.Key, err)
	}
	out.CustomerID = customer.ID
	var vendor party
	if b.AgentAs == ledger.AgentAsVendor || b.PayoutMinor > 0 {
		if vendor, err = q.agentVendor(ctx, realm, b); err != nil {
			return out, fmt.Errorf("quickbooks: vendor for agent %s: %w", b.Agent.ID, err)
		}
		out.VendorID = vendor.ID
	}
	var class *ref
	if b.AgentAs == ledger.AgentAsClass {
		id, err := q.findOrCreateNamed(ctx, realm, "Class", b.Key, "class", b.Agent.Name, func(name string) any { return named{Name: name} })
		if err != nil {
			return out, fmt.Errorf("quickbooks: class for agent %s: %w", b.Agent.ID, err)
		}
		class = &ref{Value: id}
		out.AgentLedgerID = id
	} else {
		out.AgentLedgerID = vendor.ID
	}
	doc, err := q.salesDocument(ctx, realm, b, customer, vendor, class)
	if err != nil {
		return out, err
	}
	out.DocumentID, out.DocumentNumber, out.TotalMinor = doc.ID, doc.DocNumber, cents(doc.TotalAmt)
	if b.PayoutMinor > 0 {
		bill, err := q.payoutBill(ctx, realm, b, vendor, class)
		if err != nil {
			return out, err
		}
		out.BillID = bill.ID
	}
	return out, nil
}

// check refuses a booking the adapter cannot book, permanently.
func check(b ledger.Booking) error {
	var missing []string
	if b.Key == "" {
		missing = append(missing, "key")
	}
	if b.Payer.DisplayName == "" {
		missing = append(missing, "the payer's name")
	}
	if b.Agent.Name == "" && (b.Agent.LedgerID == "" || b.AgentAs == ledger.AgentAsClass) {
		missing = append(missing, "the agent's name")
	}
	if len(b.Lines) == 0 {
		missing = append(missing, "lines")
	}
	for i, l := range b.Lines {
		if l.Item == "" {
			missing = append(missing, fmt.Sprintf("line %d's item", i+1))
		}
	}
	if len(missing) > 0 {
		return bus.WithCode(ledger.Area+".booking_incomplete", bus.Permanentf("quickbooks: booking %q lacks %s", b.Key, strings.Join(missing, ", ")))
	}
	switch {
	case b.Document != ledger.DocumentInvoice && b.Document != ledger.DocumentSalesReceipt:
		return bus.WithCode(ledger.Area+".booking_invalid", bus.Permanentf("quickbooks: document %q is neither %q nor %q", b.Document, ledger.DocumentInvoice, ledger.DocumentSalesReceipt))
	case b.AgentAs != ledger.AgentAsClass && b.AgentAs != ledger.AgentAsVendor:
		return bus.WithCode(ledger.Area+".booking_invalid", bus.Permanentf("quickbooks: agent_as %q is neither %q nor %q", b.AgentAs, ledger.AgentAsClass, ledger.AgentAsVendor))
	}
	return nil
}

// agentVendor is the agent's Vendor: the directory's id, or found by email
// or created.
func (q *QuickBooks) agentVendor(ctx context.Context, realm string, b ledger.Booking) (party, error) {
	if b.Agent.LedgerID != "" {
		return party{ID: b.Agent.LedgerID, DisplayName: b.Agent.Name}, nil
	}
	return q.findOrCreateParty(ctx, realm, "Vendor", b.Key, b.Agent.ID, b.Agent.Name, b.Agent.Email, "")
}

// findOrCreateParty finds the Customer or Vendor of key: by email when it
// has one, else by its name and the key kept on it; or creates it. When
// another Customer, Vendor or Employee has the name (6240), the new one is
// named "<name> (<key>)" rather than reusing the other's record.
func (q *QuickBooks) findOrCreateParty(ctx context.Context, realm, entity, bookingKey, key, name, email, tel string) (party, error) {
	var found []party
	mine := func(p party) bool { return key != "" && (p.Notes == marker(key) || p.AcctNum == key) }
	if email != "" {
		if err := q.query(ctx, realm, "find "+strings.ToLower(entity)+" by email", entity, "PrimaryEmailAddr = "+quote(email), &found); err != nil {
			return party{}, err
		}
		if len(found) > 0 {
			return found[0], nil
		}
	} else {
		if err := q.query(ctx, realm, "find "+strings.ToLower(entity)+" by name", entity, "DisplayName = "+quote(name), &found); err != nil {
			return party{}, err
		}
		if len(found) > 0 && mine(found[0]) {
			return found[0], nil
		}
	}
	p := party{DisplayName: name}
	if email != "" {
		p.PrimaryEmailAddr = &emailAddr{Address: email}
	}
	if tel != "" {
		p.PrimaryPhone = &phone{FreeFormNumber: tel}
	}
	if entity == "Customer" {
		p.Notes = marker(key)
	} else {
		p.AcctNum = key
	}
	role := strings.ToLower(entity)
	var out party
	err := q.create(ctx, realm, entity, bookingKey, role, p, &out)
	if faultCode(err) != "6240" || key == "" {
		return out, err
	}
	// The name is taken by someone else: this party gets its key in its name.
	p.DisplayName = keyedName(name, key)
	err = q.create(ctx, realm, entity, bookingKey, role+":keyed", p, &out)
	if faultCode(err) != "6240" {
		return out, err
	}
	// Taken too: it is this party's, made by an earlier booking.
	found = nil
	if qerr := q.query(ctx, realm, "find "+role+" by keyed name", entity, "DisplayName = "+quote(p.DisplayName), &found); qerr != nil {
		return party{}, qerr
	}
	if len(found) > 0 {
		return found[0], nil
	}
	return out, err
}

// marker is what a Customer's Notes hold of its Brokerflow key.
func marker(key string) string { return "brokerflow:" + key }

// keyedName is a display name made unique by the party's key, within
// QuickBooks' 500 characters.
func keyedName(name, key string) string {
	const maxName = 500
	suffix := " (" + key + ")"
	if len(name)+len(suffix) > maxName {
		name = name[:max(0, maxName-len(suffix))]
	}
	return name + suffix
}

// findOrCreateNamed finds an Item, Class or Account by Name, or creates it
// (an Account is never created); ids are cached per company. A create that
// clashes with one made meanwhile (6240) finds that one.
func (q *QuickBooks) findOrCreateNamed(ctx context.Context, realm, entity, bookingKey, role, name string, build func(name string) any) (string, error) {
	cacheKey := realm + "\x00" + entity + "\x00" + name
	if id, ok := q.cache.Load(cacheKey); ok {
		return id.(string), nil
	}
	find := func() (string, error) {
		var found []named
		if err := q.query(ctx, realm, "find "+strings.ToLower(entity)+" by name", entity, "Name = "+quote(name), &found); err != nil || len(found) == 0 {
			return "", err
		}
		q.cache.Store(cacheKey, found[0].ID)
		return found[0].ID, nil
	}
	if id, err := find(); err != nil || id != "" {
		return id, err
	}
	if build == nil {
		return "", bus.WithCode(ledger.Area+".account_missing", bus.Permanentf("quickbooks: company %s has no %s named %q (set the adapter's account names)", realm, strings.ToLower(entity), name))
	}
	var out named
	err := q.create(ctx, realm, entity, bookingKey, role, build(name), &out)
	if faultCode(err) == "6240" {
		if id, ferr := find(); ferr != nil || id != "" {
			return id, ferr
		}
	}
	if err != nil {
		return "", err
	}
	q.cache.Store(cacheKey, out.ID)
	return out.ID, nil
}

// itemID is the Item of a line, a Service item on the income account.
func (q *QuickBooks) itemID(ctx context.Context, realm, bookingKey, name string) (string, error) {
	income, err := q.findOrCreateNamed(ctx, realm, "Account", bookingKey, "", q.cfg.IncomeAccount, nil)
	if err != nil {
		return "", err
	}
	return q.findOrCreateNamed(ctx, realm, "Item", bookingKey, "item:"+name, name, func(name string) any {
		return item{Name: name, Type: "Service", IncomeAccountRef: &ref{Value: income}}
	})
}

// salesDocument creates the Invoice or SalesReceipt: one line per
// component, the agent as its Class (or named in a custom field for a
// Vendor), the property as its ShipAddr.
func (q *QuickBooks) salesDocument(ctx context.Context, realm string, b ledger.Booking, customer, vendor party, class *ref) (document, error) {
	entity, role := "Invoice", "invoice"
	if b.Document == ledger.DocumentSalesReceipt {
		entity, role = "SalesReceipt", "salesreceipt"
	}
	d := document{TxnDate: b.Date, CustomerRef: &ref{Value: customer.ID}, ClassRef: class, PrivateMemo: memo(b, vendor)}
	if b.Property != "" {
		d.ShipAddr = &address{Line1: b.Property}
	}
	if b.AgentAs == ledger.AgentAsVendor {
		d.CustomField = []customField{{DefinitionID: "1", Name: "Agent", Type: "StringType", StringValue: truncate(b.Agent.Name, 31)}}
	}
	for _, l := range b.Lines {
		id, err := q.itemID(ctx, realm, b.Key, l.Item)
		if err != nil {
			return document{}, fmt.Errorf("quickbooks: item %q: %w", l.Item, err)
		}
		amount := dollars(l.AmountMinor)
		d.Line = append(d.Line, line{Amount: amount, Description: l.Description, DetailType: "SalesItemLineDetail",
			SalesItemLineDetail: &lineDetail{ItemRef: &ref{Value: id, Name: l.Item}, Qty: 1, UnitPrice: amount}})
	}
	var out document
	if err := q.create(ctx, realm, entity, b.Key, role, d, &out); err != nil {
		return out, fmt.Errorf("quickbooks: %s for booking %s: %w", role, b.Key, err)
	}
	return out, nil
}

// payoutBill creates the Bill of the agent's payout, on the expense account.
func (q *QuickBooks) payoutBill(ctx context.Context, realm string, b ledger.Booking, vendor party, class *ref) (document, error) {
	expense, err := q.findOrCreateNamed(ctx, realm, "Account", b.Key, "", q.cfg.ExpenseAccount, nil)
	if err != nil {
		return document{}, err
	}
	d := document{TxnDate: b.Date, VendorRef: &ref{Value: vendor.ID}, PrivateMemo: memo(b, vendor), Line: []line{{
		Amount: dollars(b.PayoutMinor), Description: "Commission payout: " + cmp.Or(b.Property, b.Key), DetailType: "AccountBasedExpenseLineDetail",
		AccountBasedExpenseLineDetail: &lineDetail{AccountRef: &ref{Value: expense}, ClassRef: class},
	}}}
	var out document
	if err := q.create(ctx, realm, "Bill", b.Key, "bill", d, &out); err != nil {
		return out, fmt.Errorf("quickbooks: payout bill for booking %s: %w", b.Key, err)
	}
	return out, nil
}

// memo is the document's private note: the booking's memo, the agent and
// the booking key, within QuickBooks' 4,000 characters.
func memo(b ledger.Booking, vendor party) string {
	agent := b.Agent.Name
	if vendor.ID != "" {
		agent += " (vendor " + vendor.ID + ")"
	}
	return truncate(strings.TrimSpace(b.Memo+"\nAgent: "+agent+"\n"+bookingLine+b.Key), 4000)
}

// bookingLine starts the memo's last line, which names the booking key.
const bookingLine = "Brokerflow booking: "

// bookingKeyOf reads the booking key from a document's private note; empty
// when no line names one (a document made by a person, or a note cut at
// QuickBooks' length).
func bookingKeyOf(memo string) string {
	for _, l := range slices.Backward(strings.Split(memo, "\n")) {
		if k, ok := strings.CutPrefix(strings.TrimSpace(l), bookingLine); ok {
			return strings.TrimSpace(k)
		}
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

func dollars(minor int64) float64 { return float64(minor) / 100 }

func cents(amount float64) int64 {
	if amount < 0 {
		return -cents(-amount)
	}
	return int64(amount*100 + 0.5)
}
