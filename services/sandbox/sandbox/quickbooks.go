package sandbox

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The QuickBooks Online Accounting API v3 emulation, served under /quickbooks: the API at
// /quickbooks/v3/company/{realmId} (in place of https://quickbooks.api.intuit.com/v3/company/
// {realmId}), the token endpoint at /quickbooks/oauth2/v1/tokens/bearer (in place of
// https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer) and the authorization page at
// /quickbooks/connect/oauth2 (in place of https://appcenter.intuit.com/connect/oauth2).
//
// What it takes from Intuit's documentation and the public client code that quotes it
// (docs/sandbox.md lists the sources):
//   - OAuth 2.0 with HTTP Basic client credentials; access tokens of one hour; a refresh
//     returns a new refresh token, and the old one keeps working for a while (24 hours in
//     Intuit's older text: the RotatedRefreshGrace knob), then answers invalid_grant;
//     x_refresh_token_expires_in is reported. The redirect after consent carries realmId.
//   - POST …/{entity} creates (or, with an Id and the current SyncToken, updates), GET
//     …/{entity}/{id} reads, GET …/query?query= runs a query; answers wrap the entity in its
//     name ({"Customer":{…},"time":…}), a query's in QueryResponse.
//   - requestid: a create with a requestid seen before in the company returns the original
//     answer and creates nothing.
//   - minorversion: any value below 75, or none, is served as 75 (Intuit ignores 1–74 since
//     August 2025).
//   - Faults as {"Fault":{"Error":[{"Message","Detail","code","element"}],"type"},"time"}:
//     6240 Duplicate Name Exists (DisplayName is unique across Customers, Vendors and
//     Employees, inactive ones included), 5010 Stale Object Error (a SyncToken that is not the
//     current one), 610 Object Not Found (an id that does not exist, or a reference to an
//     inactive object), 2500 Invalid Reference Id (a reference to no object).
//   - Throttling per company: 500 requests a minute and 10 a second; a call over either is
//     answered 429 with the XML ThrottleExceeded fault (code 3001), whatever the client asked.
//
// What it assumes:
//   - A requestid replays every answer of the handler, a fault included; it is bound to the
//     company, not the entity; at most 50 characters.
//   - Each company starts with a small chart of accounts (Services income, Commissions & fees
//     expense, Undeposited Funds); an Item needs a Name and, for Service items, an
//     IncomeAccountRef.
//   - A query lists active objects only, unless it filters on Active; it supports
//     `select * from <Entity> [where <Field> = '<value>' [and …]] [startposition n]
//     [maxresults m]` with \' escaping a quote, PrimaryEmailAddr meaning its Address.
//   - An expired or unknown token is answered 401 with the XML AuthenticationFailed fault
//     (3200); a token of another company 403 with ApplicationAuthorizationFailed (3100).

// QuickBooks emulation defaults.
const (
	DefaultQuickBooksClientID     = "sandbox-quickbooks-client"
	DefaultQuickBooksClientSecret = "sandbox-quickbooks-secret"
	// DefaultQuickBooksRealm is the sandbox's one company.
	DefaultQuickBooksRealm = "9130357766900456"
	quickBooksName         = "quickbooks"
	// QuickBooksMinorVersion is the lowest minor version Intuit serves.
	QuickBooksMinorVersion = 75
)

// QuickBooks entity names, as they head answers and queries.
const (
	QBCustomer     = "Customer"
	QBVendor       = "Vendor"
	QBEmployee     = "Employee"
	QBItem         = "Item"
	QBClass        = "Class"
	QBAccount      = "Account"
	QBInvoice      = "Invoice"
	QBSalesReceipt = "SalesReceipt"
	QBBill         = "Bill"
)

var qbEntities = []string{QBCustomer, QBVendor, QBEmployee, QBItem, QBClass, QBAccount, QBInvoice, QBSalesReceipt, QBBill, QBPayment}

// QuickBooksOptions configures the QuickBooks Online emulation. Zero fields take the defaults.
type QuickBooksOptions struct {
	ClientID, ClientSecret string
	// Realms are the companies; default one, DefaultQuickBooksRealm. Consent picks the first.
	Realms []string
	// AccessTTL is an access token's life; default one hour.
	AccessTTL time.Duration
	// RefreshTTL is a refresh token's own life; default five years (Intuit's maximum).
	RefreshTTL time.Duration
	// RotatedRefreshGrace is how long a refresh token still works after a refresh rotated it:
	// default 24 hours, as Intuit's older documentation says. Negative: not at all.
	RotatedRefreshGrace time.Duration
	// Limit per Window, and PerSecond a second, are each company's throttle: default 500 a
	// minute and 10 a second. A benchmark may shorten Window to fit a short run.
	Limit     int
	Window    time.Duration
	PerSecond int
	// Webhooks is where a payment's webhooks go, signed with its verifier token, in its format:
	// default none sent (no URL), the legacy format, DefaultQuickBooksVerifierToken. A URL
	// turns them on unless WebhooksOff. The knob /_sandbox/quickbooks/webhooks changes them.
	Webhooks    QBWebhooks
	WebhooksOff bool
	// Delivery configures the webhooks' retries.
	Delivery DeliveryOptions
}

func (o *QuickBooksOptions) setDefaults() {
	if o.ClientID == "" {
		o.ClientID = DefaultQuickBooksClientID
	}
	if o.ClientSecret == "" {
		o.ClientSecret = DefaultQuickBooksClientSecret
	}
	if len(o.Realms) == 0 {
		o.Realms = []string{DefaultQuickBooksRealm}
	}
	if o.AccessTTL <= 0 {
		o.AccessTTL = time.Hour
	}
	if o.RefreshTTL <= 0 {
		o.RefreshTTL = 5 * 365 * 24 * time.Hour
	}
	switch {
	case o.RotatedRefreshGrace == 0:
		o.RotatedRefreshGrace = 24 * time.Hour
	case o.RotatedRefreshGrace < 0:
		o.RotatedRefreshGrace = 0
	}
	if o.Limit <= 0 {
		o.Limit = 500
	}
	if o.Window <= 0 {
		o.Window = time.Minute
	}
	if o.PerSecond <= 0 {
		o.PerSecond = 10
	}
	if o.Webhooks.Format == "" {
		o.Webhooks.Format = QBWebhookLegacy
	}
	if o.Webhooks.VerifierToken == "" {
		o.Webhooks.VerifierToken = DefaultQuickBooksVerifierToken
	}
	o.Webhooks.Enabled = o.Webhooks.URL != "" && !o.WebhooksOff
}

// QBObject is one QuickBooks object as its JSON: "Id", "SyncToken", "MetaData" and the
// entity's own fields.
type QBObject map[string]any

// String returns field as a string ("" when absent).
func (o QBObject) String(field string) string {
	switch v := o[field].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// Ref returns the value of a reference field ({"value":…}).
func (o QBObject) Ref(field string) string {
	if m, ok := o[field].(map[string]any); ok {
		if s, ok := m["value"].(string); ok {
			return s
		}
	}
	return ""
}

// Active reports whether the object is active (objects without the field are).
func (o QBObject) Active() bool {
	b, ok := o["Active"].(bool)
	return !ok || b
}

// Lines returns the object's Line array.
func (o QBObject) Lines() []map[string]any {
	arr, _ := o["Line"].([]any)
	var out []map[string]any
	for _, l := range arr {
		if m, ok := l.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// Cents returns a money field in cents.
func (o QBObject) Cents(field string) int64 { return qbCents(o[field]) }

func qbCents(v any) int64 {
	var f float64
	switch n := v.(type) {
	case json.Number:
		f, _ = n.Float64()
	case float64:
		f = n
	case string:
		f, _ = strconv.ParseFloat(n, 64)
	}
	return int64(math.Round(f * 100))
}

func (o QBObject) clone() QBObject {
	b, _ := json.Marshal(o)
	var out QBObject
	_ = decodeQB(b, &out)
	return out
}

// qbRealm is one company's books.
type qbRealm struct {
	id      string
	objects map[string][]QBObject // entity → objects in id order
	lastID  int
	docNum  int
	replays map[string]qbAnswer // requestid → the original answer
}

type qbAnswer struct {
	status int
	body   []byte
}

// QuickBooks is the QuickBooks Online Accounting API v3 emulation. Its methods are safe for
// concurrent use.
type QuickBooks struct {
	*Kit
	opts  QuickBooksOptions
	now   func() time.Time
	oauth *oauthServer

	mu       sync.Mutex
	realms   map[string]*qbRealm
	minors   map[string]int // minorversion asked → calls
	replayed int
	hooks    QBWebhooks
	delivs   []*qbDelivery
}

func newQuickBooks(o QuickBooksOptions, now func() time.Time) *QuickBooks {
	o.setDefaults()
	q := &QuickBooks{opts: o, now: now}
	q.oauth = newOAuthServer(oauthOptions{
		clientID: o.ClientID, clientSecret: o.ClientSecret, prefix: "qb", scope: "com.intuit.quickbooks.accounting",
		accessTTL: o.AccessTTL, refreshTTL: o.RefreshTTL, rotatedGrace: o.RotatedRefreshGrace, now: now,
		subject: func(_, redirect url.Values) (string, error) {
			redirect.Set("realmId", o.Realms[0])
			return o.Realms[0], nil
		},
	})
	q.resetState()
	q.Kit = NewKit(KitOptions{
		Name:  quickBooksName,
		Title: "QuickBooks Online (Accounting API v3, under /quickbooks/v3/company/{realmId}; OAuth under /quickbooks/oauth2 and /quickbooks/connect)",
		Note:  "Each company's books, newest first. The buttons record a customer's payment of an invoice, which sends the signed webhook (when webhooks are on).",
		Auth:  q.auth, ErrorBody: q.errorBody,
		Expired: func(w http.ResponseWriter, _ *http.Request) {
			q.writeXMLFault(w, http.StatusUnauthorized, "AUTHENTICATION", "3200", "message=AuthenticationFailed; errorCode=003200; statusCode=401", "Token expired")
		},
		Throttled: func(w http.ResponseWriter, _ *http.Request, _ time.Duration) {
			q.writeXMLFault(w, http.StatusTooManyRequests, "SERVICE", "3001", "message=ThrottleExceeded; errorCode=003001; statusCode=429", "The request limit was reached.  Try again later")
		},
		RateLimit: &RateLimit{
			Limit: o.Limit, Window: o.Window,
			Also: []RateWindow{{Limit: o.PerSecond, Window: time.Second}},
			// QuickBooks sends no rate-limit headers; this one names the bucket, which is
			// always empty, so nothing is sent.
			Headers: RateHeaders{Context: "X-Sandbox-RateLimit-Bucket"},
			Bucket:  q.bucket,
		},
		Webhooks: WebhookOptions{SignatureHeader: "intuit-signature", Delivery: o.Delivery},
		State:    q.state, Tables: q.tables, Reset: q.resetState, Now: now,
	})
	q.routes()
	return q
}

func (q *QuickBooks) resetState() {
	q.mu.Lock()
	q.realms = map[string]*qbRealm{}
	for _, id := range q.opts.Realms {
		q.realms[id] = newQBRealm(id)
	}
	q.minors = map[string]int{}
	q.replayed = 0
	q.hooks, q.delivs = q.opts.Webhooks, nil
	q.mu.Unlock()
	q.oauth.reset()
}

// newQBRealm is a company with its chart of accounts.
func newQBRealm(id string) *qbRealm {
	r := &qbRealm{id: id, objects: map[string][]QBObject{}, docNum: 1000, replays: map[string]qbAnswer{}}
	for _, a := range []struct{ name, typ, sub string }{
		{"Services", "Income", "ServiceFeeIncome"},
		{"Commissions & fees", "Expense", "OtherMiscellaneousServiceCost"},
		{"Undeposited Funds", "Other Current Asset", "UndepositedFunds"},
	} {
		r.add(QBAccount, QBObject{"Name": a.name, "AccountType": a.typ, "AccountSubType": a.sub, "Active": true}, time.Unix(0, 0))
	}
	return r
}

func (r *qbRealm) add(entity string, o QBObject, now time.Time) QBObject {
	r.lastID++
	o["Id"] = strconv.Itoa(r.lastID)
	o["SyncToken"] = "0"
	stamp := now.UTC().Format(time.RFC3339)
	o["MetaData"] = map[string]any{"CreateTime": stamp, "LastUpdatedTime": stamp}
	r.objects[entity] = append(r.objects[entity], o)
	return o
}

func (r *qbRealm) find(entity, id string) QBObject {
	for _, o := range r.objects[entity] {
		if o.String("Id") == id {
			return o
		}
	}
	return nil
}

// IssueTokens grants a new pair of tokens for realm, as consent does: for tests and the
// all-in-one, which skip the browser.
func (q *QuickBooks) IssueTokens(realm string) OAuthTokens { return q.oauth.issue(realm) }

// ExpireAccessTokens makes every access token expired now, as an hour passing would.
func (q *QuickBooks) ExpireAccessTokens() { q.oauth.expireAccess() }

// RevokeRefreshTokens makes every refresh token answer invalid_grant, as a user who
// disconnects the app does.
func (q *QuickBooks) RevokeRefreshTokens() { q.oauth.revokeRefresh() }

// TokenCounts are the access tokens valid now, and the refreshes granted.
func (q *QuickBooks) TokenCounts() (valid, refreshes int) { return q.oauth.counts() }

// Objects returns a copy of realm's objects of entity, in id order.
func (q *QuickBooks) Objects(realm, entity string) []QBObject {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.realms[realm]
	if r == nil {
		return nil
	}
	out := make([]QBObject, len(r.objects[entity]))
	for i, o := range r.objects[entity] {
		out[i] = o.clone()
	}
	return out
}

// Add creates an object as a person in QuickBooks would, without the API's checks (a test
// seeds an Employee, or a Customer whose name a booking will clash with).
func (q *QuickBooks) Add(realm, entity string, o QBObject) (QBObject, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.realms[realm]
	if r == nil || !slices.Contains(qbEntities, entity) {
		return nil, fmt.Errorf("no realm %q or entity %q: %w", realm, entity, errNotFound)
	}
	o = o.clone()
	if _, ok := o["Active"]; !ok {
		o["Active"] = true
	}
	return r.add(entity, o, q.now()).clone(), nil
}

// SetActive makes an object active or inactive, as a person in QuickBooks does.
func (q *QuickBooks) SetActive(realm, entity, id string, active bool) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	r := q.realms[realm]
	if r == nil {
		return fmt.Errorf("realm %q: %w", realm, errNotFound)
	}
	o := r.find(entity, id)
	if o == nil {
		return fmt.Errorf("%s %s: %w", entity, id, errNotFound)
	}
	o["Active"] = active
	bumpSyncToken(o, q.now())
	return nil
}

func bumpSyncToken(o QBObject, now time.Time) {
	n, _ := strconv.Atoi(o.String("SyncToken"))
	o["SyncToken"] = strconv.Itoa(n + 1)
	if m, ok := o["MetaData"].(map[string]any); ok {
		m["LastUpdatedTime"] = now.UTC().Format(time.RFC3339)
	}
}

// Replayed is how many calls a requestid answered with an earlier answer.
func (q *QuickBooks) Replayed() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.replayed
}

// MinorVersions counts the calls by the minorversion they asked for ("" for none).
func (q *QuickBooks) MinorVersions() map[string]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[string]int, len(q.minors))
	for k, v := range q.minors {
		out[k] = v
	}
	return out
}

// qbFault is one error of a Fault.
type qbFault struct {
	status  int
	typ     string
	code    string
	message string
	detail  string
	element string
}

func (f *qbFault) Error() string { return f.code + " " + f.message + ": " + f.detail }

func faultDuplicateName() *qbFault {
	return &qbFault{http.StatusBadRequest, "ValidationFault", "6240", "Duplicate Name Exists Error",
		"The name supplied already exists. : Another customer, vendor or employee is already using this name. Please use a different name.", ""}
}

func faultStale() *qbFault {
	return &qbFault{http.StatusBadRequest, "ValidationFault", "5010", "Stale Object Error",
		"Stale Object Error : You and Sandbox User were working on this at the same time. Sandbox User finished before you did, so your work was not saved.", ""}
}

func faultNotFound() *qbFault {
	return &qbFault{http.StatusBadRequest, "ValidationFault", "610", "Object Not Found",
		"Object Not Found : Something you're trying to use has been made inactive. Check the fields with accounts, customers, items, vendors or employees.", ""}
}

func faultInvalidRef(element string) *qbFault {
	return &qbFault{http.StatusBadRequest, "ValidationFault", "2500", "Invalid Reference Id",
		"Invalid Reference Id : Something you're trying to use has been made inactive. Check the fields with accounts, customers, items, vendors or employees.", element}
}

func faultRequired(element string) *qbFault {
	return &qbFault{http.StatusBadRequest, "ValidationFault", "2020", "Required param missing, need to supply the required value for the API",
		"Required parameter " + element + " is missing in the request", element}
}

func faultInvalid(detail string) *qbFault {
	return &qbFault{http.StatusBadRequest, "ValidationFault", "2010", "Request has invalid or unsupported property", detail, ""}
}

// qbFaultBody is the JSON Fault envelope.
func (q *QuickBooks) qbFaultBody(f *qbFault) any {
	type qbError struct {
		Message string `json:"Message"`
		Detail  string `json:"Detail"`
		Code    string `json:"code"`
		Element string `json:"element"`
	}
	return struct {
		Fault struct {
			Error []qbError `json:"Error"`
			Type  string    `json:"type"`
		} `json:"Fault"`
		Time string `json:"time"`
	}{Fault: struct {
		Error []qbError `json:"Error"`
		Type  string    `json:"type"`
	}{Error: []qbError{{f.message, f.detail, f.code, f.element}}, Type: f.typ}, Time: q.stamp()}
}

func (q *QuickBooks) stamp() string { return q.now().Format("2006-01-02T15:04:05.000-07:00") }

// errorBody is the Fault for the kit's own answers (a path not emulated, an injected fault).
func (q *QuickBooks) errorBody(status int, message string) any {
	f := &qbFault{status: status, typ: "ValidationFault", code: "2010", message: message, detail: message}
	switch {
	case status == http.StatusNotFound:
		f.code, f.message = "500", "Unsupported Operation"
	case status == http.StatusUnauthorized:
		f.typ, f.code = "AUTHENTICATION", "3200"
	case status >= 500:
		f.typ, f.code = "SystemFault", "10000"
	}
	return q.qbFaultBody(f)
}

// writeXMLFault answers with the XML Fault Intuit sends for authentication and throttling,
// whatever the client asked for.
func (q *QuickBooks) writeXMLFault(w http.ResponseWriter, status int, typ, code, message, detail string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="%s">
  <Fault type="%s">
    <Error code="%s">
      <Message>%s</Message>
      <Detail>%s</Detail>
    </Error>
  </Fault>
</IntuitResponse>
`, q.stamp(), typ, code, message, detail)
}

// state is every company's books and the token counts.
func (q *QuickBooks) state() any {
	q.mu.Lock()
	type realmState struct {
		ID      string                `json:"realmId"`
		Objects map[string][]QBObject `json:"objects"`
	}
	var realms []realmState
	for _, id := range q.opts.Realms {
		r := q.realms[id]
		rs := realmState{ID: id, Objects: map[string][]QBObject{}}
		for _, e := range qbEntities {
			objs := make([]QBObject, len(r.objects[e]))
			for i, o := range r.objects[e] {
				objs[i] = o.clone()
			}
			rs.Objects[e] = objs
		}
		realms = append(realms, rs)
	}
	minors := make(map[string]int, len(q.minors))
	for k, v := range q.minors {
		minors[k] = v
	}
	replayed := q.replayed
	hooks := q.hooks
	delivs := make([]qbDelivery, len(q.delivs))
	for i, d := range q.delivs {
		delivs[i] = *d
	}
	q.mu.Unlock()
	grants, refreshes := q.oauth.stats()
	return struct {
		Realms        []realmState   `json:"realms"`
		Grants        int            `json:"tokenGrants"`
		Refreshes     int            `json:"tokenRefreshes"`
		MinorVersions map[string]int `json:"minorVersionsAsked"`
		Replayed      int            `json:"requestIdReplays"`
		Webhooks      QBWebhooks     `json:"webhooks"`
		Deliveries    []qbDelivery   `json:"deliveries"`
	}{realms, grants, refreshes, minors, replayed, hooks, delivs}
}

// tables show each company's documents, parties and items, newest first.
func (q *QuickBooks) tables() []PageTable {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []PageTable
	for _, id := range q.opts.Realms {
		r := q.realms[id]
		name := func(entity, ref string) string {
			if o := r.find(entity, ref); o != nil {
				return cmp.Or(o.String("DisplayName"), o.String("Name"))
			}
			return ref
		}
		docs := PageTable{Title: "Company " + id + ": invoices, sales receipts and bills", Columns: []string{"type", "id", "number", "date", "customer / vendor", "agent", "property", "lines", "total", "balance"}, ActionsColumn: "record a payment"}
		for _, e := range []string{QBInvoice, QBSalesReceipt, QBBill} {
			for _, o := range slices.Backward(r.objects[e]) {
				party := name(QBCustomer, o.Ref("CustomerRef"))
				if e == QBBill {
					party = name(QBVendor, o.Ref("VendorRef"))
				}
				agent := name(QBClass, o.Ref("ClassRef"))
				for _, cf := range customFields(o) {
					agent = strings.TrimSpace(agent + " " + cf)
				}
				var lines []string
				for _, l := range o.Lines() {
					lines = append(lines, fmt.Sprintf("%v %s", l["Description"], money(qbCents(l["Amount"]))))
				}
				addr, _ := o["ShipAddr"].(map[string]any)
				balance := ""
				var actions []PageAction
				if e == QBInvoice {
					balance = money(o.Cents("Balance"))
					if b := o.Cents("Balance"); b > 0 {
						act := "/_sandbox/quickbooks/realms/" + id + "/invoices/" + o.String("Id") + "/payments"
						actions = append(actions, PageAction{Action: act, Fields: map[string]string{"amount": fmt.Sprintf("%.2f", float64(b/2)/100)}, Label: "Half (" + money(b/2) + ")"},
							PageAction{Action: act, Fields: map[string]string{"amount": ""}, Label: "The balance (" + money(b) + ")"})
					}
				}
				docs.Rows = append(docs.Rows, []string{e, o.String("Id"), o.String("DocNumber"), o.String("TxnDate"), party, agent,
					fmt.Sprint(cmp.Or(addr["Line1"], any(""))), strings.Join(lines, "; "), money(o.Cents("TotalAmt")), balance})
				docs.RowActions = append(docs.RowActions, actions)
			}
		}
		parties := PageTable{Title: "Company " + id + ": customers, vendors, items and classes", Columns: []string{"type", "id", "name", "email", "active"}}
		for _, e := range []string{QBCustomer, QBVendor, QBEmployee, QBItem, QBClass} {
			for _, o := range slices.Backward(r.objects[e]) {
				email, _ := o["PrimaryEmailAddr"].(map[string]any)
				parties.Rows = append(parties.Rows, []string{e, o.String("Id"), cmp.Or(o.String("DisplayName"), o.String("Name")),
					fmt.Sprint(cmp.Or(email["Address"], any(""))), strconv.FormatBool(o.Active())})
			}
		}
		pays := PageTable{Title: "Company " + id + ": payments", Columns: []string{"id", "date", "customer", "total", "applied to"}}
		for _, o := range slices.Backward(r.objects[QBPayment]) {
			var to []string
			for _, l := range o.Lines() {
				links, _ := l["LinkedTxn"].([]any)
				for _, x := range links {
					m, _ := x.(map[string]any)
					to = append(to, fmt.Sprintf("%v %v: %s", m["TxnType"], m["TxnId"], money(qbCents(l["Amount"]))))
				}
			}
			pays.Rows = append(pays.Rows, []string{o.String("Id"), o.String("TxnDate"), name(QBCustomer, o.Ref("CustomerRef")), money(o.Cents("TotalAmt")), strings.Join(to, "; ")})
		}
		out = append(out, docs, pays, parties)
	}
	hooks := PageTable{Title: fmt.Sprintf("Webhooks (%s format to %s, on: %t)", q.hooks.Format, cmp.Or(q.hooks.URL, "no URL"), q.hooks.Enabled), Columns: []string{"entities", "format", "state", "attempts", "last status", "last error"}}
	for _, d := range slices.Backward(q.delivs) {
		hooks.Rows = append(hooks.Rows, []string{strings.Join(d.Entities, "; "), d.Format, d.State, strconv.Itoa(d.Attempts), strconv.Itoa(d.LastStatus), d.LastError})
	}
	return append(out, hooks)
}

func customFields(o QBObject) []string {
	arr, _ := o["CustomField"].([]any)
	var out []string
	for _, c := range arr {
		if m, ok := c.(map[string]any); ok && m["StringValue"] != nil {
			out = append(out, fmt.Sprintf("%v: %v", m["Name"], m["StringValue"]))
		}
	}
	return out
}

func money(cents int64) string {
	sign := ""
	if cents < 0 {
		sign, cents = "-", -cents
	}
	return fmt.Sprintf("%s$%d.%02d", sign, cents/100, cents%100)
}
