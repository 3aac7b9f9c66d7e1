package cli_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/cli"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

func execute(t *testing.T, environ []string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := cli.Execute(natstest.Context(t, time.Minute), args, environ, &out, io.Discard)
	return out.String(), err
}

func TestRun_withoutASecretIsAClearError(t *testing.T) {
	t.Parallel()
	_, err := execute(t, []string{"BROKERFLOW_DATA_DIR=" + t.TempDir()}, "run")
	if err == nil || !strings.Contains(err.Error(), "GATEWAY_IDX_SECRETS") || !strings.Contains(err.Error(), "--dev") {
		t.Fatalf("err = %v, want one naming GATEWAY_IDX_SECRETS and --dev", err)
	}
}

func TestStreamsApply_declaresEverything(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	out, err := execute(t, nil, "streams", "apply", "--server", s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "applied 7 streams") {
		t.Fatalf("output %q", out)
	}
}

// startSystem runs brokerflow run --sandbox on random ports.
func startSystem(t *testing.T) *app.App {
	t.Helper()
	cfg, err := app.ConfigFromEnv([]string{
		"BROKERFLOW_NATS_PORT=-1", "BROKERFLOW_DATA_DIR=" + t.TempDir(),
		"BROKERFLOW_OPS_ADDR=127.0.0.1:0", "GATEWAY_ADDR=127.0.0.1:0", "BROKERFLOW_SANDBOX_ADDR=127.0.0.1:0", "REPORTING_ADDR=127.0.0.1:0",
	}, app.Mode{Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Start(context.Background(), cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Stop()
		if err := a.Wait(); err != nil {
			t.Error(err)
		}
	})
	return a
}

func TestDemo_leadsArriveInTheSandboxCRM(t *testing.T) {
	t.Parallel()
	a := startSystem(t)
	out, err := execute(t, []string{"BROKERFLOW_NATS_CREDS_DIR=" + a.CredsDir}, "demo", "--url", a.WebhookURL, "--sandbox-url", a.SandboxURL, "--server", a.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "HTTP 202") != 5 || !strings.Contains(out, "holds 4 people and 5 events") || !strings.Contains(out, a.SandboxURL+"/") {
		t.Fatalf("demo output:\n%s", out)
	}
	people := a.Sandbox.FUB().People()
	if len(people) != 4 {
		t.Fatalf("%d people in the sandbox, want 4", len(people))
	}
	// The stage change flowed from the sandbox's webhook through the
	// gateway and crm-sync to the bus.
	if !strings.Contains(out, `crm-sync announced crm.contact.stage_changed: "Lead" -> "Active Client", active client: true.`) {
		t.Fatalf("demo output lacks the stage change:\n%s", out)
	}
	// tms-sync opened one loop for her, prefilled, read from the sandbox's state.
	if !strings.Contains(out, `tms-sync opened Dotloop loop`) || !strings.Contains(out, "ada.lovelace@example.com") ||
		!strings.Contains(out, `as BUYER; property "14 Main St".`) || len(a.Sandbox.Dotloop().Loops()) != 1 {
		t.Fatalf("demo output lacks the loop (%d loops):\n%s", len(a.Sandbox.Dotloop().Loops()), out)
	}
	// The loop marked sold became one invoice in QuickBooks, for her, with the agent and the
	// property of her latest lead.
	invoices := a.Sandbox.QuickBooks().Objects(sandbox.DefaultQuickBooksRealm, sandbox.QBInvoice)
	if !strings.Contains(out, "ledger-sync booked QuickBooks Invoice") || !strings.Contains(out, "to Ada Lovelace for 15750.00") ||
		!strings.Contains(out, "agent Sandbox Agent") || !strings.Contains(out, `property "14 Main St"`) ||
		!strings.Contains(out, "lead -> contact -> loop -> invoice") || len(invoices) != 1 {
		t.Fatalf("demo output lacks the invoice (%d invoices):\n%s", len(invoices), out)
	}
	// Half of it paid in QuickBooks reached the gateway as a signed webhook, and ledger-sync
	// announced that payment of the booked invoice.
	if !strings.Contains(out, "ledger-sync announced ledger.commission.paid: payment") || !strings.Contains(out, "of 7875.00") ||
		!strings.Contains(out, "balance 7875.00, fully paid: false") || !strings.Contains(out, "-> paid") {
		t.Fatalf("demo output lacks the payment:\n%s", out)
	}
}

// An operator lists a failure and redrives it, against a running system.
// publishUndecodable publishes, as the gateway (only it may publish a
// received webhook), a webhook no normalizer can decode.
func publishUndecodable(t *testing.T, a *app.App, subject string) {
	t.Helper()
	opts, err := a.ConnectOptions(bus.ServiceGateway)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(a.NATSURL, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.Publish(subject, []byte{0xff, 0x01}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
}

func TestFailures_lsAndRedrive(t *testing.T) {
	t.Parallel()
	a := startSystem(t)
	// A message no normalizer can decode: a permanent failure.
	publishUndecodable(t, a, "webhook.received.lead.idx")
	// The CLI finds the operator's seed that brokerflow run made.
	environ := []string{"BROKERFLOW_NATS_URL=" + a.NATSURL, "BROKERFLOW_NATS_CREDS_DIR=" + a.CredsDir}
	natstest.Eventually(t, 30*time.Second, "a listed failure", func() bool {
		out, err := execute(t, environ, "failures", "ls")
		return err == nil && strings.Contains(out, "normalizer/WEBHOOKS/1") && strings.Contains(out, "message.decode")
	})
	// The three arguments alerts print still name it.
	out, code := run(t, environ, "failures", "redrive", "normalizer", bus.StreamWebhooks, "1", "--by", "ops-test")
	if code != cli.ExitPartial || !strings.Contains(out, "[1/1] normalizer/WEBHOOKS/1 failed again: message.decode") {
		t.Fatalf("redrive: exit %d\n%s", code, out)
	}
	// Still undecodable: the redrive failed again, and ls says so.
	out, err := execute(t, environ, "failures", "ls", "--service", "normalizer")
	if err != nil || !strings.Contains(out, "normalizer/WEBHOOKS/1") || !strings.Contains(out, "failed_again") {
		t.Fatalf("ls after the redrive: %v\n%s", err, out)
	}
}

func TestUsers_initThenRenderForACluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() + "/creds"
	out, err := execute(t, nil, "users", "init", "--dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range bus.Users() {
		if !strings.Contains(out, user) {
			t.Fatalf("init output lacks %s:\n%s", user, out)
		}
	}
	values, err := execute(t, nil, "users", "helm-values", "--dir", dir)
	if err != nil || !strings.Contains(values, "authorization:") || !strings.Contains(values, "webhook.received.>") {
		t.Fatalf("helm-values: %v\n%s", err, values)
	}
	secrets, err := execute(t, []string{"BROKERFLOW_NATS_CREDS_DIR=" + dir}, "users", "secrets", "--namespace", "brokers")
	if err != nil || strings.Count(secrets, "kind: Secret") != len(bus.Users()) || !strings.Contains(secrets, "namespace: brokers") {
		t.Fatalf("secrets: %v\n%s", err, secrets)
	}
}
