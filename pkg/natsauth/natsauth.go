// Package natsauth gives every user of the bus (each service, the operator
// and the analyst) its own NATS credentials: an nkey whose seed sits in a
// file only its owner can read, and the permissions that bus.UserPermissions
// derives from the declarations. The embedded server and the tests use it
// directly; a cluster gets the same users as NATS configuration.
package natsauth

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/brokerflow/brokerflow/pkg/bus"
)

// SeedFile is where user's nkey seed is kept in dir.
func SeedFile(dir, user string) string { return filepath.Join(dir, user+".nk") }

// Ensure creates dir (mode 0700) and a seed file (mode 0600) for every user
// of the bus that has none yet. Existing seeds are kept, so credentials
// survive restarts; delete a file to rotate that user's key.
func Ensure(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("credentials dir: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("credentials dir: %w", err)
	}
	for _, user := range bus.Users() {
		path := SeedFile(dir, user)
		if _, err := os.Stat(path); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("credentials of %s: %w", user, err)
		}
		kp, err := nkeys.CreateUser()
		if err != nil {
			return fmt.Errorf("new nkey for %s: %w", user, err)
		}
		seed, err := kp.Seed()
		if err != nil {
			return fmt.Errorf("new nkey for %s: %w", user, err)
		}
		if err := os.WriteFile(path, append(seed, '\n'), 0o600); err != nil {
			return fmt.Errorf("write credentials of %s: %w", user, err)
		}
	}
	return nil
}

// PublicKey reads user's seed in dir and returns its public key.
func PublicKey(dir, user string) (string, error) {
	b, err := os.ReadFile(SeedFile(dir, user))
	if err != nil {
		return "", fmt.Errorf("credentials of %s: %w", user, err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(b))))
	if err != nil {
		return "", fmt.Errorf("credentials of %s: %w", user, err)
	}
	defer kp.Wipe()
	return kp.PublicKey()
}

// ServerUsers returns the nkey users of the bus, with their permissions,
// for a server's Options.Nkeys.
func ServerUsers(dir string) ([]*server.NkeyUser, error) {
	users, err := load(dir)
	if err != nil {
		return nil, err
	}
	out := make([]*server.NkeyUser, 0, len(users))
	for _, u := range users {
		out = append(out, &server.NkeyUser{Nkey: u.publicKey, Permissions: serverPermissions(u.perms)})
	}
	return out, nil
}

// user is one user of the bus: its public key and its permissions.
type user struct {
	name      string
	publicKey string
	perms     bus.Permissions
}

// load reads the public key of every user of the bus from its seed in dir.
func load(dir string) ([]user, error) {
	var out []user
	for _, name := range bus.Users() {
		pub, err := PublicKey(dir, name)
		if err != nil {
			return nil, err
		}
		p, err := bus.UserPermissions(name)
		if err != nil {
			return nil, err
		}
		out = append(out, user{name: name, publicKey: pub, perms: p})
	}
	return out, nil
}

func serverPermissions(p bus.Permissions) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.PublishAllow, Deny: p.PublishDeny},
		Subscribe: &server.SubjectPermission{Allow: p.SubscribeAllow},
	}
}

// Options are the connection options of user with its seed in dir: the
// nkey, and the inbox prefix that user may subscribe to.
func Options(dir, user string) ([]nats.Option, error) {
	opt, err := nats.NkeyOptionFromSeed(SeedFile(dir, user))
	if err != nil {
		return nil, fmt.Errorf("credentials of %s: %w", user, err)
	}
	return []nats.Option{opt, nats.CustomInboxPrefix(bus.InboxPrefix(user))}, nil
}
