package sandbox_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// hookSink is the app's webhook endpoint: it keeps each body with its intuit-signature.
type hookSink struct {
	mu     sync.Mutex
	bodies []string
	sigs   []string
}

func newHookSink(t *testing.T) (*hookSink, *httptest.Server) {
	t.Helper()
	s := &hookSink{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.bodies, s.sigs = append(s.bodies, string(b)), append(s.sigs, r.Header.Get("intuit-signature"))
		s.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return s, srv
}

func (s *hookSink) wait(t *testing.T, n int) ([]string, []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		if len(s.bodies) >= n {
			defer s.mu.Unlock()
			return append([]string(nil), s.bodies...), append([]string(nil), s.sigs...)
		}
		s.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d webhooks arrived", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// qbInvoice makes a customer, an item and a $1,000.00 invoice through the API, and returns the
// invoice.
func (e *env) qbInvoice(t *testing.T, token string) sandbox.QBObject {
	t.Helper()
	qb := e.sb.QuickBooks()
	c, err := qb.Add(qbRealm, sandbox.QBCustomer, sandbox.QBObject{"DisplayName": "Ada Buyer"})
	if err != nil {
		t.Fatal(err)
	}
	acct := qb.Objects(qbRealm, sandbox.QBAccount)[0]
	it, err := qb.Add(qbRealm, sandbox.QBItem, sandbox.QBObject{"Name": "Commission income", "Type": "Service", "IncomeAccountRef": map[string]any{"value": acct.String("Id")}})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"CustomerRef":{"value":"` + c.String("Id") + `"},"Line":[{"Amount":1000,"DetailType":"SalesItemLineDetail","SalesItemLineDetail":{"ItemRef":{"value":"` + it.String("Id") + `"},"Qty":1,"UnitPrice":1000}}]}`
	inv := e.qb(t, http.MethodPost, "/invoice?minorversion=75", token, body).want(t, http.StatusOK).qbObject(t, sandbox.QBInvoice)
	if inv.Cents("Balance") != 100000 {
		t.Fatalf("a new invoice's balance is its total: %v", inv["Balance"])
	}
	return inv
}

// TestQuickBooks_paymentsLowerTheBalanceAndSendSignedWebhooks: a payment through the API and one
// through the page's knob each lower the invoice's balance, refuse more than it, and send one
// signed webhook naming the Payment and the Invoice, in the legacy format and then in
// CloudEvents; with webhooks off, nothing is sent.
func TestQuickBooks_paymentsLowerTheBalanceAndSendSignedWebhooks(t *testing.T) {
	t.Parallel()
	sink, hooks := newHookSink(t)
	e := newEnv(t, sandbox.Options{QuickBooks: sandbox.QuickBooksOptions{Webhooks: sandbox.QBWebhooks{URL: hooks.URL, VerifierToken: "vt-1"}}})
	tok := e.sb.QuickBooks().IssueTokens(qbRealm).AccessToken
	inv := e.qbInvoice(t, tok)
	id, cust := inv.String("Id"), inv.Ref("CustomerRef")

	pay := `{"CustomerRef":{"value":"` + cust + `"},"TotalAmt":400,"TxnDate":"2026-03-01","Line":[{"Amount":400,"LinkedTxn":[{"TxnId":"` + id + `","TxnType":"Invoice"}]}]}`
	p := e.qb(t, http.MethodPost, "/payment?minorversion=75", tok, pay).want(t, http.StatusOK).qbObject(t, sandbox.QBPayment)
	if p.Cents("TotalAmt") != 40000 || p.String("TxnDate") != "2026-03-01" {
		t.Fatalf("payment %v", p)
	}
	got := e.qb(t, http.MethodGet, "/invoice/"+id, tok, "").want(t, http.StatusOK).qbObject(t, sandbox.QBInvoice)
	if got.Cents("Balance") != 60000 {
		t.Fatalf("balance after $400 of $1,000: %v", got["Balance"])
	}
	over := strings.Replace(pay, `"Amount":400`, `"Amount":600.01`, 1)
	over = strings.Replace(over, `"TotalAmt":400`, `"TotalAmt":700`, 1)
	if code := e.qb(t, http.MethodPost, "/payment", tok, over).want(t, http.StatusBadRequest).qbFaultCode(t); code != "2010" {
		t.Fatalf("a payment over the balance: fault %s", code)
	}
	noTotal := `{"CustomerRef":{"value":"` + cust + `"},"Line":[]}`
	if code := e.qb(t, http.MethodPost, "/payment", tok, noTotal).want(t, http.StatusBadRequest).qbFaultCode(t); code != "2020" {
		t.Fatalf("a payment without TotalAmt: fault %s", code)
	}

	page := string(e.do(t, request{method: http.MethodGet, path: "/", auth: authNone}).want(t, http.StatusOK).body)
	for _, want := range []string{"/_sandbox/quickbooks/realms/" + qbRealm + "/invoices/" + id + "/payments", "Half ($300.00)", "The balance ($600.00)", "Payment " + p.String("Id") + " Create"} {
		if !strings.Contains(page, want) {
			t.Fatalf("the page lacks %q", want)
		}
	}
	bodies, sigs := sink.wait(t, 1)
	if sigs[0] != sandbox.SignQuickBooks("vt-1", []byte(bodies[0])) {
		t.Fatalf("signature %q does not sign the body with the verifier token", sigs[0])
	}
	var legacy struct {
		EventNotifications []struct {
			RealmID         string `json:"realmId"`
			DataChangeEvent struct {
				Entities []struct{ Name, ID, Operation string }
			}
		}
	}
	if err := json.Unmarshal([]byte(bodies[0]), &legacy); err != nil || len(legacy.EventNotifications) != 1 {
		t.Fatalf("legacy body %s (%v)", bodies[0], err)
	}
	ents := legacy.EventNotifications[0].DataChangeEvent.Entities
	if legacy.EventNotifications[0].RealmID != qbRealm || len(ents) != 2 || ents[0].Name != "Payment" || ents[0].ID != p.String("Id") || ents[0].Operation != "Create" ||
		ents[1].Name != "Invoice" || ents[1].ID != id || ents[1].Operation != "Update" {
		t.Fatalf("legacy body names %+v", legacy)
	}

	e.do(t, request{method: http.MethodPost, path: "/_sandbox/quickbooks/webhooks", auth: authNone, body: "format=cloudevents",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}).want(t, http.StatusOK)
	r := e.do(t, request{method: http.MethodPost, path: "/_sandbox/quickbooks/realms/" + qbRealm + "/invoices/" + id + "/payments", auth: authNone,
		body: "", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}).want(t, http.StatusOK)
	if second := r.qbObject(t, sandbox.QBPayment); second.Cents("TotalAmt") != 60000 {
		t.Fatalf("the knob without an amount pays the balance: %v", second)
	}
	if got := e.sb.QuickBooks().Objects(qbRealm, sandbox.QBInvoice)[0]; got.Cents("Balance") != 0 {
		t.Fatalf("balance after paying the rest: %v", got["Balance"])
	}
	bodies, sigs = sink.wait(t, 2)
	var ces []struct {
		SpecVersion string `json:"specversion"`
		Type        string `json:"type"`
		EntityID    string `json:"intuitentityid"`
		AccountID   string `json:"intuitaccountid"`
		ID          string `json:"id"`
	}
	if err := json.Unmarshal([]byte(bodies[1]), &ces); err != nil || len(ces) != 2 || ces[0].Type != "qbo.payment.created.v1" || ces[1].Type != "qbo.invoice.updated.v1" ||
		ces[1].EntityID != id || ces[0].AccountID != qbRealm || ces[0].SpecVersion != "1.0" || ces[0].ID == "" {
		t.Fatalf("cloudevents body %s (%v)", bodies[1], err)
	}
	if sigs[1] != sandbox.SignQuickBooks("vt-1", []byte(bodies[1])) {
		t.Fatal("the CloudEvents body is not signed")
	}

	e.do(t, request{method: http.MethodPost, path: "/_sandbox/quickbooks/webhooks", auth: authNone, body: "enabled=false",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}).want(t, http.StatusOK)
	inv2 := e.qb(t, http.MethodPost, "/invoice", tok, `{"CustomerRef":{"value":"`+cust+`"},"Line":[{"Amount":10,"DetailType":"SalesItemLineDetail","SalesItemLineDetail":{"ItemRef":{"value":"`+inv.Lines()[0]["SalesItemLineDetail"].(map[string]any)["ItemRef"].(map[string]any)["value"].(string)+`"}}}]}`).want(t, http.StatusOK).qbObject(t, sandbox.QBInvoice)
	if _, err := e.sb.QuickBooks().RecordPayment(qbRealm, inv2.String("Id"), 0, ""); err != nil {
		t.Fatal(err)
	}
	if n := len(e.sb.QuickBooks().Deliveries()); n != 2 {
		t.Fatalf("webhooks off still sent: %d deliveries", n)
	}
}

// TestQuickBooks_changeDataCapture: cdc answers the entities changed at or after changedSince in
// Intuit's CDCResponse shape, and refuses to look back more than 30 days.
func TestQuickBooks_changeDataCapture(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	tok := e.sb.QuickBooks().IssueTokens(qbRealm).AccessToken
	inv := e.qbInvoice(t, tok)
	e.clock.Advance(10 * time.Minute)
	since := e.clock.Now()
	p, err := e.sb.QuickBooks().RecordPayment(qbRealm, inv.String("Id"), 25000, "2026-03-02")
	if err != nil {
		t.Fatal(err)
	}
	cdc := func(since time.Time) response {
		return e.qb(t, http.MethodGet, "/cdc?entities=Payment,Invoice&minorversion=75&changedSince="+url.QueryEscape(since.Format(time.RFC3339)), tok, "")
	}
	var out struct {
		CDCResponse []struct {
			QueryResponse []map[string]json.RawMessage
		}
	}
	r := cdc(since).want(t, http.StatusOK)
	if err := json.Unmarshal(r.body, &out); err != nil || len(out.CDCResponse) != 1 || len(out.CDCResponse[0].QueryResponse) != 2 {
		t.Fatalf("cdc answer %s (%v)", r.body, err)
	}
	var pays, invs []sandbox.QBObject
	_ = json.Unmarshal(out.CDCResponse[0].QueryResponse[0]["Payment"], &pays)
	_ = json.Unmarshal(out.CDCResponse[0].QueryResponse[1]["Invoice"], &invs)
	if len(pays) != 1 || pays[0].String("Id") != p.String("Id") || len(invs) != 1 || invs[0].Cents("Balance") != 75000 {
		t.Fatalf("changed since the payment: payments %v, invoices %v", pays, invs)
	}
	e.clock.Advance(time.Minute)
	r = cdc(e.clock.Now()).want(t, http.StatusOK)
	if strings.Contains(string(r.body), `"Payment"`) {
		t.Fatalf("nothing changed since: %s", r.body)
	}
	if code := cdc(e.clock.Now().Add(-31*24*time.Hour)).want(t, http.StatusBadRequest).qbFaultCode(t); code != "4001" {
		t.Fatalf("31 days back: fault %s", code)
	}
}
