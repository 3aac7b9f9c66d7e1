package cli_test

import (
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// fubAccount is a Follow Up Boss account on a sandbox over HTTP, and the
// settings crm-sync would use for it: the command sees a vendor.
func fubAccount(t *testing.T) (*sandbox.FUB, []string) {
	t.Helper()
	sb := sandbox.New(sandbox.Options{})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close)
	return sb.FUB(), []string{
		"CRMSYNC_FUB_BASE_URL=" + srv.URL + "/fub",
		"CRMSYNC_FUB_API_KEY=" + sandbox.DefaultFUBAPIKey,
		"CRMSYNC_FUB_SYSTEM=" + sandbox.DefaultFUBSystem,
		"CRMSYNC_FUB_SYSTEM_KEY=" + sandbox.DefaultFUBSystemKey,
	}
}

func TestCRMWebhooks_registerTwiceIsOneSetThenLsAndRm(t *testing.T) {
	t.Parallel()
	fub, env := fubAccount(t)
	const callback = "https://leads.example.com/webhooks/followupboss"
	out, err := execute(t, env, "crm", "webhooks", "register", "--url", "https://leads.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "registered  ") != 3 || strings.Contains(out, "already") {
		t.Fatalf("first register:\n%s", out)
	}
	// Again, with the URL given by the environment: nothing new.
	out, err = execute(t, append(env, "BROKERFLOW_PUBLIC_URL=https://leads.example.com"), "crm", "webhooks", "register")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "already registered") != 3 || strings.Count(out, "\nregistered") != 0 || strings.HasPrefix(out, "registered") {
		t.Fatalf("second register:\n%s", out)
	}
	hooks := fub.Webhooks()
	var events []string
	for _, h := range hooks {
		if h.URL != callback || h.Status != "Active" {
			t.Fatalf("webhook %+v, want %s, active", h, callback)
		}
		events = append(events, h.Event)
	}
	slices.Sort(events)
	if !slices.Equal(events, followupboss.WebhookEvents()) || len(events) != 3 {
		t.Fatalf("registered events %v, want %v once each", events, followupboss.WebhookEvents())
	}

	// Another system's URL for one event stays untouched by rm.
	other, err := fub.RegisterWebhook("peopleCreated", "https://other.example.com/hook")
	if err != nil {
		t.Fatal(err)
	}
	out, err = execute(t, env, "crm", "webhooks", "ls")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, callback) != 3 || !strings.Contains(out, "https://other.example.com/hook") || !strings.HasPrefix(out, "ID") {
		t.Fatalf("ls:\n%s", out)
	}

	out, err = execute(t, env, "crm", "webhooks", "rm", "--url", "https://leads.example.com")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "removed webhook") != 3 {
		t.Fatalf("rm:\n%s", out)
	}
	if left := fub.Webhooks(); len(left) != 1 || left[0].ID != other.ID {
		t.Fatalf("after rm: %+v, want only the other URL's webhook", left)
	}
	// rm by id.
	if _, err := execute(t, env, "crm", "webhooks", "rm", "4"); err != nil {
		t.Fatal(err)
	}
	if left := fub.Webhooks(); len(left) != 0 {
		t.Fatalf("after rm 4: %+v", left)
	}
}

func TestCRMWebhooks_clearErrors(t *testing.T) {
	t.Parallel()
	_, env := fubAccount(t)
	tests := map[string]struct {
		environ []string
		args    []string
		want    string
	}{
		"no_public_url":  {env, []string{"register"}, "BROKERFLOW_PUBLIC_URL"},
		"not_a_url":      {env, []string{"register", "--url", "leads.example.com"}, "https://"},
		"no_system_key":  {append(slices.Clone(env), "CRMSYNC_FUB_SYSTEM_KEY="), []string{"register", "--url", "https://x.example.com"}, "CRMSYNC_FUB_SYSTEM_KEY"},
		"no_api_key":     {[]string{"CRMSYNC_FUB_SYSTEM_KEY=k"}, []string{"ls"}, "CRMSYNC_FUB_API_KEY"},
		"wrong_key":      {append(slices.Clone(env), "CRMSYNC_FUB_API_KEY=revoked"), []string{"ls"}, "401"},
		"unknown_id":     {env, []string{"rm", "99"}, "404"},
		"not_an_id":      {env, []string{"rm", "abc"}, "not a webhook id"},
		"unregistered":   {append(slices.Clone(env), "CRMSYNC_FUB_SYSTEM_KEY=wrong"), []string{"ls"}, "403"},
		"empty_rm_is_ok": {env, []string{"rm", "--url", "https://nothing.example.com"}, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			out, err := execute(t, tc.environ, append([]string{"crm", "webhooks"}, tc.args...)...)
			if tc.want == "" {
				if err != nil || !strings.Contains(out, "no webhook points at") {
					t.Fatalf("out %q, err %v", out, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func TestCRMWebhooks_lionDeskIsPolled(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"register", "ls", "rm"} {
		out, err := execute(t, []string{"CRMSYNC_CRM=liondesk", "CRMSYNC_LIONDESK_ACCESS_TOKEN=t"}, "crm", "webhooks", sub, "--url", "https://x.example.com")
		if err != nil || !strings.Contains(out, "LionDesk sends no webhooks") || !strings.Contains(out, "polls") {
			t.Fatalf("%s: out %q, err %v", sub, out, err)
		}
	}
}

// brokerflow run --sandbox registers its gateway with the same calls: the
// command, run after it with --sandbox, finds every webhook in place.
func TestCRMWebhooks_runSandboxRegisteredTheSameSet(t *testing.T) {
	t.Parallel()
	a := startSystem(t)
	addr := strings.TrimPrefix(a.SandboxURL, "http://")
	out, err := execute(t, []string{"BROKERFLOW_SANDBOX_ADDR=" + addr}, "crm", "webhooks", "register", "--sandbox", "--url", a.WebhookURL)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(out, "already registered") != 3 || len(a.Sandbox.FUB().Webhooks()) != 3 {
		t.Fatalf("register after run --sandbox:\n%s\nwebhooks %+v", out, a.Sandbox.FUB().Webhooks())
	}
}
