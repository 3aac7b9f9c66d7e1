package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/service"
)

// QuickBooksPrefix is where the QuickBooks Online adapter's settings are
// read: ledger-sync's prefix and QUICKBOOKS_.
const QuickBooksPrefix = "LEDGERSYNC_QUICKBOOKS_"

// quickBooksConfig reads LEDGERSYNC_QUICKBOOKS_* (and its secret file).
func quickBooksConfig(environ []string) (quickbooks.Config, error) {
	var c quickbooks.Config
	if err := service.ParseEnv(&c, QuickBooksPrefix, environ); err != nil {
		return c, err
	}
	if err := c.ReadSecret(QuickBooksPrefix); err != nil {
		return c, err
	}
	return c, c.Validate(QuickBooksPrefix)
}

// connectQuickBooksCmd is `brokerflow connect quickbooks`: Intuit's
// authorization-code flow with a loopback redirect; the tokens and the
// company's realm id (the redirect's realmId) go into oauth_tokens under
// "quickbooks".
func connectQuickBooksCmd(environ []string, stdout io.Writer, nf *natsFlags) *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "quickbooks",
		Short: "Log in to QuickBooks Online in a browser and store the company's tokens and realm id for ledger-sync",
		Long: `Run Intuit's OAuth 2.0 authorization-code flow with a loopback redirect: open the printed URL,
choose the company and approve, and Intuit redirects the browser to http://<--listen>/callback with
a code and the company's realmId; this command exchanges the code for tokens and stores them, with
the realm id, in the oauth_tokens bucket under "quickbooks". Register that redirect URI for the app
in Intuit's developer portal. Settings: LEDGERSYNC_QUICKBOOKS_CLIENT_ID,
LEDGERSYNC_QUICKBOOKS_CLIENT_SECRET (or _FILE), LEDGERSYNC_QUICKBOOKS_AUTH_URL and _TOKEN_URL.
Run it again after a refresh token was refused (a failure record with reason code
ledger.oauth_invalid_grant says so).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := quickBooksConfig(environ)
			if err != nil {
				return err
			}
			nc, js, err := nf.connect(environ)
			if err != nil {
				return err
			}
			defer nc.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
			defer cancel()
			oc := cfg.OAuthConfig()
			tok, err := oauth.Authorize(ctx, oc, listen, func(u string) {
				fmt.Fprintf(stdout, "Open this URL in a browser, choose the company and approve Brokerflow:\n%s\n", u)
			})
			if err != nil {
				return err
			}
			if err := oauth.NewStore(js, oc).Save(ctx, tok); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "connected quickbooks: company %v; tokens stored in %s (access token valid until %s)\n",
				tok.Extra(oc.AccountParam), oauth.Bucket, tok.Expiry.UTC().Format(time.RFC3339))
			return nil
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8765", "where the loopback redirect is received (the redirect URI is http://<listen>/callback)")
	return cmd
}
