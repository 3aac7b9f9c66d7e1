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

	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/crm/liondesk"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

// PublicURLVar names the gateway's public base URL, as the CRM reaches it.
const PublicURLVar = app.Prefix + "PUBLIC_URL"

// crmFlags is how the crm commands reach the CRM: crm-sync's settings
// (CRMSYNC_CRM, CRMSYNC_FUB_*), or the sandbox's with --sandbox.
type crmFlags struct {
	sandbox   bool
	publicURL string
}

func (f *crmFlags) config(environ []string) (crmsync.Config, error) {
	var c crmsync.Config
	if err := service.ParseEnv(&c, crmsync.Prefix, environ); err != nil {
		return c, err
	}
	if f.sandbox {
		addr := service.EnvMap(environ)[app.Prefix+"SANDBOX_ADDR"]
		if addr == "" {
			addr = "127.0.0.1:8099"
		}
		app.SandboxCRM(&c, addr)
	}
	if err := c.Resolve(); err != nil {
		return c, err
	}
	if c.CRM == followupboss.Name && c.FUB.SystemKey == "" {
		return c, errors.New("CRMSYNC_FUB_SYSTEM_KEY (or _FILE) is required: Follow Up Boss accepts webhook calls only from a registered system " +
			"(X-System, X-System-Key: https://apps.followupboss.com/system-registration), and signs its webhooks with that key, " +
			"which the gateway checks (GATEWAY_FUB_SYSTEM_KEYS)")
	}
	return c, nil
}

// callback is the URL Follow Up Boss posts to: the gateway's public base URL
// and its Follow Up Boss route.
func (f *crmFlags) callback(environ []string) (string, error) {
	base := f.publicURL
	if base == "" {
		base = service.EnvMap(environ)[PublicURLVar]
	}
	if base == "" && f.sandbox {
		base = "http://" + app.DevGatewayAddr
	}
	if base == "" {
		return "", fmt.Errorf("give the gateway's public URL with --url or %s (e.g. https://leads.example.com)", PublicURLVar)
	}
	base = strings.TrimRight(strings.TrimSpace(base), "/")
	if !strings.HasPrefix(base, "https://") && !strings.HasPrefix(base, "http://") {
		return "", fmt.Errorf("the gateway's public URL %q must start with https://", base)
	}
	if strings.HasSuffix(base, gateway.FUBRoute) {
		return base, nil
	}
	return base + gateway.FUBRoute, nil
}

// noWebhooks is what the commands say for a CRM that is polled.
const noWebhooks = "LionDesk sends no webhooks (none are in its public API documentation): crm-sync polls it for changed contacts " +
	"every CRMSYNC_POLL_INTERVAL instead, so there is nothing to register.\n"

func crmCmd(environ []string, stdout io.Writer) *cobra.Command {
	var f crmFlags
	cmd := &cobra.Command{Use: "crm", Short: "Set up the brokerage's CRM for Brokerflow"}
	wh := &cobra.Command{
		Use:   "webhooks",
		Short: "Register the gateway with the CRM's webhooks, so that crm-sync hears of changes (Follow Up Boss)",
		Long: `Register, list and remove the CRM's webhooks that point at the gateway. The CRM is crm-sync's
(CRMSYNC_CRM, CRMSYNC_FUB_API_KEY, CRMSYNC_FUB_SYSTEM, CRMSYNC_FUB_SYSTEM_KEY, CRMSYNC_FUB_BASE_URL), or
with --sandbox the sandbox's Follow Up Boss (BROKERFLOW_SANDBOX_ADDR, default 127.0.0.1:8099).
Follow Up Boss lets only the account owner's API key manage webhooks, from a registered system.
LionDesk has no webhooks: crm-sync polls it.`,
	}
	wh.PersistentFlags().BoolVar(&f.sandbox, "sandbox", false, "use the sandbox's Follow Up Boss and its default credentials")
	wh.PersistentFlags().StringVar(&f.publicURL, "url", "", "the gateway's public base URL (default $"+PublicURLVar+"; with --sandbox http://"+app.DevGatewayAddr+")")
	cmd.AddCommand(wh)

	// withFUB runs do against the Follow Up Boss adapter, or says why not.
	withFUB := func(cmd *cobra.Command, do func(ctx context.Context, fub *followupboss.FollowUpBoss) error) error {
		c, err := f.config(environ)
		if err != nil {
			return err
		}
		if c.CRM == liondesk.Name {
			_, err := io.WriteString(stdout, noWebhooks)
			return err
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
		defer cancel()
		return do(ctx, followupboss.New(c.FUB))
	}

	wh.AddCommand(&cobra.Command{
		Use:   "register",
		Short: "Register the gateway's URL for each event crm-sync needs; what is registered already is left as is",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withFUB(cmd, func(ctx context.Context, fub *followupboss.FollowUpBoss) error {
				callback, err := f.callback(environ)
				if err != nil {
					return err
				}
				made, found, err := fub.EnsureWebhooks(ctx, callback, followupboss.WebhookEvents())
				for _, h := range found {
					fmt.Fprintf(stdout, "already registered  %-20s %s (id %s)\n", h.Event, h.URL, h.ID)
				}
				for _, h := range made {
					fmt.Fprintf(stdout, "registered          %-20s %s (id %s)\n", h.Event, h.URL, h.ID)
				}
				return err
			})
		},
	})
	wh.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List the account's webhooks of this system",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withFUB(cmd, func(ctx context.Context, fub *followupboss.FollowUpBoss) error {
				hooks, err := fub.Webhooks(ctx)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tEVENT\tSTATUS\tURL")
				for _, h := range hooks {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.ID, h.Event, h.Status, h.URL)
				}
				return tw.Flush()
			})
		},
	})
	wh.AddCommand(&cobra.Command{
		Use:   "rm [ID...]",
		Short: "Remove webhooks: those named, or without IDs every one that points at the gateway's URL",
		RunE: func(cmd *cobra.Command, ids []string) error {
			return withFUB(cmd, func(ctx context.Context, fub *followupboss.FollowUpBoss) error {
				if len(ids) == 0 {
					callback, err := f.callback(environ)
					if err != nil {
						return err
					}
					hooks, err := fub.Webhooks(ctx)
					if err != nil {
						return err
					}
					for _, h := range hooks {
						if followupboss.SameURL(h.URL, callback) {
							ids = append(ids, h.ID)
						}
					}
					if len(ids) == 0 {
						fmt.Fprintf(stdout, "no webhook points at %s\n", callback)
						return nil
					}
				}
				for _, id := range ids {
					if err := fub.DeleteWebhook(ctx, id); err != nil {
						return err
					}
					fmt.Fprintf(stdout, "removed webhook %s\n", id)
				}
				return nil
			})
		},
	})
	return cmd
}
