package cli_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/cli"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// connect runs `brokerflow connect <vendor>` against the NATS server at
// server with a "browser" that follows the printed URL (checked by check):
// the sandbox approves and redirects to the loopback callback. It returns
// what the command printed.
func connect(t *testing.T, server string, env []string, vendor string, check func(authURL string)) string {
	t.Helper()
	ctx := natstest.Context(t, time.Minute)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- cli.Execute(ctx, []string{"connect", vendor, "--listen", "127.0.0.1:0", "--server", server}, env, pw, io.Discard)
		_ = pw.Close()
	}()
	var out strings.Builder
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		if strings.HasPrefix(line, "http") {
			check(line)
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, line, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
		}
	}
	if err := <-done; err != nil || !strings.Contains(out.String(), "connected "+vendor) {
		t.Fatalf("connect: %v\n%s", err, out.String())
	}
	return out.String()
}

// TestTMS_connectThenManageWebhooks: `brokerflow connect dotloop` runs the
// authorization-code flow with a loopback redirect against the sandbox and
// stores the tokens; `brokerflow tms webhooks` then registers, lists and
// removes subscriptions with them.
func TestTMS_connectThenManageWebhooks(t *testing.T) {
	t.Parallel()
	a := startSystem(t)
	env := []string{
		"BROKERFLOW_NATS_CREDS_DIR=" + a.CredsDir,
		"TMSSYNC_DOTLOOP_BASE_URL=" + a.SandboxURL + "/dotloop/public/v2", "TMSSYNC_DOTLOOP_AUTH_URL=" + a.SandboxURL + "/dotloop/oauth",
		"TMSSYNC_DOTLOOP_CLIENT_ID=" + sandbox.DefaultDotloopClientID, "TMSSYNC_DOTLOOP_CLIENT_SECRET=" + sandbox.DefaultDotloopClientSecret,
	}
	connect(t, a.NATSURL, env, "dotloop", func(string) {})
	if valid, _ := a.Sandbox.Dotloop().TokenCounts(); valid != 2 {
		t.Fatalf("%d valid access tokens, want the run's and the new one", valid)
	}

	run := func(args ...string) string {
		t.Helper()
		o, err := execute(t, env, append(args, "--server", a.NATSURL)...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, o)
		}
		return o
	}
	if o := run("tms", "webhooks", "register", "https://gateway.example/webhooks/dotloop", "--signing-key", "k2"); !strings.Contains(o, "subscribed 2") {
		t.Fatalf("register: %s", o)
	}
	if o := run("tms", "webhooks", "ls"); !strings.Contains(o, "https://gateway.example/webhooks/dotloop") || !strings.Contains(o, a.WebhookURL+"/webhooks/dotloop") {
		t.Fatalf("ls: %s", o)
	}
	run("tms", "webhooks", "rm", "2")
	if o := run("tms", "webhooks", "ls"); strings.Contains(o, "gateway.example") {
		t.Fatalf("ls after rm: %s", o)
	}
	if _, err := execute(t, env, "tms", "webhooks", "register", "https://x.example/h", "--server", a.NATSURL); err == nil || !strings.Contains(err.Error(), "signing-key") {
		t.Fatalf("register without a key: %v", err)
	}
}

// TestTMS_connectSkySlope: `brokerflow connect skyslope` runs the PKCE flow
// with a loopback redirect against the sandbox's SkySlope (which refuses an
// authorization without a challenge and a code without its verifier) and
// stores the tokens.
func TestTMS_connectSkySlope(t *testing.T) {
	t.Parallel()
	a := startSystem(t)
	env := []string{
		"BROKERFLOW_NATS_CREDS_DIR=" + a.CredsDir,
		"TMSSYNC_SKYSLOPE_AUTH_BASE_URL=" + a.SandboxURL + "/skyslope/oauth2", "TMSSYNC_SKYSLOPE_FORMS_BASE_URL=" + a.SandboxURL + "/skyslope/partner/api",
		"TMSSYNC_SKYSLOPE_FILES_BASE_URL=" + a.SandboxURL + "/skyslope",
		"TMSSYNC_SKYSLOPE_CLIENT_ID=" + sandbox.DefaultSkySlopeClientID, "TMSSYNC_SKYSLOPE_CLIENT_SECRET=" + sandbox.DefaultSkySlopeClientSecret,
		"TMSSYNC_SKYSLOPE_ACCESS_KEY=" + sandbox.DefaultSkySlopeAccessKey, "TMSSYNC_SKYSLOPE_ACCESS_SECRET=" + sandbox.DefaultSkySlopeAccessSecret,
		"TMSSYNC_SKYSLOPE_FILES_CLIENT_ID=" + sandbox.DefaultSkySlopeFilesClientID, "TMSSYNC_SKYSLOPE_FILES_CLIENT_SECRET=" + sandbox.DefaultSkySlopeFilesClientSecret,
	}
	connect(t, a.NATSURL, env, "skyslope", func(authURL string) {
		if !strings.Contains(authURL, "code_challenge_method=S256") || !strings.Contains(authURL, "forms.files") {
			t.Errorf("the authorization URL asks no S256 challenge or no forms.files scope: %s", authURL)
		}
	})
	if valid, _, _ := a.Sandbox.SkySlope().TokenCounts(); valid != 1 {
		t.Fatalf("%d valid SkySlope access tokens, want the new one", valid)
	}
	if _, err := execute(t, []string{"BROKERFLOW_NATS_CREDS_DIR=" + a.CredsDir}, "connect", "skyslope", "--server", a.NATSURL); err == nil || !strings.Contains(err.Error(), "TMSSYNC_SKYSLOPE_CLIENT_ID") {
		t.Fatalf("connect without a client: %v", err)
	}
}
