package sandbox_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

const qbRealm = sandbox.DefaultQuickBooksRealm

// qb sends one call to the company's API with token.
func (e *env) qb(t *testing.T, method, path, token, body string) response {
	t.Helper()
	return e.dl(t, method, "/quickbooks/v3/company/"+qbRealm+path, token, body)
}

// qbToken posts a grant to QuickBooks' token endpoint with the default client, as a form.
func (e *env) qbToken(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+"/quickbooks/oauth2/v1/tokens/bearer", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(sandbox.DefaultQuickBooksClientID, sandbox.DefaultQuickBooksClientSecret)
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (r response) qbObject(t *testing.T, entity string) sandbox.QBObject {
	t.Helper()
	var out map[string]json.RawMessage
	var o sandbox.QBObject
	if err := json.Unmarshal(r.body, &out); err != nil || json.Unmarshal(out[entity], &o) != nil || o == nil {
		t.Fatalf("answer %s has no %s (%v)", r.body, entity, err)
	}
	return o
}

func (r response) qbFaultCode(t *testing.T) string {
	t.Helper()
	var f struct {
		Fault struct {
			Error []struct {
				Code string `json:"code"`
			}
		}
	}
	if err := json.Unmarshal(r.body, &f); err != nil || len(f.Fault.Error) == 0 {
		t.Fatalf("answer %s is not a Fault (%v)", r.body, err)
	}
	return f.Fault.Error[0].Code
}

var qbTime = regexp.MustCompile(`time="[^"]*"|"time":"[^"]*"`)

// matchQBGolden compares got with testdata/quickbooks/name: equal but for the time, which must
// be Intuit's format.
func matchQBGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	want, err := os.ReadFile(filepath.Join("testdata", "quickbooks", name))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range qbTime.FindAll(got, -1) {
		v := regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d`)
		if !v.Match(m) {
			t.Fatalf("time %s is not Intuit's format", m)
		}
	}
	norm := func(b []byte) string {
		return strings.TrimSpace(qbTime.ReplaceAllStringFunc(string(b), func(m string) string {
			if strings.HasPrefix(m, "time=") {
				return `time="T"`
			}
			return `"time":"T"`
		}))
	}
	if strings.HasSuffix(name, ".json") {
		var w, h any
		if json.Unmarshal([]byte(norm(want)), &w) != nil || json.Unmarshal([]byte(norm(got)), &h) != nil || !reflect.DeepEqual(w, h) {
			t.Fatalf("answer does not match %s:\n got %s\nwant %s", name, got, want)
		}
		return
	}
	if norm(want) != norm(got) {
		t.Fatalf("answer does not match %s:\n got %s\nwant %s", name, got, want)
	}
}

// TestQuickBooks_consentRefreshRotationAndGrace: consent redirects with a code and the realm
// id; the code gives an hour's tokens; a refresh rotates the refresh token, and the old one still
// works for the grace period (24 hours by default), then answers invalid_grant.
func TestQuickBooks_consentRefreshRotationAndGrace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	q := url.Values{"response_type": {"code"}, "client_id": {sandbox.DefaultQuickBooksClientID}, "redirect_uri": {"http://127.0.0.1:5555/cb"}, "state": {"s1"}, "scope": {"com.intuit.quickbooks.accounting"}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/quickbooks/connect/oauth2?"+q.Encode(), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Query().Get("realmId") != qbRealm || loc.Query().Get("code") == "" || loc.Query().Get("state") != "s1" {
		t.Fatalf("consent: %d %s", resp.StatusCode, loc)
	}
	status, tok := e.qbToken(t, url.Values{"grant_type": {"authorization_code"}, "code": {loc.Query().Get("code")}, "redirect_uri": {"http://127.0.0.1:5555/cb"}})
	if status != http.StatusOK || tok["expires_in"] != float64(3600) || tok["x_refresh_token_expires_in"] == nil {
		t.Fatalf("code grant: %d %v", status, tok)
	}
	access, refresh := tok["access_token"].(string), tok["refresh_token"].(string)
	e.qb(t, http.MethodGet, "/query?query="+url.QueryEscape("select * from Customer"), access, "").want(t, http.StatusOK)

	e.do(t, request{method: http.MethodPost, path: "/_sandbox/quickbooks/tokens/expire", auth: authNone}).want(t, http.StatusNoContent)
	r := e.qb(t, http.MethodGet, "/query?query="+url.QueryEscape("select * from Customer"), access, "").want(t, http.StatusUnauthorized)
	if !strings.Contains(string(r.body), `<Error code="3200">`) {
		t.Fatalf("expired token answer %s", r.body)
	}

	status, next := e.qbToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}})
	if status != http.StatusOK || next["refresh_token"] == refresh || next["refresh_token"] == "" {
		t.Fatalf("refresh: %d %v", status, next)
	}
	e.qb(t, http.MethodGet, "/query?query="+url.QueryEscape("select * from Customer"), next["access_token"].(string), "").want(t, http.StatusOK)
	// Within the grace period the rotated token still works …
	e.clock.Advance(23 * time.Hour)
	if status, again := e.qbToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); status != http.StatusOK {
		t.Fatalf("rotated token within the grace period: %d %v", status, again)
	}
	// … and not after it.
	e.clock.Advance(2 * time.Hour)
	if status, again := e.qbToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refresh}}); status != http.StatusBadRequest || again["error"] != "invalid_grant" {
		t.Fatalf("rotated token after the grace period: %d %v", status, again)
	}
	// The revoke knob refuses every refresh token.
	e.do(t, request{method: http.MethodPost, path: "/_sandbox/quickbooks/tokens/revoke", auth: authNone}).want(t, http.StatusNoContent)
	if status, again := e.qbToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next["refresh_token"].(string)}}); status != http.StatusBadRequest || again["error"] != "invalid_grant" {
		t.Fatalf("revoked: %d %v", status, again)
	}
}

// TestQuickBooks_noGraceRefusesARotatedTokenAtOnce: with the grace knob off, a refresh token
// works once.
func TestQuickBooks_noGraceRefusesARotatedTokenAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{QuickBooks: sandbox.QuickBooksOptions{RotatedRefreshGrace: -1}})
	tok := e.sb.QuickBooks().IssueTokens(qbRealm)
	if status, _ := e.qbToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}); status != http.StatusOK {
		t.Fatalf("first refresh: %d", status)
	}
	if status, again := e.qbToken(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}); status != http.StatusBadRequest || again["error"] != "invalid_grant" {
		t.Fatalf("second refresh: %d %v", status, again)
	}
}

// TestQuickBooks_tokenOfAnotherCompanyIsRefused: a token is bound to its company.
func TestQuickBooks_tokenOfAnotherCompanyIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{QuickBooks: sandbox.QuickBooksOptions{Realms: []string{qbRealm, "4620816365"}}})
	tok := e.sb.QuickBooks().IssueTokens("4620816365").AccessToken
	r := e.qb(t, http.MethodGet, "/customer/1", tok, "").want(t, http.StatusForbidden)
	if !strings.Contains(string(r.body), `<Error code="3100">`) {
		t.Fatalf("answer %s", r.body)
	}
}

// TestQuickBooks_requestIDReplaysTheOriginalAnswer: a create repeated with its requestid
// answers what the first answered and creates nothing, even with another body.
func TestQuickBooks_requestIDReplaysTheOriginalAnswer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	tok := e.sb.QuickBooks().IssueTokens(qbRealm).AccessToken
	first := e.qb(t, http.MethodPost, "/customer?requestid=r-1&minorversion=75", tok, `{"DisplayName":"Ada Lovelace"}`).want(t, http.StatusOK)
	again := e.qb(t, http.MethodPost, "/customer?requestid=r-1&minorversion=75", tok, `{"DisplayName":"Someone Else"}`).want(t, http.StatusOK)
	if string(first.body) != string(again.body) || first.qbObject(t, "Customer").String("DisplayName") != "Ada Lovelace" {
		t.Fatalf("first %s, again %s", first.body, again.body)
	}
	if n := len(e.sb.QuickBooks().Objects(qbRealm, sandbox.QBCustomer)); n != 1 || e.sb.QuickBooks().Replayed() != 1 {
		t.Fatalf("%d customers, %d replays", n, e.sb.QuickBooks().Replayed())
	}
	// Another requestid creates.
	e.qb(t, http.MethodPost, "/customer?requestid=r-2", tok, `{"DisplayName":"Someone Else"}`).want(t, http.StatusOK)
	// A fault is replayed too.
	e.qb(t, http.MethodPost, "/customer?requestid=r-3", tok, `{"DisplayName":"Ada Lovelace"}`).want(t, http.StatusBadRequest)
	if code := e.qb(t, http.MethodPost, "/customer?requestid=r-3", tok, `{"DisplayName":"New Name"}`).want(t, http.StatusBadRequest).qbFaultCode(t); code != "6240" {
		t.Fatalf("replayed fault %s", code)
	}
	if n := len(e.sb.QuickBooks().Objects(qbRealm, sandbox.QBCustomer)); n != 2 {
		t.Fatalf("%d customers, want 2", n)
	}
	e.qb(t, http.MethodPost, "/customer?requestid="+strings.Repeat("x", 51), tok, `{"DisplayName":"Long"}`).want(t, http.StatusBadRequest)
}

// TestQuickBooks_faultsMatchGoldenFixtures: 6240 for a display name another customer, vendor or
// employee has, 5010 for a stale SyncToken, 610 for an object that does not exist or is inactive.
func TestQuickBooks_faultsMatchGoldenFixtures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	qb := e.sb.QuickBooks()
	tok := qb.IssueTokens(qbRealm).AccessToken
	if _, err := qb.Add(qbRealm, sandbox.QBEmployee, sandbox.QBObject{"DisplayName": "Grace Hopper"}); err != nil {
		t.Fatal(err)
	}
	matchQBGolden(t, "duplicate_name_6240.json", e.qb(t, http.MethodPost, "/vendor", tok, `{"DisplayName":"grace hopper"}`).want(t, http.StatusBadRequest).body)

	c := e.qb(t, http.MethodPost, "/customer", tok, `{"DisplayName":"Ada Lovelace","PrimaryEmailAddr":{"Address":"ada@example.com"}}`).want(t, http.StatusOK).qbObject(t, "Customer")
	if c.String("SyncToken") != "0" {
		t.Fatalf("new customer %v", c)
	}
	upd := e.qb(t, http.MethodPost, "/customer", tok, `{"Id":"`+c.String("Id")+`","SyncToken":"0","sparse":true,"CompanyName":"Analytical Engines"}`).want(t, http.StatusOK).qbObject(t, "Customer")
	if upd.String("SyncToken") != "1" || upd.String("CompanyName") != "Analytical Engines" || upd.String("DisplayName") != "Ada Lovelace" {
		t.Fatalf("sparse update %v", upd)
	}
	matchQBGolden(t, "stale_object_5010.json", e.qb(t, http.MethodPost, "/customer", tok, `{"Id":"`+c.String("Id")+`","SyncToken":"0","sparse":true,"CompanyName":"Late"}`).want(t, http.StatusBadRequest).body)

	matchQBGolden(t, "object_not_found_610.json", e.qb(t, http.MethodGet, "/invoice/999", tok, "").want(t, http.StatusBadRequest).body)
	// A reference to an inactive customer is 610 too.
	if err := qb.SetActive(qbRealm, sandbox.QBCustomer, c.String("Id"), false); err != nil {
		t.Fatal(err)
	}
	item := e.qb(t, http.MethodPost, "/item", tok, `{"Name":"Commission income","Type":"Service","IncomeAccountRef":{"value":"1"}}`).want(t, http.StatusOK).qbObject(t, "Item")
	inv := `{"CustomerRef":{"value":"` + c.String("Id") + `"},"Line":[{"Amount":100,"DetailType":"SalesItemLineDetail","SalesItemLineDetail":{"ItemRef":{"value":"` + item.String("Id") + `"}}}]}`
	if code := e.qb(t, http.MethodPost, "/invoice", tok, inv).want(t, http.StatusBadRequest).qbFaultCode(t); code != "610" {
		t.Fatalf("invoice to an inactive customer: fault %s", code)
	}
	if code := e.qb(t, http.MethodPost, "/invoice", tok, strings.Replace(inv, `"ItemRef":{"value":"`+item.String("Id"), `"ItemRef":{"value":"77`, 1)).want(t, http.StatusBadRequest).qbFaultCode(t); code != "610" && code != "2500" {
		t.Fatalf("fault %s", code)
	}
}

// TestQuickBooks_throttleAnswersTheXMLFault: 10 calls a second and 500 a minute per company,
// whatever token calls; beyond, 429 with the XML ThrottleExceeded fault, unprocessed.
func TestQuickBooks_throttleAnswersTheXMLFault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	qb := e.sb.QuickBooks()
	tok := qb.IssueTokens(qbRealm).AccessToken
	for i := range 10 {
		e.qb(t, http.MethodPost, "/class", tok, `{"Name":"Agent `+string(rune('A'+i))+`"}`).want(t, http.StatusOK)
	}
	r := e.qb(t, http.MethodPost, "/class", tok, `{"Name":"One too many"}`).want(t, http.StatusTooManyRequests)
	if ct := r.header.Get("Content-Type"); !strings.Contains(ct, "xml") {
		t.Fatalf("content type %q", ct)
	}
	matchQBGolden(t, "throttle_429.xml", r.body)
	if n := len(qb.Objects(qbRealm, sandbox.QBClass)); n != 10 {
		t.Fatalf("%d classes: the throttled call was processed", n)
	}
	// Another token of the same company is throttled too.
	other := qb.IssueTokens(qbRealm).AccessToken
	e.qb(t, http.MethodGet, "/class/1", other, "").want(t, http.StatusTooManyRequests)

	// A second later, ten more; and so on until the minute's 500.
	calls := 10
	for calls < 500 {
		e.clock.Advance(time.Second)
		for range 10 {
			e.qb(t, http.MethodGet, "/query?query="+url.QueryEscape("select * from Class"), tok, "").want(t, http.StatusOK)
			calls++
		}
	}
	e.clock.Advance(time.Second)
	matchQBGolden(t, "throttle_429.xml", e.qb(t, http.MethodGet, "/class/1", tok, "").want(t, http.StatusTooManyRequests).body)
	if u := qb.Usage(); u.Counted != 500 || u.Refused != 3 {
		t.Fatalf("usage %+v", u)
	}
}

// TestQuickBooks_minorVersionBelow75IsIgnored: 4, none and 75 are answered alike.
func TestQuickBooks_minorVersionBelow75IsIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	qb := e.sb.QuickBooks()
	tok := qb.IssueTokens(qbRealm).AccessToken
	c := e.qb(t, http.MethodPost, "/customer?minorversion=4", tok, `{"DisplayName":"Ada"}`).want(t, http.StatusOK).qbObject(t, "Customer")
	var bodies []string
	for _, v := range []string{"?minorversion=4", "", "?minorversion=75"} {
		r := e.qb(t, http.MethodGet, "/customer/"+c.String("Id")+v, tok, "").want(t, http.StatusOK)
		bodies = append(bodies, qbTime.ReplaceAllString(string(r.body), ""))
	}
	if bodies[0] != bodies[1] || bodies[1] != bodies[2] {
		t.Fatalf("answers differ by minor version: %q", bodies)
	}
	if m := qb.MinorVersions(); m["4"] != 2 || m[""] != 1 || m["75"] != 1 {
		t.Fatalf("minor versions %v", m)
	}
}

// TestQuickBooks_queryFindsByEmailAndName: the lookups the adapter makes.
func TestQuickBooks_queryFindsByEmailAndName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	qb := e.sb.QuickBooks()
	tok := qb.IssueTokens(qbRealm).AccessToken
	e.qb(t, http.MethodPost, "/customer", tok, `{"DisplayName":"Ada Lovelace","PrimaryEmailAddr":{"Address":"ada@example.com"}}`).want(t, http.StatusOK)
	e.qb(t, http.MethodPost, "/customer", tok, `{"DisplayName":"Bill O'Hara"}`).want(t, http.StatusOK)
	gone := e.qb(t, http.MethodPost, "/customer", tok, `{"DisplayName":"Gone","PrimaryEmailAddr":{"Address":"gone@example.com"}}`).want(t, http.StatusOK).qbObject(t, "Customer")
	if err := qb.SetActive(qbRealm, sandbox.QBCustomer, gone.String("Id"), false); err != nil {
		t.Fatal(err)
	}
	e.qb(t, http.MethodPost, "/class", tok, `{"Name":"Grace Hopper"}`).want(t, http.StatusOK)
	find := func(query string) []sandbox.QBObject {
		t.Helper()
		e.clock.Advance(time.Second) // under the 10 a second
		r := e.qb(t, http.MethodGet, "/query?minorversion=75&query="+url.QueryEscape(query), tok, "").want(t, http.StatusOK)
		var out struct {
			QueryResponse map[string]json.RawMessage
		}
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		for k, v := range out.QueryResponse {
			if k != "startPosition" && k != "maxResults" && k != "totalCount" {
				var objs []sandbox.QBObject
				_ = json.Unmarshal(v, &objs)
				return objs
			}
		}
		return nil
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"select * from Customer where PrimaryEmailAddr = 'ADA@example.com'", []string{"Ada Lovelace"}},
		{"SELECT * FROM Customer WHERE DisplayName = 'Bill O\\'Hara'", []string{"Bill O'Hara"}},
		{"select * from Customer where PrimaryEmailAddr = 'gone@example.com'", nil},
		{"select * from Customer where PrimaryEmailAddr = 'gone@example.com' and Active = false", []string{"Gone"}},
		{"select * from Class where Name = 'Grace Hopper'", []string{"Grace Hopper"}},
		{"select * from Account where Name = 'Services'", []string{"Services"}},
		{"select * from Customer startposition 2 maxresults 1", []string{"Bill O'Hara"}},
	} {
		var names []string
		for _, o := range find(tc.query) {
			names = append(names, o.String("DisplayName")+o.String("Name"))
		}
		if !reflect.DeepEqual(names, tc.want) {
			t.Errorf("%s = %q, want %q", tc.query, names, tc.want)
		}
	}
	r := e.qb(t, http.MethodGet, "/query?query="+url.QueryEscape("select * from Customer where DisplayName = 'unclosed"), tok, "").want(t, http.StatusBadRequest)
	if !strings.Contains(string(r.body), "QueryParserError") {
		t.Fatalf("answer %s", r.body)
	}
}

// TestQuickBooks_documentsTotalNumberAndShowOnThePage: an invoice, a sales receipt and a bill get
// their totals, numbers and dates, and show in the state and on the page.
func TestQuickBooks_documentsTotalNumberAndShowOnThePage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	qb := e.sb.QuickBooks()
	tok := qb.IssueTokens(qbRealm).AccessToken
	c := e.qb(t, http.MethodPost, "/customer", tok, `{"DisplayName":"Ada Lovelace"}`).want(t, http.StatusOK).qbObject(t, "Customer")
	v := e.qb(t, http.MethodPost, "/vendor", tok, `{"DisplayName":"Grace Hopper"}`).want(t, http.StatusOK).qbObject(t, "Vendor")
	it := e.qb(t, http.MethodPost, "/item", tok, `{"Name":"Commission income","IncomeAccountRef":{"value":"1"}}`).want(t, http.StatusOK).qbObject(t, "Item")
	e.qb(t, http.MethodPost, "/item", tok, `{"Name":"No account"}`).want(t, http.StatusBadRequest)
	line := func(amount string) string {
		return `{"Amount":` + amount + `,"Description":"Agent share","DetailType":"SalesItemLineDetail","SalesItemLineDetail":{"ItemRef":{"value":"` + it.String("Id") + `"},"Qty":1}}`
	}
	inv := e.qb(t, http.MethodPost, "/invoice", tok, `{"CustomerRef":{"value":"`+c.String("Id")+`"},"ShipAddr":{"Line1":"12 Main St, Springfield"},"TxnDate":"2026-12-01","Line":[`+line("11025.00")+`,`+line("4725")+`]}`).want(t, http.StatusOK).qbObject(t, "Invoice")
	if inv.Cents("TotalAmt") != 1_575_000 || inv.String("DocNumber") != "1001" || inv.String("TxnDate") != "2026-12-01" {
		t.Fatalf("invoice %v", inv)
	}
	sr := e.qb(t, http.MethodPost, "/salesreceipt", tok, `{"CustomerRef":{"value":"`+c.String("Id")+`"},"Line":[`+line("10")+`]}`).want(t, http.StatusOK).qbObject(t, "SalesReceipt")
	if sr.String("DocNumber") != "1002" || sr.String("TxnDate") == "" {
		t.Fatalf("sales receipt %v", sr)
	}
	bill := e.qb(t, http.MethodPost, "/bill", tok, `{"VendorRef":{"value":"`+v.String("Id")+`"},"Line":[{"Amount":11025,"DetailType":"AccountBasedExpenseLineDetail","AccountBasedExpenseLineDetail":{"AccountRef":{"value":"2"}}}]}`).want(t, http.StatusOK).qbObject(t, "Bill")
	if bill.Cents("TotalAmt") != 1_102_500 {
		t.Fatalf("bill %v", bill)
	}
	e.qb(t, http.MethodPost, "/invoice", tok, `{"Line":[`+line("1")+`]}`).want(t, http.StatusBadRequest)
	e.qb(t, http.MethodPost, "/invoice", tok, `{"CustomerRef":{"value":"`+c.String("Id")+`"},"Line":[]}`).want(t, http.StatusBadRequest)

	state := e.do(t, request{method: http.MethodGet, path: "/_sandbox/quickbooks/state", auth: authNone}).want(t, http.StatusOK)
	var st struct {
		Realms []struct {
			RealmID string                      `json:"realmId"`
			Objects map[string][]map[string]any `json:"objects"`
		} `json:"realms"`
	}
	if err := json.Unmarshal(state.body, &st); err != nil || len(st.Realms) != 1 || len(st.Realms[0].Objects["Invoice"]) != 1 || len(st.Realms[0].Objects["Bill"]) != 1 {
		t.Fatalf("state %s (%v)", state.body, err)
	}
	page := string(e.do(t, request{method: http.MethodGet, path: "/", auth: authNone}).want(t, http.StatusOK).body)
	for _, want := range []string{"QuickBooks Online", "12 Main St, Springfield", "$15750.00", "Grace Hopper"} {
		if !strings.Contains(page, want) {
			t.Fatalf("the page lacks %q", want)
		}
	}
}

// FuzzQuickBooks_query: whatever the query, the endpoint answers 200 with a QueryResponse or 400
// with a Fault, and never fails otherwise.
func FuzzQuickBooks_query(f *testing.F) {
	for _, s := range []string{
		"select * from Customer where PrimaryEmailAddr = 'ada@example.com'",
		"SELECT * FROM Item WHERE Name = 'Commission income' maxresults 10",
		"select count(*) from Invoice",
		"select * from Customer where DisplayName = 'O\\'Hara' and Active = false startposition 2",
		"select * from Customer where DisplayName = 'unclosed",
		"select Id from Nothing",
		"",
	} {
		f.Add(s)
	}
	// No throttle in the way.
	sb := sandbox.New(sandbox.Options{QuickBooks: sandbox.QuickBooksOptions{Limit: 1 << 30, PerSecond: 1 << 30}})
	tok := sb.QuickBooks().IssueTokens(qbRealm).AccessToken
	f.Fuzz(func(t *testing.T, query string) {
		req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/quickbooks/v3/company/"+qbRealm+"/query?query="+url.QueryEscape(query), nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		sb.Handler().ServeHTTP(rec, req)
		var body map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%q: answer %d is not JSON: %s", query, rec.Code, rec.Body)
		}
		switch {
		case rec.Code == http.StatusOK && body["QueryResponse"] != nil:
		case rec.Code == http.StatusBadRequest && body["Fault"] != nil:
		default:
			t.Fatalf("%q: answer %d %s", query, rec.Code, rec.Body)
		}
	})
}
