package service

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/nats-io/nats.go"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
)

// NATSConfig is how a service reaches NATS. It is embedded in each
// service's Config under the prefix <SERVICE>_NATS_.
type NATSConfig struct {
	URL      string `env:"URL" envDefault:"nats://127.0.0.1:4222"`
	User     string `env:"USER"`
	Password string `env:"PASSWORD"`
	// CredsFile is a NATS .creds file (JWT + nkey), for a secured cluster.
	CredsFile string `env:"CREDS_FILE"`
	// NkeyFile is the seed of the service's own nkey user
	// (docs/security.md): the server grants it only its own subjects.
	NkeyFile string `env:"NKEY_FILE"`
	// InboxPrefix is where replies come back; with a user of its own, a
	// service may subscribe to _INBOX_<service>.> only. Connect sets it
	// from the connection's name when a user file is given.
	InboxPrefix string `env:"INBOX_PREFIX"`
}

// Connect opens a connection named name that reconnects forever.
func (c NATSConfig) Connect(name string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
	}
	if c.User != "" {
		opts = append(opts, nats.UserInfo(c.User, c.Password))
	}
	if c.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(c.CredsFile))
	}
	if c.NkeyFile != "" {
		opt, err := nats.NkeyOptionFromSeed(c.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("NATS nkey: %w", err)
		}
		opts = append(opts, opt)
	}
	prefix := c.InboxPrefix
	if prefix == "" && (c.NkeyFile != "" || c.CredsFile != "") {
		prefix = bus.InboxPrefix(name)
	}
	if prefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(prefix))
	}
	nc, err := nats.Connect(c.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", c.URL, err)
	}
	return nc, nil
}

// TopologyConfig holds the stream and consumer settings a deployment
// chooses. Only the apply step reads it (`brokerflow streams apply`, and the
// all-in-one at its start, under BROKERFLOW_BUS_).
type TopologyConfig struct {
	// Replicas is 1 on an embedded server, 3 on a cluster.
	Replicas int `env:"REPLICAS" envDefault:"1"`
	// MaxAge and MaxBytes bound every stream; 0 keeps everything.
	MaxAge          time.Duration `env:"MAX_AGE" envDefault:"0"`
	MaxBytes        int64         `env:"MAX_BYTES" envDefault:"0"`
	DuplicateWindow time.Duration `env:"DUPLICATE_WINDOW" envDefault:"1h"`
	AckWait         time.Duration `env:"ACK_WAIT" envDefault:"30s"`
	// ConsumeConfig's retry schedule sets each consumer's MaxDeliver; the
	// all-in-one hands it to every service it runs.
	ConsumeConfig
}

// Topology returns the bus topology, with MaxDeliver set by the retry schedule.
func (c TopologyConfig) Topology() bus.Topology {
	return bus.Topology{
		Replicas:        c.Replicas,
		MaxAge:          c.MaxAge,
		MaxBytes:        c.MaxBytes,
		DuplicateWindow: c.DuplicateWindow,
		AckWait:         c.AckWait,
		MaxDeliver:      len(c.schedule()) + 1,
	}
}

// ConsumeConfig is how a consuming service retries and bounds its handlers,
// under the prefix <SERVICE>_BUS_. Which delivery is the last is the
// server's MaxDeliver, set by the apply step.
type ConsumeConfig struct {
	// RetrySchedule is the delay before each retry of a transient failure;
	// the apply step delivers a message at most len(RetrySchedule)+1 times.
	RetrySchedule []time.Duration `env:"RETRY_SCHEDULE" envDefault:"1s,5s,30s,2m,10m,30m,1h"`
	// HandlerTimeout bounds one handler call. A handler that runs past it
	// failed transiently: it is retried, and recorded on its last delivery.
	HandlerTimeout time.Duration `env:"HANDLER_TIMEOUT" envDefault:"5m"`
}

// Policy returns the retry policy of the schedule.
func (c ConsumeConfig) Policy() bus.Policy {
	p := bus.DefaultPolicy()
	p.Schedule = c.schedule()
	return p
}

// Validate reports the first invalid setting.
func (c ConsumeConfig) Validate() error {
	for _, d := range c.RetrySchedule {
		if d <= 0 {
			return fmt.Errorf("%w: every retry delay must be positive", bus.ErrInvalidTopology)
		}
	}
	if c.HandlerTimeout < 0 {
		return fmt.Errorf("%w: handler timeout must not be negative", bus.ErrInvalidTopology)
	}
	return nil
}

func (c ConsumeConfig) schedule() []time.Duration {
	if len(c.RetrySchedule) == 0 {
		return bus.DefaultSchedule
	}
	return c.RetrySchedule
}

// LogConfig is how a service logs, under the prefix <SERVICE>_LOG_.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level slog.Level `env:"LEVEL" envDefault:"info"`
	// PII turns off the redaction of emails, phones and names. Only for a
	// developer's own machine.
	PII bool `env:"PII" envDefault:"false"`
}

// Logger returns the slog JSON logger of c, writing to w.
func (c LogConfig) Logger(w io.Writer) *slog.Logger {
	return logging.New(w, logging.Options{Level: c.Level, LogPII: c.PII})
}

// ParseEnv fills cfg from environ ("KEY=value" pairs, as os.Environ returns)
// under prefix, applying the defaults in its struct tags.
func ParseEnv(cfg any, prefix string, environ []string) error {
	if err := env.ParseWithOptions(cfg, env.Options{Prefix: prefix, Environment: EnvMap(environ)}); err != nil {
		return fmt.Errorf("config %s*: %w", prefix, err)
	}
	return nil
}

// EnvMap turns "KEY=value" pairs into a map.
func EnvMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return m
}

// ReadSecret fills *dst with the first line of file when *dst is empty and
// file is set, so that one secret can come from the environment or from a
// mounted file. Its errors name the variable name.
func ReadSecret(dst *string, file, name string) error {
	if *dst != "" || file == "" {
		return nil
	}
	s, err := Secrets(nil, file)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if len(s) == 0 {
		return fmt.Errorf("%s: the file holds no secret", name)
	}
	*dst = s[0]
	return nil
}

// Secrets returns the comma-separated values of inline plus the non-empty
// lines of file, so that a secret can come from the environment or from a
// mounted Kubernetes Secret. Several values let a secret rotate. An inline
// value may hold several lines too (a Secret's key taken into the
// environment, as optional keys are): each line is a value.
func Secrets(inline []string, file string) ([]string, error) {
	var out []string
	for _, v := range inline {
		for s := range strings.SplitSeq(v, "\n") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	if file == "" {
		return out, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read secrets file: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, nil
}
