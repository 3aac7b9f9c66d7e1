package cli_test

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

func TestAlertsTest_reachesEveryChannelAndSaysWhichFailed(t *testing.T) {
	t.Parallel()
	sb := sandbox.New(sandbox.Options{})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	out, err := execute(t, nil, "alerts", "test", "--sandbox", srv.URL)
	if err != nil || !strings.Contains(out, "slack      ok") || !strings.Contains(out, "pagerduty  ok") {
		t.Fatalf("alerts test = %q, %v", out, err)
	}
	if m := sb.Slack().Messages(); len(m) != 1 || !strings.Contains(m[0].Text, "test alert") {
		t.Fatalf("Slack got %+v", m)
	}
	if a := sb.PagerDuty().Alerts(); len(a) != 1 || a[0].Status != "resolved" {
		t.Fatalf("PagerDuty alerts %+v, want the test one resolved", a)
	}

	// A Slack that answers 404 no_service is named.
	out, err = execute(t, []string{"ALERTER_SLACK_WEBHOOK_URL=" + srv.URL + "/slack/services/T1/B1/gone"}, "alerts", "test", "--sandbox", srv.URL)
	if err == nil || !strings.Contains(out, "slack      FAILED") || !strings.Contains(out, "404") || !strings.Contains(out, "pagerduty  ok") {
		t.Fatalf("alerts test with a bad Slack hook = %q, %v", out, err)
	}

	if _, err := execute(t, nil, "alerts", "test"); err == nil || !strings.Contains(err.Error(), "ALERTER_SLACK_WEBHOOK_URL") {
		t.Fatalf("without channels: %v", err)
	}
}
