package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/cli"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/failures"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// run runs the CLI and returns its output and exit code.
func run(t *testing.T, environ []string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	err := cli.Execute(natstest.Context(t, 3*time.Minute), args, environ, &out, io.Discard)
	if err != nil {
		fmt.Fprintln(&out, "error:", err)
	}
	return out.String(), cli.ExitCode(err)
}

func lsJSON(t *testing.T, environ []string, args ...string) []failures.Failure {
	t.Helper()
	out, code := run(t, environ, append([]string{"failures", "ls", "-o", "json"}, args...)...)
	if code != 0 {
		t.Fatalf("failures ls %v: exit %d\n%s", args, code, out)
	}
	var list []failures.Failure
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("failures ls %v -o json: %v\n%s", args, err, out)
	}
	return list
}

// postLeads posts n signed IDX leads, each a different person.
func postLeads(t *testing.T, url string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			body := fmt.Sprintf(`{"type":"lead.created","data":{"name":"Person %d","email":"person%d@example.com","phone":"(415) 555-%04d","inquiry_type":"buy"}}`, i, i, i)
			// As a lead source does: again after a 429, when the gateway says.
			for {
				code, wait := postLead(t, url, fmt.Sprintf("msg_bulk_%d", i), body)
				if code == http.StatusAccepted {
					return
				}
				if code != http.StatusTooManyRequests {
					t.Errorf("lead %d: HTTP %d", i, code)
					return
				}
				time.Sleep(wait)
			}
		})
	}
	wg.Wait()
}

// postLead posts one signed lead; the status, and a 429's Retry-After.
func postLead(t *testing.T, url, id, body string) (int, time.Duration) {
	t.Helper()
	h, err := webhooksig.SignedHeaders(app.DevIDXSecret, id, time.Now(), []byte(body))
	if err != nil {
		t.Fatal(err)
	}
	h.Set("Content-Type", "application/json")
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, 0
	}
	_ = resp.Body.Close()
	wait := time.Second
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		wait = time.Duration(s) * time.Second
	}
	return resp.StatusCode, wait
}

func pagerDuty(sb *sandbox.Sandbox, dedupKey string) (sandbox.PagerDutyAlert, bool) {
	for _, a := range sb.PagerDuty().Alerts() {
		if a.DedupKey == dedupKey {
			return a, true
		}
	}
	return sandbox.PagerDutyAlert{}, false
}

// An operator after a CRM outage: the failures are listed and filtered,
// one is shown decoded, one fails again while the CRM still refuses, one
// is resolved by hand (and its alert group with it), and the rest are
// redriven in bulk once the CRM is back, all of them reaching it.
func TestFailures_operatorAfterACRMOutage(t *testing.T) {
	t.Parallel()
	const leads = 200
	a := startSystem(t)
	environ := []string{"BROKERFLOW_NATS_URL=" + a.NATSURL, "BROKERFLOW_NATS_CREDS_DIR=" + a.CredsDir}

	// The CRM refuses every event; one webhook of another source does not decode.
	a.Sandbox.FUB().InjectFault(sandbox.Fault{Method: http.MethodPost, Path: "/v1/events", Status: http.StatusBadRequest, Count: 1 << 20, Body: `{"errorMessage":"Invalid"}`})
	postLeads(t, a.WebhookURL+"/webhooks/idx", leads)
	publishUndecodable(t, a, "webhook.received.lead.zillow")
	natstest.Eventually(t, 2*time.Minute, "every failure listed", func() bool {
		return len(lsJSON(t, environ)) == leads+1
	})

	// ls filters.
	crm := lsJSON(t, environ, "--service", "crm-sync")
	if len(crm) != leads {
		t.Fatalf("--service crm-sync: %d failures, want %d", len(crm), leads)
	}
	for _, f := range crm {
		if f.State != failures.Open || f.ReasonCode != "crm.http_400" || f.Source != "idx" || f.Stream != bus.StreamLeads {
			t.Fatalf("a crm-sync failure: %+v", f)
		}
	}
	if got := lsJSON(t, environ, "--source", "zillow"); len(got) != 1 || got[0].Service != "normalizer" || got[0].ReasonCode != "message.decode" {
		t.Fatalf("--source zillow: %+v", got)
	}
	if got := lsJSON(t, environ, "--reason", "crm.*", "--since", "1h"); len(got) != leads {
		t.Fatalf("--reason 'crm.*' --since 1h: %d failures, want %d", len(got), leads)
	}
	if got := lsJSON(t, environ, "--since", time.Now().Add(time.Hour).Format(time.RFC3339)); len(got) != 0 {
		t.Fatalf("--since an hour ahead: %d failures", len(got))
	}
	if got := lsJSON(t, environ, "--state", "resolved"); len(got) != 0 {
		t.Fatalf("--state resolved before any resolve: %+v", got)
	}
	out, code := run(t, environ, "failures", "ls", "--service", "normalizer")
	if code != 0 || !strings.Contains(out, "normalizer/WEBHOOKS/") || !strings.Contains(out, "message.decode") || strings.Contains(out, "crm-sync/") {
		t.Fatalf("ls table (exit %d):\n%s", code, out)
	}

	// show decodes the failed lead, redacted unless --pii.
	first := crm[0]
	out, code = run(t, environ, "failures", "show", first.ID)
	if code != 0 || !strings.Contains(out, `"lead_id"`) || !strings.Contains(out, "[redacted]") || strings.Contains(out, "@example.com") ||
		!strings.Contains(out, "brokerflow failures redrive "+first.ID) || !strings.Contains(out, "lead_id ") {
		t.Fatalf("show (exit %d):\n%s", code, out)
	}
	out, code = run(t, environ, "failures", "show", first.ID, "--pii", "-o", "json")
	var shown struct {
		Message map[string]any    `json:"message"`
		Journey map[string]string `json:"journey"`
	}
	if err := json.Unmarshal([]byte(out), &shown); code != 0 || err != nil || !strings.Contains(out, "@example.com") || shown.Journey["lead_id"] == "" {
		t.Fatalf("show --pii -o json (exit %d, %v):\n%s", code, err, out)
	}

	// Both groups paged.
	crmGroup, normGroup := "brokerflow/failure/crm-sync/crm.http_400", "brokerflow/failure/normalizer/message.decode"
	natstest.Eventually(t, time.Minute, "both groups paged", func() bool {
		c, ok1 := pagerDuty(a.Sandbox, crmGroup)
		n, ok2 := pagerDuty(a.Sandbox, normGroup)
		return ok1 && ok2 && c.Status == "triggered" && n.Status == "triggered"
	})

	// While the CRM still refuses, a redrive fails again: exit 3.
	out, code = run(t, environ, "failures", "redrive", first.ID, "--by", "ops-test")
	if code != cli.ExitPartial || !strings.Contains(out, "redrive of 1: 0 succeeded, 1 failed again, 0 skipped") || !strings.Contains(out, "crm.http_400") {
		t.Fatalf("redrive during the outage (exit %d):\n%s", code, out)
	}
	if got := lsJSON(t, environ, "--state", "failed_again"); len(got) != 1 || got[0].ID != first.ID || got[0].Failures != 2 {
		t.Fatalf("--state failed_again: %+v", got)
	}

	// The undecodable webhook is resolved by hand; its group resolves.
	norm := lsJSON(t, environ, "--service", "normalizer")[0]
	out, code = run(t, environ, "failures", "resolve", norm.ID, "--note", "a test webhook, not a lead", "--by", "ops-test")
	if code != 0 || !strings.Contains(out, norm.ID+" resolved") {
		t.Fatalf("resolve (exit %d):\n%s", code, out)
	}
	if got := lsJSON(t, environ, "--state", "resolved"); len(got) != 1 || got[0].ID != norm.ID || got[0].Note != "a test webhook, not a lead" || got[0].ResolvedBy != "ops-test" {
		t.Fatalf("--state resolved: %+v", got)
	}
	natstest.Eventually(t, time.Minute, "the normalizer's group resolved", func() bool {
		n, _ := pagerDuty(a.Sandbox, normGroup)
		return n.Status == "resolved"
	})
	if c, _ := pagerDuty(a.Sandbox, crmGroup); c.Status != "triggered" {
		t.Fatalf("the CRM's group is %q, want still triggered", c.Status)
	}

	// The CRM is back: every open one is redriven, paced, and reaches it.
	a.Sandbox.FUB().ClearFaults()
	out, code = run(t, environ, "failures", "redrive", "--service", "crm-sync", "--by", "ops-test", "--in-flight", "16")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("redrive of %d: %d succeeded, 0 failed again, 0 skipped", leads, leads)) ||
		!strings.Contains(out, fmt.Sprintf("[%d/%d] ", leads, leads)) {
		t.Fatalf("bulk redrive (exit %d):\n%s", code, out)
	}
	if n := len(a.Sandbox.FUB().Events()); n != leads {
		t.Fatalf("%d events in the CRM, want %d", n, leads)
	}
	if got := lsJSON(t, environ); len(got) != 0 {
		t.Fatalf("%d failures still open after the redrive: %+v", len(got), got[0])
	}
	if got := lsJSON(t, environ, "--state", "redriven"); len(got) != leads {
		t.Fatalf("--state redriven: %d, want %d", len(got), leads)
	}
	natstest.Eventually(t, time.Minute, "the CRM's group resolved", func() bool {
		c, _ := pagerDuty(a.Sandbox, crmGroup)
		return c.Status == "resolved"
	})

	// A second bulk redrive finds nothing open; --state all skips the settled ones.
	out, code = run(t, environ, "failures", "redrive", "--service", "crm-sync")
	if code != 0 || !strings.Contains(out, "nothing to redrive") {
		t.Fatalf("second redrive (exit %d):\n%s", code, out)
	}
	out, code = run(t, environ, "failures", "redrive", "--state", "all", "-q")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("redrive of %d: 0 succeeded, 0 failed again, %d skipped", leads+1, leads+1)) {
		t.Fatalf("redrive --state all (exit %d):\n%s", code, out)
	}
}

// Scripts can rely on the exit codes.
func TestFailures_usageErrorsExitTwo(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	if _, err := execute(t, nil, "streams", "apply", "--server", s.ClientURL()); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"failures", "show", "not-an-id"},
		{"failures", "ls", "--state", "sideways"},
		{"failures", "ls", "--since", "yesterday"},
		{"failures", "ls", "-o", "yaml"},
		{"failures", "ls", "--no-such-flag"},
		{"failures", "redrive"},
		{"failures", "redrive", "normalizer", "WEBHOOKS", "zero"},
		{"failures", "resolve", "crm-sync/LEADS/1"},
		{"no-such-command"},
	} {
		out, code := run(t, nil, append(args, "--server", s.ClientURL())...)
		if code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d\n%s", args, code, cli.ExitUsage, out)
		}
	}
	// A well-formed id that names no failure is an error, not a usage error.
	out, code := run(t, nil, "failures", "show", "crm-sync/LEADS/1", "--server", s.ClientURL())
	if code != cli.ExitError || !strings.Contains(out, "no failure crm-sync/LEADS/1") {
		t.Fatalf("show of an unknown failure: exit %d\n%s", code, out)
	}
	// Completion scripts are there.
	out, code = run(t, nil, "completion", "bash")
	if code != 0 || !strings.Contains(out, "__start_brokerflow") {
		t.Fatalf("completion bash: exit %d", code)
	}
}
