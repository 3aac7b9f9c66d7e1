package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brokerflow/brokerflow/pkg/natsauth"
)

// credsDir is where the users' nkey seeds are: BROKERFLOW_NATS_CREDS_DIR,
// or creds/ in the data directory.
func (c Config) credsDir() (string, error) {
	dir := c.NATSCredsDir
	if dir == "" {
		dir = filepath.Join(c.DataDir, "creds")
	}
	return filepath.Abs(dir)
}

// startNATS starts the embedded server, unless BROKERFLOW_NATS_URL names
// another. With users on (the default), every user of the bus gets an nkey
// in the credentials directory, made on first start and kept after.
func (a *App) startNATS() error {
	cfg := a.cfg
	if cfg.NATSUsers {
		dir, err := cfg.credsDir()
		if err != nil {
			return err
		}
		a.CredsDir = dir
	}
	if cfg.NATSURL != "" {
		a.NATSURL = cfg.NATSURL
		if a.CredsDir != "" {
			// Another server: its users were made from these seeds
			// (docs/security.md). Without them, connect as before.
			if _, err := os.Stat(natsauth.SeedFile(a.CredsDir, "operator")); errors.Is(err, fs.ErrNotExist) {
				a.CredsDir = ""
			}
		}
		return nil
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	eo := EmbeddedOptions{
		Host: cfg.NATSHost, Port: cfg.NATSPort, StoreDir: dir,
		User: cfg.NATSUser, Password: cfg.NATSPassword, Sync: cfg.Sync(),
	}
	if a.CredsDir != "" {
		if err := natsauth.Ensure(a.CredsDir); err != nil {
			return err
		}
		if eo.Users, err = natsauth.ServerUsers(a.CredsDir); err != nil {
			return err
		}
		eo.User, eo.Password = "", ""
	}
	a.ns, err = StartEmbedded(eo)
	if err != nil {
		return err
	}
	a.NATSURL = a.ns.ClientURL()
	return nil
}

// ConnectOptions are the options of a connection as user: its nkey when the
// users are on, else the configured user and password; in process when the
// server is embedded.
func (a *App) ConnectOptions(user string) ([]nats.Option, error) {
	opts := []nats.Option{nats.Name("brokerflow-" + user), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	if a.logger != nil {
		// A refusal by the server (a permission this user lacks) is
		// asynchronous: without this it would go unseen.
		opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			a.logger.Error("nats", "user", user, "err", err)
		}))
	}
	switch {
	case a.CredsDir != "":
		uo, err := natsauth.Options(a.CredsDir, user)
		if err != nil {
			return nil, err
		}
		opts = append(opts, uo...)
	case a.cfg.NATSUser != "":
		opts = append(opts, nats.UserInfo(a.cfg.NATSUser, a.cfg.NATSPassword))
	}
	if a.ns != nil {
		opts = append(opts, nats.InProcessServer(a.ns))
	}
	return opts, nil
}

// connect opens a connection as user, drained when the app closes.
func (a *App) connect(user string) (*nats.Conn, error) {
	opts, err := a.ConnectOptions(user)
	if err != nil {
		return nil, err
	}
	nc, err := nats.Connect(a.NATSURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s as %s: %w", a.NATSURL, user, err)
	}
	a.conns = append(a.conns, nc)
	return nc, nil
}
