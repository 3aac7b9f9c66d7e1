package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/services/tms-sync/tmssync"
)

// dotloopConfig reads TMSSYNC_DOTLOOP_* (and its secret file) from environ.
func dotloopConfig(environ []string) (dotloop.Config, error) {
	var c dotloop.Config
	if err := service.ParseEnv(&c, tmssync.Prefix+"DOTLOOP_", environ); err != nil {
		return c, err
	}
	if err := c.ReadSecret(tmssync.Prefix + "DOTLOOP_"); err != nil {
		return c, err
	}
	return c, c.Validate(tmssync.Prefix + "DOTLOOP_")
}

func oauthConfig(c dotloop.Config) oauth.Config {
	return tmssync.OAuthConfig(tmssync.Config{Dotloop: c})
}

// connectCmd is `brokerflow connect dotloop`: the authorization-code flow
// with a loopback redirect; the tokens go into oauth_tokens, written as
// tms-sync's NATS user (the one that refreshes them).
func connectCmd(environ []string, stdout io.Writer) *cobra.Command {
	var nf natsFlags
	var listen string
	cmd := &cobra.Command{Use: "connect", Short: "Connect a vendor account with OAuth 2.0 (its tokens go into the oauth_tokens bucket)"}
	nf.register(cmd, bus.ServiceTMSSync)
	dl := &cobra.Command{
		Use:   "dotloop",
		Short: "Log in to Dotloop in a browser and store the account's tokens for tms-sync",
		Long: `Run Dotloop's OAuth 2.0 authorization-code flow with a loopback redirect: open the printed URL,
approve, and Dotloop redirects the browser to http://<--listen>/callback, where this command
exchanges the code for tokens and stores them in the oauth_tokens bucket (as tms-sync's NATS
user). Register that redirect URI with Dotloop for the client. Settings: TMSSYNC_DOTLOOP_CLIENT_ID,
TMSSYNC_DOTLOOP_CLIENT_SECRET (or _FILE), TMSSYNC_DOTLOOP_AUTH_URL. Run it again after a refresh
token was refused (a failure record with reason code tms.oauth_invalid_grant says so).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := dotloopConfig(environ)
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
			oc := oauthConfig(cfg)
			tok, err := oauth.Authorize(ctx, oc, listen, func(u string) {
				fmt.Fprintf(stdout, "Open this URL in a browser and approve Brokerflow:\n%s\n", u)
			})
			if err != nil {
				return err
			}
			if err := oauth.NewStore(js, oc).Save(ctx, tok); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "connected dotloop: tokens stored in %s (access token valid until %s)\n", oauth.Bucket, tok.Expiry.UTC().Format(time.RFC3339))
			return nil
		},
	}
	dl.Flags().StringVar(&listen, "listen", "127.0.0.1:8765", "where the loopback redirect is received (the redirect URI is http://<listen>/callback)")
	cmd.AddCommand(dl, connectQuickBooksCmd(environ, stdout, &nf))
	return cmd
}

// tmsCmd is `brokerflow tms webhooks register|ls|rm`: Dotloop's webhook
// subscriptions, with the tokens tms-sync uses.
func tmsCmd(environ []string, stdout io.Writer) *cobra.Command {
	var nf natsFlags
	cmd := &cobra.Command{Use: "tms", Short: "The transaction manager (Dotloop)"}
	nf.register(cmd, bus.ServiceTMSSync)
	hooks := &cobra.Command{Use: "webhooks", Short: "Manage Dotloop's webhook subscriptions to the gateway"}
	cmd.AddCommand(hooks)
	adapter := func(cmd *cobra.Command, run func(ctx context.Context, d *dotloop.Dotloop) error) error {
		cfg, err := dotloopConfig(environ)
		if err != nil {
			return err
		}
		nc, js, err := nf.connect(environ)
		if err != nil {
			return err
		}
		defer nc.Close()
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
		defer cancel()
		return run(ctx, dotloop.New(cfg, oauth.NewStore(js, oauthConfig(cfg))))
	}
	var key, external string
	register := &cobra.Command{
		Use:   "register URL",
		Short: "Subscribe URL (the gateway's /webhooks/dotloop) to LOOP_UPDATED, signed with --signing-key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				if ks := strings.Split(service.EnvMap(environ)["GATEWAY_DOTLOOP_SIGNING_KEYS"], ","); ks[0] != "" {
					key = strings.TrimSpace(ks[0])
				}
			}
			if key == "" {
				return errors.New("--signing-key (or GATEWAY_DOTLOOP_SIGNING_KEYS) is required: the gateway verifies deliveries with it")
			}
			return adapter(cmd, func(ctx context.Context, d *dotloop.Dotloop) error {
				s, err := d.Subscribe(ctx, tms.Subscription{URL: args[0], Events: []string{dotloop.EventLoopUpdated}, SigningKey: key, ExternalID: external})
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "subscribed %s: %s to %s\n", s.ID, s.URL, strings.Join(s.Events, ","))
				return nil
			})
		},
	}
	register.Flags().StringVar(&key, "signing-key", "", "the subscription's signing key (default: the first of GATEWAY_DOTLOOP_SIGNING_KEYS)")
	register.Flags().StringVar(&external, "external-id", "brokerflow", "the subscription's external id")
	ls := &cobra.Command{
		Use:   "ls",
		Short: "List the subscriptions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return adapter(cmd, func(ctx context.Context, d *dotloop.Dotloop) error {
				subs, err := d.Subscriptions(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tURL\tEVENTS\tENABLED\tEXTERNAL ID")
				for _, s := range subs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%t\t%s\n", s.ID, s.URL, strings.Join(s.Events, ","), s.Enabled, s.ExternalID)
				}
				return tw.Flush()
			})
		},
	}
	rm := &cobra.Command{
		Use:   "rm ID",
		Short: "Delete a subscription",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return adapter(cmd, func(ctx context.Context, d *dotloop.Dotloop) error {
				if err := d.Unsubscribe(ctx, args[0]); err != nil {
					return err
				}
				fmt.Fprintf(stdout, "deleted subscription %s\n", args[0])
				return nil
			})
		},
	}
	hooks.AddCommand(register, ls, rm)
	return cmd
}
