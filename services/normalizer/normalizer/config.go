package normalizer

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nyaruka/phonenumbers"

	"github.com/brokerflow/brokerflow/pkg/service"
)

// Prefix is the environment prefix of every normalizer setting.
const Prefix = "NORMALIZER_"

// Config is the normalizer's configuration, from NORMALIZER_* variables.
type Config struct {
	// DefaultRegion is the ISO 3166 region used to read phone numbers
	// written without a country code.
	DefaultRegion string `env:"DEFAULT_REGION" envDefault:"US"`
	// OpsAddr serves /healthz, /readyz and /metrics; empty disables it.
	OpsAddr string `env:"OPS_ADDR" envDefault:":9091"`
	// Concurrency is the number of webhooks normalized at once.
	Concurrency     int           `env:"CONCURRENCY" envDefault:"8"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// SourcesFile is the sources file (the same one the gateway reads);
	// empty means the built-in idx source. first_party (gRPC SubmitLead)
	// is known either way.
	SourcesFile string `env:"SOURCES_FILE"`
	// Graph reads Facebook leads; its token is required only when a source
	// has format facebook_leadgen.
	Graph GraphConfig `envPrefix:"GRAPH_"`

	NATS service.NATSConfig    `envPrefix:"NATS_"`
	Bus  service.ConsumeConfig `envPrefix:"BUS_"`
	Log  service.LogConfig     `envPrefix:"LOG_"`
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("normalizer config")

// ConfigFromEnv parses NORMALIZER_* from environ and validates it.
func ConfigFromEnv(environ []string) (Config, error) {
	var c Config
	if err := service.ParseEnv(&c, Prefix, environ); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	if phonenumbers.GetCountryCodeForRegion(strings.ToUpper(c.DefaultRegion)) == 0 {
		return fmt.Errorf("%w: NORMALIZER_DEFAULT_REGION %q is not a region libphonenumber knows (e.g. US, CA, GB)", ErrConfig, c.DefaultRegion)
	}
	if c.Concurrency < 1 {
		return fmt.Errorf("%w: NORMALIZER_CONCURRENCY must be at least 1", ErrConfig)
	}
	return c.Bus.Validate()
}
