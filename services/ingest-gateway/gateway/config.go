package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
)

// Prefix is the environment prefix of every gateway setting.
const Prefix = "GATEWAY_"

// Config is the gateway's configuration, from GATEWAY_* variables.
type Config struct {
	// Addr is where lead sources post webhooks.
	Addr string `env:"ADDR" envDefault:":8080"`
	// OpsAddr serves /healthz, /readyz and /metrics; empty disables it.
	OpsAddr string `env:"OPS_ADDR" envDefault:":9090"`
	// IDXSecrets are the Standard Webhooks secrets (whsec_...) of the
	// brokerage's website; several are valid at once during a rotation.
	IDXSecrets     []string `env:"IDX_SECRETS"`
	IDXSecretsFile string   `env:"IDX_SECRETS_FILE"`
	// FUBSystemKeys are the X-System-Key values Follow Up Boss signs its
	// webhooks with; the followupboss source is served only when set.
	FUBSystemKeys     []string `env:"FUB_SYSTEM_KEYS"`
	FUBSystemKeysFile string   `env:"FUB_SYSTEM_KEYS_FILE"`
	// DotloopSigningKeys are the signing keys of Brokerflow's Dotloop
	// webhook subscriptions; the dotloop source (kind tms) is served only
	// when set. DotloopSigned is what the signature covers: timestamp_body
	// ("<X-DOTLOOP-TIMESTAMP>.<body>") or body.
	DotloopSigningKeys     []string `env:"DOTLOOP_SIGNING_KEYS"`
	DotloopSigningKeysFile string   `env:"DOTLOOP_SIGNING_KEYS_FILE"`
	DotloopSigned          string   `env:"DOTLOOP_SIGNED" envDefault:"timestamp_body"`
	// QuickBooksVerifierTokens are the verifier tokens of the brokerage's
	// Intuit app (its Webhooks page); the quickbooks source (kind ledger)
	// is served only when set. Several are valid at once during a rotation.
	QuickBooksVerifierTokens     []string `env:"QUICKBOOKS_VERIFIER_TOKENS"`
	QuickBooksVerifierTokensFile string   `env:"QUICKBOOKS_VERIFIER_TOKENS_FILE"`
	// SourcesFile is a sources file (pkg/sources): every source it declares
	// is served, with its secrets read from the environment at start, and
	// the IDX and Follow Up Boss sources above are added when they are set
	// and the file does not already declare them.
	SourcesFile string `env:"SOURCES_FILE"`
	// RatePerSource and RateBurst are each source's rate limit, unless its
	// entry in the sources file sets one: authenticated requests per second
	// beyond them get 429 with Retry-After. 0 requests per second is no limit.
	RatePerSource float64 `env:"RATE_PER_SOURCE" envDefault:"50"`
	RateBurst     int     `env:"RATE_BURST" envDefault:"100"`
	// TimestampTolerance bounds the age of a signature, both ways.
	TimestampTolerance time.Duration `env:"TIMESTAMP_TOLERANCE" envDefault:"5m"`
	MaxBodyBytes       int64         `env:"MAX_BODY_BYTES" envDefault:"1048576"`
	// PublishTimeout bounds the wait for JetStream's ack; past it the
	// gateway answers 503 and the provider retries.
	PublishTimeout time.Duration `env:"PUBLISH_TIMEOUT" envDefault:"5s"`
	// GroupCommit stores the deliveries that arrive while a publish is in
	// flight together, as one JetStream atomic batch synced once, instead of
	// one publish (and one fsync) each. A delivery that finds nothing in
	// flight is published at once. GroupCommitMaxMsgs (at most
	// MaxGroupCommitMsgs, the server's cap) and GroupCommitMaxBytes bound a
	// batch; 0 takes the default. GroupCommitInFlight is how many batches
	// may be committing at once (1 to MaxGroupCommitInFlight); the next
	// batch's messages are sent to the server while they commit.
	GroupCommit         bool          `env:"GROUP_COMMIT" envDefault:"true"`
	GroupCommitMaxMsgs  int           `env:"GROUP_COMMIT_MAX_MSGS" envDefault:"1000"`
	GroupCommitMaxBytes int           `env:"GROUP_COMMIT_MAX_BYTES" envDefault:"8388608"`
	GroupCommitInFlight int           `env:"GROUP_COMMIT_IN_FLIGHT" envDefault:"1"`
	ShutdownTimeout     time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// GRPCAddr serves the first-party SubmitLead API (docs/intake-grpc.md),
	// in plaintext; empty disables it. GRPCTokens are its bearer tokens
	// (several during a rotation), required when it is set; GRPCRate bounds
	// its requests per second.
	GRPCAddr       string   `env:"GRPC_ADDR"`
	GRPCTokens     []string `env:"GRPC_TOKENS"`
	GRPCTokensFile string   `env:"GRPC_TOKENS_FILE"`
	GRPCRate       float64  `env:"GRPC_RATE" envDefault:"50"`

	NATS service.NATSConfig `envPrefix:"NATS_"`
	Log  service.LogConfig  `envPrefix:"LOG_"`

	// Environ is the environment the sources file's secrets are read from;
	// ConfigFromEnv sets it, and so does the all-in-one. Configuration is
	// read once, in main: nothing below it reads the process environment.
	Environ map[string]string `env:"-"`
}

func (c Config) environ() map[string]string { return c.Environ }

// ConfigFromEnv parses GATEWAY_* from environ and validates it.
func ConfigFromEnv(environ []string) (Config, error) {
	var c Config
	if err := service.ParseEnv(&c, Prefix, environ); err != nil {
		return c, err
	}
	c.Environ = service.EnvMap(environ)
	return c, c.Validate()
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("gateway config")

// Validate reports the first invalid setting. With a sources file, it
// loads the file and reads its secrets, so that a mistake stops the start.
func (c Config) Validate() error {
	switch {
	case c.Addr == "":
		return fmt.Errorf("%w: GATEWAY_ADDR is empty", ErrConfig)
	case c.MaxBodyBytes <= 0:
		return fmt.Errorf("%w: GATEWAY_MAX_BODY_BYTES must be positive", ErrConfig)
	case c.TimestampTolerance <= 0:
		return fmt.Errorf("%w: GATEWAY_TIMESTAMP_TOLERANCE must be positive", ErrConfig)
	case c.PublishTimeout <= 0:
		return fmt.Errorf("%w: GATEWAY_PUBLISH_TIMEOUT must be positive", ErrConfig)
	case c.RatePerSource < 0 || c.RateBurst < 0:
		return fmt.Errorf("%w: GATEWAY_RATE_PER_SOURCE and GATEWAY_RATE_BURST must not be negative", ErrConfig)
	case c.GroupCommitMaxMsgs < 0 || c.GroupCommitMaxMsgs > MaxGroupCommitMsgs:
		return fmt.Errorf("%w: GATEWAY_GROUP_COMMIT_MAX_MSGS must be 1 to %d (the server's batch cap)", ErrConfig, MaxGroupCommitMsgs)
	case c.GroupCommitMaxBytes < 0:
		return fmt.Errorf("%w: GATEWAY_GROUP_COMMIT_MAX_BYTES must be positive", ErrConfig)
	case c.GroupCommitInFlight < 0 || c.GroupCommitInFlight > MaxGroupCommitInFlight:
		return fmt.Errorf("%w: GATEWAY_GROUP_COMMIT_IN_FLIGHT must be 1 to %d", ErrConfig, MaxGroupCommitInFlight)
	}
	secrets, err := service.Secrets(c.IDXSecrets, c.IDXSecretsFile)
	if err != nil {
		return fmt.Errorf("%w: GATEWAY_IDX_SECRETS_FILE: %w", ErrConfig, err)
	}
	fubKeys, err := service.Secrets(c.FUBSystemKeys, c.FUBSystemKeysFile)
	if err != nil {
		return fmt.Errorf("%w: GATEWAY_FUB_SYSTEM_KEYS_FILE: %w", ErrConfig, err)
	}
	dotloopKeys, err := service.Secrets(c.DotloopSigningKeys, c.DotloopSigningKeysFile)
	if err != nil {
		return fmt.Errorf("%w: GATEWAY_DOTLOOP_SIGNING_KEYS_FILE: %w", ErrConfig, err)
	}
	qbTokens, err := service.Secrets(c.QuickBooksVerifierTokens, c.QuickBooksVerifierTokensFile)
	if err != nil {
		return fmt.Errorf("%w: GATEWAY_QUICKBOOKS_VERIFIER_TOKENS_FILE: %w", ErrConfig, err)
	}
	if len(secrets) == 0 && len(fubKeys) == 0 && len(dotloopKeys) == 0 && len(qbTokens) == 0 && c.SourcesFile == "" && c.GRPCAddr == "" {
		return fmt.Errorf("%w: no source is configured: set GATEWAY_SOURCES_FILE, GATEWAY_IDX_SECRETS (whsec_...), GATEWAY_FUB_SYSTEM_KEYS, GATEWAY_DOTLOOP_SIGNING_KEYS or GATEWAY_QUICKBOOKS_VERIFIER_TOKENS (or their _FILE), or GATEWAY_GRPC_ADDR for first-party intake only", ErrConfig)
	}
	if len(dotloopKeys) > 0 {
		if _, err := webhooksig.NewDotloopSignature(dotloopKeys, webhooksig.DotloopSigned(c.DotloopSigned), c.TimestampTolerance); err != nil {
			return fmt.Errorf("%w: GATEWAY_DOTLOOP_SIGNED: %w", ErrConfig, err)
		}
	}
	if c.SourcesFile != "" {
		srcs, err := ConfiguredSources(c)
		if err == nil {
			_, err = NewRegistry(srcs...)
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	return c.validateGRPC()
}
