package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/brokerflow/brokerflow/services/alerter/alerter"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

func alertsCmd(environ []string, stdout io.Writer) *cobra.Command {
	cmd := &cobra.Command{Use: "alerts", Short: "Check the alerter's channels"}
	var sandboxURL string
	test := &cobra.Command{
		Use:   "test",
		Short: "Send a test alert to every channel the ALERTER_* settings configure",
		Long: `Send a test alert to Slack, PagerDuty and the signed webhook, each as the ALERTER_*
settings configure it (docs/alerts.md), whatever its route; PagerDuty's test incident is
resolved at once. With --sandbox, a channel that is not configured goes to the sandbox at that
URL (brokerflow run --sandbox serves it at http://127.0.0.1:8099).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := alerter.ConfigFromEnv(environ)
			if err != nil {
				return err
			}
			if sandboxURL != "" {
				if cfg.SlackWebhookURL == "" {
					cfg.SlackWebhookURL = sandboxURL + "/slack" + sandbox.DefaultSlackHookPath
				}
				if cfg.PagerDutyRoutingKey == "" {
					cfg.PagerDutyRoutingKey, cfg.PagerDutyURL = sandbox.DefaultPagerDutyRoutingKey, sandboxURL+"/pagerduty/v2/enqueue"
				}
			}
			results, err := alerter.SendTest(cmd.Context(), cfg, time.Now())
			if err != nil {
				return err
			}
			if len(results) == 0 {
				return errors.New("no channel configured: set ALERTER_SLACK_WEBHOOK_URL, ALERTER_PAGERDUTY_ROUTING_KEY or ALERTER_WEBHOOK_URL (docs/alerts.md)")
			}
			failed := 0
			for _, r := range results {
				if r.Err != nil {
					failed++
					fmt.Fprintf(stdout, "%-10s FAILED  %v\n", r.Channel, r.Err)
				} else {
					fmt.Fprintf(stdout, "%-10s ok\n", r.Channel)
				}
			}
			if failed > 0 {
				return fmt.Errorf("%d of %d channels failed", failed, len(results))
			}
			return nil
		},
	}
	test.Flags().StringVar(&sandboxURL, "sandbox", "", "send the channels not configured to the sandbox at this URL")
	cmd.AddCommand(test)
	return cmd
}
