package gateway

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/sources"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// Verifier authenticates one request from its headers and raw body. It
// returns the provider's delivery id when the scheme carries one.
type Verifier interface {
	Verify(h http.Header, body []byte) (deliveryID string, err error)
}

// RequestVerifier is a Verifier that also reads the request line, such as a
// shared secret in a query parameter. The gateway prefers it when a
// verifier implements it.
type RequestVerifier interface {
	VerifyRequest(r *http.Request, body []byte) (deliveryID string, err error)
}

var (
	_ Verifier        = (*webhooksig.StandardWebhooks)(nil)
	_ Verifier        = (*webhooksig.HMACSHA256)(nil)
	_ Verifier        = (*webhooksig.Facebook)(nil)
	_ Verifier        = (*webhooksig.APIKey)(nil)
	_ Verifier        = (*webhooksig.Basic)(nil)
	_ Verifier        = (*webhooksig.FUBSignature)(nil)
	_ RequestVerifier = (*webhooksig.SharedSecret)(nil)
)

// Source is one configured lead, CRM or TMS source: its route, its kind,
// how it authenticates and where its webhooks are published.
type Source struct {
	// Name matches sources.NamePattern and is the last token of the subject.
	Name  string
	Kind  webhookv1.Kind
	Route string
	// Verifiers must all accept a request. Each may hold several secrets.
	Verifiers []Verifier
	// ContentTypes are the accepted media types; others get 415.
	ContentTypes []string
	// Format is how the body must be well-formed (400 otherwise): json,
	// facebook_leadgen (JSON), form (url-encoded) or email (multipart);
	// empty checks nothing.
	Format string
	// Scheme names how the source authenticates (sources.Schemes), for people.
	Scheme string
	// VerifyToken is Facebook's hub.verify_token: when set, GET on the
	// route answers the hub.challenge handshake.
	VerifyToken string
	// DeliveryIDHeader names a header with the provider's delivery id, for
	// schemes whose signature covers none. It is metadata only (logged, and
	// stored among the headers): the delivery id of such a scheme is the
	// body's hash, since an unsigned header could be changed in a replay.
	DeliveryIDHeader string
	// RatePerSecond and RateBurst bound the authenticated requests accepted
	// from the source (429 beyond); zero takes the gateway's defaults.
	RatePerSecond float64
	RateBurst     int
	// SecretHeaders carry credentials (an API key, a shared secret) and are
	// never stored, whatever their name.
	SecretHeaders []string
}

// Subject is webhook.received.<kind>.<source>.
func (s Source) Subject() string {
	return "webhook.received." + sources.KindName(s.Kind) + "." + s.Name
}

// Validate reports what is wrong with the source, naming it.
func (s Source) Validate() error {
	switch {
	case !sources.ValidName(s.Name):
		return fmt.Errorf("source %q: name must match %s", s.Name, sources.NamePattern)
	case sources.KindName(s.Kind) == "":
		return fmt.Errorf("source %q: kind %v is not one of %s", s.Name, s.Kind, strings.Join(sources.Kinds, ", "))
	case len(s.Route) < 2 || s.Route[0] != '/' || strings.ContainsAny(s.Route, "{} \t?#"):
		return fmt.Errorf("source %q: route %q must be an absolute path without {, }, ?, # or spaces", s.Name, s.Route)
	case len(s.Verifiers) == 0:
		return fmt.Errorf("source %q: no verifier: a source that cannot prove who it is gets nothing in", s.Name)
	case len(s.ContentTypes) == 0:
		return fmt.Errorf("source %q: no content type", s.Name)
	case s.Format != "" && sources.Formats[s.Format] == nil:
		return fmt.Errorf("source %q: format %q is not json, form, email or facebook_leadgen", s.Name, s.Format)
	case s.RatePerSecond < 0 || s.RateBurst < 0:
		return fmt.Errorf("source %q: rate limit must not be negative", s.Name)
	}
	return nil
}

func (s Source) acceptsContentType(header string) bool {
	mt, _, err := mime.ParseMediaType(header)
	return err == nil && slices.Contains(s.ContentTypes, mt)
}

// verify runs every verifier and returns the first delivery id found.
func (s Source) verify(r *http.Request, body []byte) (string, error) {
	var id string
	for _, v := range s.Verifiers {
		var (
			got string
			err error
		)
		if rv, ok := v.(RequestVerifier); ok {
			got, err = rv.VerifyRequest(r, body)
		} else {
			got, err = v.Verify(r.Header, body)
		}
		if err != nil {
			return "", err
		}
		if id == "" {
			id = got
		}
	}
	return id, nil
}

// errMalformed is a body that is not well-formed for its source's format.
type errMalformed struct {
	kind, reason string
}

func (e *errMalformed) Error() string { return e.reason }

// wellFormed checks the body against the source's format: it must parse,
// whatever it says. Whether it is a usable lead is the normalizer's call.
func (s Source) wellFormed(contentType string, body []byte) error {
	switch s.Format {
	case sources.FormatJSON, sources.FormatFacebookLeadgen:
		if !json.Valid(body) {
			return &errMalformed{"malformed_json", "the body is not well-formed JSON"}
		}
	case sources.FormatForm:
		if _, err := url.ParseQuery(string(body)); err != nil {
			return &errMalformed{"malformed_form", fmt.Sprintf("the body is not well-formed application/x-www-form-urlencoded: %v", err)}
		}
	case sources.FormatEmail:
		if err := sources.WalkMultipart(body, contentType, nil); err != nil {
			return &errMalformed{"malformed_multipart", fmt.Sprintf("the body is not well-formed multipart/form-data: %v", err)}
		}
	}
	return nil
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

// FromSpec builds the gateway's source from a sources file entry whose
// secrets are resolved (sources.Resolve), with the verifier of its scheme.
func FromSpec(spec sources.Spec) (Source, error) {
	a := spec.Auth
	kind, _ := sources.KindEnum(spec.Kind) // an unknown kind stays unspecified, and Validate says so
	src := Source{
		Name:             spec.Name,
		Kind:             kind,
		Route:            spec.Route,
		ContentTypes:     spec.ContentTypes,
		Format:           spec.Format,
		Scheme:           a.Scheme,
		DeliveryIDHeader: a.DeliveryIDHeader,
		RatePerSecond:    spec.RateLimit.PerSecond,
		RateBurst:        spec.RateLimit.Burst,
	}
	if len(src.ContentTypes) == 0 {
		src.ContentTypes = sources.Formats[spec.Format]
	}
	var (
		v   Verifier
		err error
	)
	switch a.Scheme {
	case sources.SchemeStandardWebhooks:
		v, err = webhooksig.NewStandardWebhooks(a.Secrets, time.Duration(a.Tolerance))
	case sources.SchemeHMACSHA256:
		v, err = webhooksig.NewHMACSHA256(a.Header, webhooksig.Encoding(a.Encoding), a.Prefix, a.Secrets)
	case sources.SchemeAPIKey:
		v, err = webhooksig.NewAPIKey(a.Header, a.Secrets)
		src.SecretHeaders = nonEmpty(a.Header)
	case sources.SchemeSharedSecret:
		v, err = webhooksig.NewSharedSecret(a.Header, a.Query, a.Secrets)
		src.SecretHeaders = nonEmpty(a.Header)
	case sources.SchemeFacebook:
		v, err = webhooksig.NewFacebook(a.Secrets)
		src.VerifyToken = a.VerifyToken
		if err == nil && src.VerifyToken == "" {
			err = errors.New("facebook: no hub.verify_token")
		}
	case sources.SchemeFUBSignature:
		v, err = webhooksig.NewFUBSignature(a.Secrets)
	case sources.SchemeBasic:
		v, err = webhooksig.NewBasic(a.Secrets)
	case sources.SchemeDotloopSignature:
		v, err = webhooksig.NewDotloopSignature(a.Secrets, webhooksig.DotloopSigned(a.Signed), time.Duration(a.Tolerance))
	default:
		err = fmt.Errorf("auth.scheme %q is not one of %s", a.Scheme, strings.Join(sources.Schemes, ", "))
	}
	if err != nil {
		return Source{}, fmt.Errorf("source %q: %w", spec.Name, err)
	}
	src.Verifiers = []Verifier{v}
	return src, src.Validate()
}

func nonEmpty(s ...string) []string {
	return slices.DeleteFunc(s, func(v string) bool { return v == "" })
}

// idxSpec is the built-in IDX website source, signed with Standard Webhooks.
func idxSpec(secrets []string, tolerance time.Duration) sources.Spec {
	return sources.Spec{
		Name: "idx", Kind: sources.KindLead, Route: "/webhooks/idx", Format: sources.FormatJSON,
		Auth: sources.Auth{Scheme: sources.SchemeStandardWebhooks, Secrets: secrets, Tolerance: sources.Duration(tolerance)},
	}
}

// BuiltinSources returns the sources this version knows that cfg configures:
// the brokerage's own IDX website, signed with Standard Webhooks, when its
// secrets are set, Follow Up Boss (fub.go) when its system keys are set,
// Dotloop (dotloop.go) when its signing keys are set, and QuickBooks Online
// (quickbooks.go) when its verifier tokens are set.
func BuiltinSources(cfg Config) ([]Source, error) {
	secrets, err := service.Secrets(cfg.IDXSecrets, cfg.IDXSecretsFile)
	if err != nil {
		return nil, err
	}
	fubKeys, err := service.Secrets(cfg.FUBSystemKeys, cfg.FUBSystemKeysFile)
	if err != nil {
		return nil, err
	}
	var specs []sources.Spec
	if len(secrets) > 0 {
		specs = append(specs, idxSpec(secrets, cfg.TimestampTolerance))
	}
	if len(fubKeys) > 0 {
		specs = append(specs, fubSpec(fubKeys))
	}
	dotloopKeys, err := service.Secrets(cfg.DotloopSigningKeys, cfg.DotloopSigningKeysFile)
	if err != nil {
		return nil, err
	}
	if len(dotloopKeys) > 0 {
		specs = append(specs, dotloopSpec(dotloopKeys, cfg.DotloopSigned, cfg.TimestampTolerance))
	}
	qbTokens, err := service.Secrets(cfg.QuickBooksVerifierTokens, cfg.QuickBooksVerifierTokensFile)
	if err != nil {
		return nil, err
	}
	if len(qbTokens) > 0 {
		specs = append(specs, quickbooksSpec(qbTokens))
	}
	out := make([]Source, 0, len(specs))
	for _, s := range specs {
		src, err := FromSpec(s)
		if err != nil {
			return nil, err
		}
		out = append(out, src)
	}
	return out, nil
}

// ConfiguredSources returns the sources cfg configures: those of
// GATEWAY_SOURCES_FILE, with their secrets resolved from cfg's environment,
// followed by the built-in ones (BuiltinSources) whose name and route the
// file does not already use. A missing secret is an error naming the
// source and the variable.
func ConfiguredSources(cfg Config) ([]Source, error) {
	builtin, err := BuiltinSources(cfg)
	if err != nil || cfg.SourcesFile == "" {
		return builtin, err
	}
	specs, err := sources.Load(cfg.SourcesFile)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_SOURCES_FILE: %w", err)
	}
	if err := sources.Resolve(specs, cfg.environ()); err != nil {
		return nil, fmt.Errorf("GATEWAY_SOURCES_FILE %s: %w", cfg.SourcesFile, err)
	}
	out := make([]Source, 0, len(specs)+len(builtin))
	names, routes := map[string]bool{}, map[string]bool{}
	var errs []error
	for _, spec := range specs {
		src, err := FromSpec(spec)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, src)
		names[src.Name], routes[src.Route] = true, true
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("GATEWAY_SOURCES_FILE %s: %w", cfg.SourcesFile, errors.Join(errs...))
	}
	for _, b := range builtin {
		if !names[b.Name] && !routes[b.Route] {
			out = append(out, b)
		}
	}
	return out, nil
}
