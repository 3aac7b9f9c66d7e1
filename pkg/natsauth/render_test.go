package natsauth_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.yaml.in/yaml/v3"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natsauth"
	"github.com/brokerflow/brokerflow/pkg/natstest"
)

// A cluster gets the users as NATS configuration. The rendered file, read
// by a real server the way a cluster's servers read theirs, refuses and
// allows what the embedded users do.
func TestServerConfig_aServerReadingItEnforcesThePermissions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	creds := filepath.Join(dir, "creds")
	if err := natsauth.Ensure(creds); err != nil {
		t.Fatal(err)
	}
	auth, err := natsauth.ServerConfig(creds)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nats.conf")
	body := fmt.Sprintf("listen: \"127.0.0.1:-1\"\njetstream { store_dir: %q }\ninclude \"auth.conf\"\n", filepath.Join(dir, "store"))
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.conf"), auth, 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server rejects the rendered configuration: %v", err)
	}
	opts.NoLog, opts.NoSigs = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(natstest.Scale(20 * time.Second)) {
		t.Fatal("server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	srv := &natstest.Server{Server: ns}

	_, ojs := natstest.ConnectAs(t, srv, creds, bus.UserOperator)
	natstest.Apply(t, ojs, bus.DefaultTopology())
	_, gjs := natstest.ConnectAs(t, srv, creds, bus.ServiceGateway)
	if _, err := gjs.Publish(natstest.Context(t, 10*time.Second), "webhook.received.lead.idx", []byte("lead")); err != nil {
		t.Fatalf("the gateway publishes a webhook: %v", err)
	}
	var v violations
	nc, _ := natstest.ConnectAs(t, srv, creds, bus.ServiceNormalizer, nats.ErrorHandler(v.handler))
	if err := nc.Publish("webhook.received.lead.idx", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	_ = nc.FlushWithContext(context.Background())
	natstest.Eventually(t, 10*time.Second, "the refusal of a forged webhook", func() bool { return v.about("webhook.received.lead.idx") })
	if _, err := nats.Connect(ns.ClientURL()); err == nil {
		t.Fatal("a connection without credentials was accepted")
	}
}

func TestHelmValuesAndSecrets_holdPublicKeysAndOneSeedEach(t *testing.T) {
	t.Parallel()
	creds := t.TempDir()
	if err := natsauth.Ensure(creds); err != nil {
		t.Fatal(err)
	}
	values, err := natsauth.HelmValues(creds)
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		Config struct {
			Merge struct {
				Authorization struct {
					Users []struct {
						Nkey string `yaml:"nkey"`
					} `yaml:"users"`
				} `yaml:"authorization"`
			} `yaml:"merge"`
		} `yaml:"config"`
	}
	if err := yaml.Unmarshal(values, &parsed); err != nil {
		t.Fatal(err)
	}
	users := parsed.Config.Merge.Authorization.Users
	if len(users) != len(bus.Users()) {
		t.Fatalf("%d users in the Helm values, want %d", len(users), len(bus.Users()))
	}
	for _, u := range users {
		if !strings.HasPrefix(u.Nkey, "U") {
			t.Fatalf("nkey %q is not a user public key", u.Nkey)
		}
	}
	for _, user := range bus.Users() {
		seed, err := os.ReadFile(natsauth.SeedFile(creds, user))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(values), strings.TrimSpace(string(seed))) {
			t.Fatalf("the Helm values hold the seed of %s", user)
		}
	}
	secrets, err := natsauth.Secrets(creds, "brokerflow")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(secrets), "---\n")
	if len(docs) != len(bus.Users()) {
		t.Fatalf("%d Secrets, want one per user", len(docs))
	}
	for i, user := range bus.Users() {
		seed, err := os.ReadFile(natsauth.SeedFile(creds, user))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(docs[i], natsauth.SecretName(user)) || !strings.Contains(docs[i], strings.TrimSpace(string(seed))) {
			t.Fatalf("Secret %d is not %s with its seed:\n%s", i, user, docs[i])
		}
		for _, other := range bus.Users() {
			oseed, err := os.ReadFile(natsauth.SeedFile(creds, other))
			if err != nil {
				t.Fatal(err)
			}
			if other != user && strings.Contains(docs[i], strings.TrimSpace(string(oseed))) {
				t.Fatalf("the Secret of %s holds the seed of %s", user, other)
			}
		}
	}
}
