package ledgertest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// ThrottleXML is QuickBooks Online's throttle fault, as Intuit sends it
// (XML, whatever the client asked for).
const ThrottleXML = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2026-03-02T07:04:05.123-08:00">
  <Fault type="SERVICE">
    <Error code="3001">
      <Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>
      <Detail>The request limit was reached.  Try again later</Detail>
    </Error>
  </Fault>
</IntuitResponse>`

// QuickBooksConfig is the adapter configuration for the QuickBooks Online
// of the sandbox at base.
func QuickBooksConfig(base string) quickbooks.Config {
	return quickbooks.Config{
		BaseURL: base + "/quickbooks", AuthURL: base + "/quickbooks/connect/oauth2", TokenURL: base + "/quickbooks/oauth2/v1/tokens/bearer",
		ClientID: sandbox.DefaultQuickBooksClientID, ClientSecret: sandbox.DefaultQuickBooksClientSecret, Timeout: 10 * time.Second,
	}
}

// ConnectQuickBooks stores a fresh pair of the sandbox company's tokens
// and its realm id in store, as `brokerflow connect quickbooks` does.
func ConnectQuickBooks(t testing.TB, q *sandbox.QuickBooks, realm string, store *oauth.Store) {
	t.Helper()
	tok := q.IssueTokens(realm)
	err := store.Save(natstest.Context(t, 10*time.Second), (&oauth2.Token{
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType,
		Expiry: time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second),
	}).WithExtra(map[string]any{"realmId": realm}))
	if err != nil {
		t.Fatal(err)
	}
}

// QuickBooksEnv is a sandbox over real HTTP, an embedded JetStream with the
// declarations applied, and the sandbox company connected in oauth_tokens.
type QuickBooksEnv struct {
	Sandbox *sandbox.Sandbox
	URL     string
	Config  quickbooks.Config
	Store   *oauth.Store
	// Server and JS are the embedded JetStream, for more replicas.
	Server *natstest.Server
}

// NewQuickBooksEnv starts a QuickBooksEnv with the sandbox's QuickBooks
// configured by o.
func NewQuickBooksEnv(t *testing.T, o sandbox.QuickBooksOptions) *QuickBooksEnv {
	t.Helper()
	sb := sandbox.New(sandbox.Options{QuickBooks: o})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close)
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	natstest.Apply(t, js, bus.DefaultTopology())
	cfg := QuickBooksConfig(srv.URL)
	store := oauth.NewStore(js, cfg.OAuthConfig())
	ConnectQuickBooks(t, sb.QuickBooks(), sandbox.DefaultQuickBooksRealm, store)
	return &QuickBooksEnv{Sandbox: sb, URL: srv.URL, Config: cfg, Store: store, Server: ns}
}

// QuickBooks is the Factory of the QuickBooks Online adapter on the
// sandbox.
func QuickBooks(t *testing.T) (ledger.Ledger, Backend) {
	t.Helper()
	e := NewQuickBooksEnv(t, sandbox.QuickBooksOptions{})
	return quickbooks.New(e.Config, e.Store), QuickBooksBackend{Q: e.Sandbox.QuickBooks(), Realm: sandbox.DefaultQuickBooksRealm}
}

// QuickBooksBackend is the sandbox's QuickBooks company.
type QuickBooksBackend struct {
	Q     *sandbox.QuickBooks
	Realm string
}

func (b QuickBooksBackend) document(o sandbox.QBObject, typ string) Document {
	d := Document{ID: o.String("Id"), Type: typ, Class: o.Ref("ClassRef"), TotalMinor: o.Cents("TotalAmt")}
	partyEntity, partyRef := sandbox.QBCustomer, o.Ref("CustomerRef")
	if typ == "bill" {
		partyEntity, partyRef = sandbox.QBVendor, o.Ref("VendorRef")
	}
	d.PartyID = partyRef
	for _, p := range b.Q.Objects(b.Realm, partyEntity) {
		if p.String("Id") == partyRef {
			d.PartyName = p.String("DisplayName")
		}
	}
	if a, ok := o["ShipAddr"].(map[string]any); ok {
		d.Property = fmt.Sprint(a["Line1"])
	}
	if cfs, ok := o["CustomField"].([]any); ok {
		for _, c := range cfs {
			if m, ok := c.(map[string]any); ok {
				d.Agent += fmt.Sprint(m["StringValue"])
			}
		}
	}
	items := map[string]string{}
	for _, it := range b.Q.Objects(b.Realm, sandbox.QBItem) {
		items[it.String("Id")] = it.String("Name")
	}
	for _, l := range o.Lines() {
		var item string
		if det, ok := l["SalesItemLineDetail"].(map[string]any); ok {
			if r, ok := det["ItemRef"].(map[string]any); ok {
				item = items[fmt.Sprint(r["value"])]
			}
		}
		d.Lines = append(d.Lines, Line{Item: item, AmountMinor: sandbox.QBObject(l).Cents("Amount")})
	}
	return d
}

// Documents are the Invoices and SalesReceipts.
func (b QuickBooksBackend) Documents(*testing.T) []Document {
	var out []Document
	for _, o := range b.Q.Objects(b.Realm, sandbox.QBInvoice) {
		out = append(out, b.document(o, ledger.DocumentInvoice))
	}
	for _, o := range b.Q.Objects(b.Realm, sandbox.QBSalesReceipt) {
		out = append(out, b.document(o, ledger.DocumentSalesReceipt))
	}
	return out
}

// Bills are the Bills.
func (b QuickBooksBackend) Bills(*testing.T) []Document {
	var out []Document
	for _, o := range b.Q.Objects(b.Realm, sandbox.QBBill) {
		out = append(out, b.document(o, "bill"))
	}
	return out
}

// Customers are the Customers.
func (b QuickBooksBackend) Customers(*testing.T) []Party {
	var out []Party
	for _, o := range b.Q.Objects(b.Realm, sandbox.QBCustomer) {
		email, _ := o["PrimaryEmailAddr"].(map[string]any)
		out = append(out, Party{ID: o.String("Id"), Name: o.String("DisplayName"), Email: fmt.Sprint(email["Address"])})
	}
	return out
}

// TakeName gives name to an Employee, another party of the company.
func (b QuickBooksBackend) TakeName(t *testing.T, name string) {
	t.Helper()
	if _, err := b.Q.Add(b.Realm, sandbox.QBEmployee, sandbox.QBObject{"DisplayName": name}); err != nil {
		t.Fatal(err)
	}
}

// ExpireToken expires every access token now.
func (b QuickBooksBackend) ExpireToken(*testing.T) { b.Q.ExpireAccessTokens() }

// Revoke makes every refresh token answer invalid_grant.
func (b QuickBooksBackend) Revoke(*testing.T) { b.Q.RevokeRefreshTokens() }

// Throttle makes the next call answer 429 with the XML throttle fault.
func (b QuickBooksBackend) Throttle(*testing.T) {
	b.Q.InjectFault(sandbox.Fault{Status: http.StatusTooManyRequests, Body: ThrottleXML})
}

// Refreshes is the refreshes the sandbox granted.
func (b QuickBooksBackend) Refreshes(*testing.T) int {
	_, n := b.Q.TokenCounts()
	return n
}
