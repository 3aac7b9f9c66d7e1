package app_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natsauth"
)

func TestSystem_eachServiceOnItsOwnUserByDefault(t *testing.T) {
	t.Parallel()
	s := start(t)
	if s.CredsDir == "" {
		t.Fatal("brokerflow run made no users")
	}
	for _, user := range bus.Users() {
		st, err := os.Stat(natsauth.SeedFile(s.CredsDir, user))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("seed of %s: %v (mode %v), want an owner-only file", user, err, st.Mode().Perm())
		}
	}
	if nc, err := nats.Connect(s.NATSURL); err == nil {
		nc.Close()
		t.Fatal("a connection without credentials was accepted")
	}
	var banner bytes.Buffer
	s.PrintBanner(&banner)
	for _, want := range []string{natsauth.SeedFile(s.CredsDir, bus.UserOperator), "--nkey " + natsauth.SeedFile(s.CredsDir, bus.UserAnalyst)} {
		if !strings.Contains(banner.String(), want) {
			t.Fatalf("banner lacks %q:\n%s", want, banner.String())
		}
	}
}

func TestSystem_usersOffIsASetting(t *testing.T) {
	t.Parallel()
	s := start(t, "BROKERFLOW_NATS_USERS=false")
	if s.CredsDir != "" {
		t.Fatalf("users off, yet credentials in %s", s.CredsDir)
	}
	nc, err := nats.Connect(s.NATSURL)
	if err != nil {
		t.Fatalf("users off: %v", err)
	}
	nc.Close()
}
