package alerter

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/service"
)

// Prefix is the environment prefix of every alerter setting.
const Prefix = "ALERTER_"

// DefaultPagerDutyURL is the Events API v2 endpoint.
const DefaultPagerDutyURL = "https://events.pagerduty.com/v2/enqueue"

// Config is the alerter's configuration, from ALERTER_* variables.
type Config struct {
	// SlackWebhookURL is a Slack incoming webhook; empty: no Slack.
	SlackWebhookURL     string `env:"SLACK_WEBHOOK_URL"`
	SlackWebhookURLFile string `env:"SLACK_WEBHOOK_URL_FILE"`
	// SlackRoute picks the alerts Slack gets (Route); empty: all.
	SlackRoute string `env:"SLACK_ROUTE"`

	// PagerDutyRoutingKey is the Events API v2 integration key; empty: no PagerDuty.
	PagerDutyRoutingKey     string `env:"PAGERDUTY_ROUTING_KEY"`
	PagerDutyRoutingKeyFile string `env:"PAGERDUTY_ROUTING_KEY_FILE"`
	PagerDutyURL            string `env:"PAGERDUTY_URL" envDefault:"https://events.pagerduty.com/v2/enqueue"`
	PagerDutyRoute          string `env:"PAGERDUTY_ROUTE"`

	// WebhookURL receives every alert as JSON signed with Standard Webhooks; empty: none.
	WebhookURL string `env:"WEBHOOK_URL"`
	// WebhookSecret is its whsec_… secret.
	WebhookSecret     string `env:"WEBHOOK_SECRET"`
	WebhookSecretFile string `env:"WEBHOOK_SECRET_FILE"`
	WebhookRoute      string `env:"WEBHOOK_ROUTE"`

	// HTTPTimeout bounds each call to a channel.
	HTTPTimeout time.Duration `env:"HTTP_TIMEOUT" envDefault:"10s"`
	// PII puts emails, phones and names into alerts; off, they are redacted.
	PII bool `env:"PII" envDefault:"false"`

	// GroupWindow: after a group's first alert, its further failures are
	// summarized at most once per window.
	GroupWindow time.Duration `env:"GROUP_WINDOW" envDefault:"5m"`
	// QuietPeriod: a group with no failure for this long alerts at once again.
	QuietPeriod time.Duration `env:"QUIET_PERIOD" envDefault:"30m"`
	// AdvisoryGrace is how long an advisory waits for its failure record.
	AdvisoryGrace time.Duration `env:"ADVISORY_GRACE" envDefault:"10s"`
	// Tick is how often summaries are due and the checks run.
	Tick time.Duration `env:"TICK" envDefault:"10s"`

	// StuckAfter alerts when a consumer's oldest unprocessed message is
	// older; 0 turns the check off.
	StuckAfter time.Duration `env:"STUCK_AFTER" envDefault:"15m"`
	// StreamFullRatio alerts when a stream with limits is this full; 0 off.
	StreamFullRatio float64 `env:"STREAM_FULL_RATIO" envDefault:"0.8"`
	// SilentSources are "source=duration" pairs: alert when no lead webhook
	// arrived from the source for that long. Empty (the default): off.
	SilentSources []string `env:"SILENT_SOURCES"`
	// PollFailingAfter alerts when a poller (LionDesk, SkySlope's sales,
	// QuickBooks' Change Data Capture) has failed every poll for this long,
	// at least twice in a row; 0 turns the check off.
	PollFailingAfter time.Duration `env:"POLL_FAILING_AFTER" envDefault:"10m"`

	OpsAddr         string        `env:"OPS_ADDR" envDefault:":9094"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`

	NATS service.NATSConfig    `envPrefix:"NATS_"`
	Bus  service.ConsumeConfig `envPrefix:"BUS_"`
	Log  service.LogConfig     `envPrefix:"LOG_"`
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("alerter config")

// ConfigFromEnv parses ALERTER_* from environ, reads the secret files and validates.
func ConfigFromEnv(environ []string) (Config, error) {
	var c Config
	if err := service.ParseEnv(&c, Prefix, environ); err != nil {
		return c, err
	}
	return c, c.Resolve()
}

// Resolve reads the secrets from their files, then validates.
func (c *Config) Resolve() error {
	for _, s := range []struct {
		dst        *string
		file, name string
	}{
		{&c.SlackWebhookURL, c.SlackWebhookURLFile, "SLACK_WEBHOOK_URL_FILE"},
		{&c.PagerDutyRoutingKey, c.PagerDutyRoutingKeyFile, "PAGERDUTY_ROUTING_KEY_FILE"},
		{&c.WebhookSecret, c.WebhookSecretFile, "WEBHOOK_SECRET_FILE"},
	} {
		if *s.dst != "" || s.file == "" {
			continue
		}
		v, err := service.Secrets(nil, s.file)
		if err != nil {
			return fmt.Errorf("%w: %s%s: %w", ErrConfig, Prefix, s.name, err)
		}
		if len(v) == 0 {
			return fmt.Errorf("%w: %s%s: the file holds no secret", ErrConfig, Prefix, s.name)
		}
		*s.dst = v[0]
	}
	return c.Validate()
}

// Validate reports the first invalid setting, naming the variable.
func (c Config) Validate() error {
	for _, u := range []struct{ name, v string }{{"SLACK_WEBHOOK_URL", c.SlackWebhookURL}, {"PAGERDUTY_URL", c.PagerDutyURL}, {"WEBHOOK_URL", c.WebhookURL}} {
		if u.v == "" {
			continue
		}
		if p, err := url.Parse(u.v); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("%w: %s%s is not an absolute http(s) URL", ErrConfig, Prefix, u.name)
		}
	}
	if c.WebhookURL != "" && !strings.HasPrefix(c.WebhookSecret, "whsec_") {
		return fmt.Errorf("%w: %sWEBHOOK_SECRET must be a whsec_… secret when %sWEBHOOK_URL is set", ErrConfig, Prefix, Prefix)
	}
	for _, r := range []struct{ name, v string }{{"SLACK_ROUTE", c.SlackRoute}, {"PAGERDUTY_ROUTE", c.PagerDutyRoute}, {"WEBHOOK_ROUTE", c.WebhookRoute}} {
		if _, err := ParseRoute(r.v); err != nil {
			return fmt.Errorf("%w: %s%s: %w", ErrConfig, Prefix, r.name, err)
		}
	}
	if c.GroupWindow <= 0 || c.QuietPeriod <= 0 || c.Tick <= 0 || c.HTTPTimeout <= 0 || c.AdvisoryGrace < 0 || c.PollFailingAfter < 0 {
		return fmt.Errorf("%w: %sGROUP_WINDOW, QUIET_PERIOD, TICK and HTTP_TIMEOUT must be positive, ADVISORY_GRACE and POLL_FAILING_AFTER not negative", ErrConfig, Prefix)
	}
	if _, err := c.silentSources(); err != nil {
		return err
	}
	return c.Bus.Validate()
}

func (c Config) silentSources() (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for _, s := range c.SilentSources {
		name, d, ok := strings.Cut(strings.TrimSpace(s), "=")
		dur, err := time.ParseDuration(d)
		if !ok || name == "" || err != nil || dur <= 0 {
			return nil, fmt.Errorf("%w: %sSILENT_SOURCES: %q is not source=duration (idx=2h)", ErrConfig, Prefix, s)
		}
		out[name] = dur
	}
	return out, nil
}

// Route picks alerts by service, reason code, source and kind. Its text is
// rules separated by ";", any of which may match; a rule is "key=glob"
// pairs separated by ",", all of which must match: "service=crm-sync,
// reason=crm.http_4*; source=zillow". Keys: service, reason, source, kind
// (failure, summary, resolved, rejected, check). The empty route takes every alert.
type Route [][][2]string

// ParseRoute reads a route.
func ParseRoute(s string) (Route, error) {
	var r Route
	for rule := range strings.SplitSeq(s, ";") {
		if strings.TrimSpace(rule) == "" {
			continue
		}
		var pairs [][2]string
		for pair := range strings.SplitSeq(rule, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
			k = strings.TrimSpace(k)
			if !ok || (k != "service" && k != "reason" && k != "source" && k != "kind") {
				return nil, fmt.Errorf("%q: want key=glob with key service, reason, source or kind", pair)
			}
			if _, err := path.Match(v, ""); err != nil {
				return nil, fmt.Errorf("%q: %w", pair, err)
			}
			pairs = append(pairs, [2]string{k, strings.TrimSpace(v)})
		}
		r = append(r, pairs)
	}
	return r, nil
}

// Matches reports whether the route takes a.
func (r Route) Matches(a *Alert) bool {
	if len(r) == 0 {
		return true
	}
	fields := map[string]string{"service": a.Service, "reason": a.ReasonCode, "source": a.Source, "kind": a.KindName()}
	for _, rule := range r {
		all := true
		for _, p := range rule {
			if ok, _ := path.Match(p[1], fields[p[0]]); !ok {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}
