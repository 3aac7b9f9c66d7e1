package app

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// SyncPolicy is when the embedded JetStream fsyncs its writes.
type SyncPolicy struct {
	// Always fsyncs before every ack.
	Always bool
	// Interval is the periodic fsync when not Always (the NATS default is 2m).
	Interval time.Duration
}

// ParseSyncPolicy reads "always" or a duration such as "10s" or "2m".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	if strings.EqualFold(strings.TrimSpace(s), "always") {
		return SyncPolicy{Always: true}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return SyncPolicy{}, fmt.Errorf("sync policy %q: want \"always\" or a positive duration like 10s", s)
	}
	return SyncPolicy{Interval: d}, nil
}

func (p SyncPolicy) String() string {
	if p.Always {
		return "always"
	}
	return p.Interval.String()
}

// EmbeddedOptions configure the embedded server.
type EmbeddedOptions struct {
	Host     string
	Port     int
	StoreDir string
	User     string
	Password string
	// Users, when set, are the only users: each with its nkey and permissions.
	Users []*server.NkeyUser
	Sync  SyncPolicy
}

// StartEmbedded starts a JetStream server in this process and waits for it.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "brokerflow",
		Host:       o.Host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		Username:   o.User,
		Password:   o.Password,
		Nkeys:      o.Users,
		NoSigs:     true,
		NoLog:      true,
	}
	if o.Sync.Always {
		opts.SyncAlways = true
		opts.SyncInterval = 2 * time.Minute
	} else {
		opts.SyncInterval = o.Sync.Interval
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("embedded NATS: not ready after 30s")
	}
	return ns, nil
}
