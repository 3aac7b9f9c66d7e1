package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/brokerflow/brokerflow/pkg/service"
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
	// TimestampTolerance bounds the age of a signature, both ways.
	TimestampTolerance time.Duration `env:"TIMESTAMP_TOLERANCE" envDefault:"5m"`
	MaxBodyBytes       int64         `env:"MAX_BODY_BYTES" envDefault:"1048576"`
	// PublishTimeout bounds the wait for JetStream's ack; past it the
	// gateway answers 503 and the provider retries.
	PublishTimeout  time.Duration `env:"PUBLISH_TIMEOUT" envDefault:"5s"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`

	NATS service.NATSConfig     `envPrefix:"NATS_"`
	Bus  service.TopologyConfig `envPrefix:"BUS_"`
}

// ConfigFromEnv parses GATEWAY_* from environ and validates it.
func ConfigFromEnv(environ []string) (Config, error) {
	var c Config
	if err := service.ParseEnv(&c, Prefix, environ); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("gateway config")

// Validate reports the first invalid setting.
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
	}
	secrets, err := service.Secrets(c.IDXSecrets, c.IDXSecretsFile)
	if err != nil {
		return fmt.Errorf("%w: GATEWAY_IDX_SECRETS_FILE: %w", ErrConfig, err)
	}
	fubKeys, err := service.Secrets(c.FUBSystemKeys, c.FUBSystemKeysFile)
	if err != nil {
		return fmt.Errorf("%w: GATEWAY_FUB_SYSTEM_KEYS_FILE: %w", ErrConfig, err)
	}
	if len(secrets) == 0 && len(fubKeys) == 0 {
		return fmt.Errorf("%w: no source is configured: set GATEWAY_IDX_SECRETS (whsec_...) or GATEWAY_FUB_SYSTEM_KEYS (or their _FILE)", ErrConfig)
	}
	return c.Bus.Topology().Validate()
}
