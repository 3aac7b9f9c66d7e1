package cli_test

import (
	"bufio"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/ledger/ledgertest"
	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/cli"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// TestConnect_quickbooksStoresTokensAndRealm: `brokerflow connect
// quickbooks` runs the authorization-code flow with a loopback redirect
// against the sandbox and stores the tokens with the redirect's realmId;
// the adapter then books with them in that company.
func TestConnect_quickbooksStoresTokensAndRealm(t *testing.T) {
	t.Parallel()
	sb := sandbox.New(sandbox.Options{QuickBooks: sandbox.QuickBooksOptions{Realms: []string{"4620816365"}}})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	natstest.Apply(t, js, bus.DefaultTopology())
	cfg := ledgertest.QuickBooksConfig(srv.URL)
	env := []string{
		"BROKERFLOW_NATS_CREDS_DIR=" + t.TempDir(),
		cli.QuickBooksPrefix + "BASE_URL=" + cfg.BaseURL, cli.QuickBooksPrefix + "AUTH_URL=" + cfg.AuthURL, cli.QuickBooksPrefix + "TOKEN_URL=" + cfg.TokenURL,
		cli.QuickBooksPrefix + "CLIENT_ID=" + cfg.ClientID, cli.QuickBooksPrefix + "CLIENT_SECRET=" + cfg.ClientSecret,
	}
	ctx := natstest.Context(t, time.Minute)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- cli.Execute(ctx, []string{"connect", "quickbooks", "--listen", "127.0.0.1:0", "--server", ns.ClientURL()}, env, pw, io.Discard)
		_ = pw.Close()
	}()
	var out strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if strings.HasPrefix(line, "http") {
			// The "browser": the sandbox approves and redirects to the loopback callback.
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, line, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
		}
	}
	if err := <-done; err != nil || !strings.Contains(out.String(), "connected quickbooks: company 4620816365") {
		t.Fatalf("connect: %v\n%s", err, out.String())
	}
	store := oauth.NewStore(js, cfg.OAuthConfig())
	rec, _, err := store.Load(ctx)
	if err != nil || rec.Account != "4620816365" || rec.AccessToken == "" || rec.RefreshToken == "" || time.Until(rec.Expiry) < 50*time.Minute {
		t.Fatalf("record %+v, %v", rec, err)
	}
	booked, err := quickbooks.New(cfg, store).Book(ctx, ledgertest.NewBooking())
	if err != nil || booked.CompanyID != "4620816365" || len(sb.QuickBooks().Objects("4620816365", sandbox.QBInvoice)) != 1 {
		t.Fatalf("booked %+v, %v", booked, err)
	}

	// Without the client's settings the command says which.
	if err := cli.Execute(ctx, []string{"connect", "quickbooks", "--server", ns.ClientURL()}, env[:1], io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), cli.QuickBooksPrefix+"CLIENT_ID") {
		t.Fatalf("without settings: %v", err)
	}
}
