package gateway

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"slices"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// Verifier authenticates one request from its headers and raw body. It
// returns the provider's delivery id when the scheme carries one.
type Verifier interface {
	Verify(h http.Header, body []byte) (deliveryID string, err error)
}

var _ Verifier = (*webhooksig.StandardWebhooks)(nil)

// Source is one configured lead, CRM or TMS source: its route, its kind,
// how it authenticates and where its webhooks are published.
type Source struct {
	// Name matches [a-z0-9_-]+ and is the last token of the subject.
	Name  string
	Kind  webhookv1.Kind
	Route string
	// Verifiers must all accept a request. Each may hold several secrets.
	Verifiers []Verifier
	// ContentTypes are the accepted media types; others get 415.
	ContentTypes []string
	// JSON bodies are checked to be well-formed (400 otherwise).
	JSON bool
}

var sourceNameRe = regexp.MustCompile(`^[a-z0-9_-]+$`)

// kindTokens are the subject tokens of each kind.
var kindTokens = map[webhookv1.Kind]string{
	webhookv1.Kind_KIND_LEAD:   "lead",
	webhookv1.Kind_KIND_CRM:    "crm",
	webhookv1.Kind_KIND_TMS:    "tms",
	webhookv1.Kind_KIND_LEDGER: "ledger",
}

// Subject is webhook.received.<kind>.<source>.
func (s Source) Subject() string {
	return "webhook.received." + kindTokens[s.Kind] + "." + s.Name
}

// Validate reports what is wrong with the source, naming it.
func (s Source) Validate() error {
	switch {
	case !sourceNameRe.MatchString(s.Name):
		return fmt.Errorf("source %q: name must match [a-z0-9_-]+", s.Name)
	case kindTokens[s.Kind] == "":
		return fmt.Errorf("source %q: kind %v is not lead, crm, tms or ledger", s.Name, s.Kind)
	case len(s.Route) < 2 || s.Route[0] != '/':
		return fmt.Errorf("source %q: route %q must be an absolute path", s.Name, s.Route)
	case len(s.Verifiers) == 0:
		return fmt.Errorf("source %q: no verifier: a source that cannot prove who it is gets nothing in", s.Name)
	case len(s.ContentTypes) == 0:
		return fmt.Errorf("source %q: no content type", s.Name)
	}
	return nil
}

func (s Source) acceptsContentType(header string) bool {
	mt, _, err := mime.ParseMediaType(header)
	return err == nil && slices.Contains(s.ContentTypes, mt)
}

// verify runs every verifier and returns the first delivery id found.
func (s Source) verify(h http.Header, body []byte) (string, error) {
	var id string
	for _, v := range s.Verifiers {
		got, err := v.Verify(h, body)
		if err != nil {
			return "", err
		}
		if id == "" {
			id = got
		}
	}
	return id, nil
}

// Registry maps routes to sources.
type Registry struct {
	byRoute map[string]Source
	order   []string
}

// NewRegistry validates sources and rejects duplicate names or routes.
func NewRegistry(sources ...Source) (*Registry, error) {
	r := &Registry{byRoute: map[string]Source{}}
	names := map[string]bool{}
	var errs []error
	for _, s := range sources {
		if err := s.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("source %q: declared twice", s.Name))
			continue
		}
		if _, dup := r.byRoute[s.Route]; dup {
			errs = append(errs, fmt.Errorf("source %q: route %s already taken", s.Name, s.Route))
			continue
		}
		names[s.Name] = true
		r.byRoute[s.Route] = s
		r.order = append(r.order, s.Route)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(r.order) == 0 {
		return nil, errors.New("no source is configured")
	}
	return r, nil
}

// Sources lists the sources in declaration order.
func (r *Registry) Sources() []Source {
	out := make([]Source, 0, len(r.order))
	for _, route := range r.order {
		out = append(out, r.byRoute[route])
	}
	return out
}

// BuiltinSources returns the sources this version knows that cfg configures:
// the brokerage's own IDX website, signed with Standard Webhooks, when its
// secrets are set, and Follow Up Boss (fub.go) when its system keys are set.
func BuiltinSources(cfg Config) ([]Source, error) {
	secrets, err := service.Secrets(cfg.IDXSecrets, cfg.IDXSecretsFile)
	if err != nil {
		return nil, err
	}
	var sources []Source
	if len(secrets) > 0 {
		sw, err := webhooksig.NewStandardWebhooks(secrets, cfg.TimestampTolerance)
		if err != nil {
			return nil, fmt.Errorf("source \"idx\": %w", err)
		}
		sources = append(sources, Source{
			Name:         "idx",
			Kind:         webhookv1.Kind_KIND_LEAD,
			Route:        "/webhooks/idx",
			Verifiers:    []Verifier{sw},
			ContentTypes: []string{"application/json"},
			JSON:         true,
		})
	}
	fubKeys, err := service.Secrets(cfg.FUBSystemKeys, cfg.FUBSystemKeysFile)
	if err != nil {
		return nil, err
	}
	if len(fubKeys) > 0 {
		fub, err := fubSource(fubKeys)
		if err != nil {
			return nil, err
		}
		sources = append(sources, fub)
	}
	return sources, nil
}
