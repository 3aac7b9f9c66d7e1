// Package sources is the configuration of the lead, CRM and TMS sources:
// their routes, how each authenticates, its payload format, and how its
// fields map onto the canonical lead. A brokerage adds a source, or fixes a
// field a vendor renamed, by editing a sources file; no rebuild. Built-in
// presets (presets.yaml) hold what Brokerflow knows of each vendor.
//
// The gateway reads routes, auth and formats; the normalizer reads formats
// and mappings. Both load the same file.
package sources

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"

	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// File is a sources file.
type File struct {
	Sources []Spec `yaml:"sources"`
}

// Spec is one source.
type Spec struct {
	// Name matches [a-z0-9_-]+ and is the last token of its subjects.
	Name string `yaml:"name"`
	// Preset names a built-in preset whose settings this source starts from;
	// every field set here overrides the preset's.
	Preset string `yaml:"preset,omitempty"`
	// Kind is lead, crm, tms or ledger.
	Kind string `yaml:"kind,omitempty"`
	// Route is the gateway's path for the source; /webhooks/<name> by default.
	Route string `yaml:"route,omitempty"`
	Auth  Auth   `yaml:"auth,omitempty"`
	// Format is how the body is read: json, form, email or facebook_leadgen.
	Format string `yaml:"format,omitempty"`
	// ContentTypes are the accepted media types; the format's by default.
	ContentTypes []string  `yaml:"content_types,omitempty"`
	RateLimit    RateLimit `yaml:"rate_limit,omitempty"`
	// Items is an expression yielding the list of leads in one delivery;
	// empty means the delivery is one lead.
	Items string `yaml:"items,omitempty"`
	// Mapping maps canonical lead fields (see CanonicalFields) to expressions over
	// the decoded payload, in the expr language (https://expr-lang.org).
	Mapping map[string]string `yaml:"mapping,omitempty"`
	// Templates read lead-notification e-mails (format email).
	Templates []EmailTemplate `yaml:"templates,omitempty"`
	// CRMSource, when set, is the lead source name the CRM records for
	// every lead of this source (Follow Up Boss's event source, LionDesk's
	// contact source). Unset, the mapping's crm_source is used when it
	// yields a value, and else the source's Name.
	CRMSource string `yaml:"crm_source,omitempty"`
	// Notes says what is known of the vendor's contract, for people.
	Notes string `yaml:"notes,omitempty"`
}

// Auth is how a source proves who it is. A source that cannot prove who it
// is gets nothing in: every source has a scheme.
type Auth struct {
	// Scheme is one of Schemes.
	Scheme string `yaml:"scheme,omitempty"`
	// Header carries the signature, key or secret (scheme dependent).
	Header string `yaml:"header,omitempty"`
	// Query names a query parameter carrying a shared secret, for vendors
	// that can only configure a URL.
	Query string `yaml:"query,omitempty"`
	// Encoding of an HMAC: hex or base64.
	Encoding string `yaml:"encoding,omitempty"`
	// Prefix before the signature in the header, e.g. "sha256=".
	Prefix string `yaml:"prefix,omitempty"`
	// Tolerance bounds a signed timestamp's age, both ways.
	Tolerance Duration `yaml:"tolerance,omitempty"`
	// Signed is what a dotloop_signature covers: timestamp_body (the
	// default) or body.
	Signed string `yaml:"signed,omitempty"`
	// SecretsEnv names an environment variable with comma-separated
	// secrets; SecretsFile a file with one per line. Several secrets are
	// valid at once, so that they can rotate.
	SecretsEnv  string `yaml:"secrets_env,omitempty"`
	SecretsFile string `yaml:"secrets_file,omitempty"`
	// VerifyTokenEnv names the variable with Facebook's hub.verify_token.
	VerifyTokenEnv string `yaml:"verify_token_env,omitempty"`
	// DeliveryIDHeader names a header holding the provider's delivery id,
	// for schemes that do not define one. It is metadata: the gateway logs it
	// and stores it among the headers, but the delivery id of such a scheme
	// is a hash of the body, since no signature covers the header.
	DeliveryIDHeader string `yaml:"delivery_id_header,omitempty"`

	// Secrets and VerifyToken are resolved by Resolve, never read from the file.
	Secrets     []string `yaml:"-"`
	VerifyToken string   `yaml:"-"`
}

// Auth schemes.
const (
	SchemeStandardWebhooks = "standard_webhooks" // webhook-id/-timestamp/-signature, whsec_ secrets
	SchemeHMACSHA256       = "hmac_sha256"       // HMAC-SHA256 of the raw body in Header
	SchemeAPIKey           = "api_key"           // a key in Header (Realtor.com's X-API-Key)
	SchemeSharedSecret     = "shared_secret"     // a secret in Header or Query
	SchemeFacebook         = "facebook"          // X-Hub-Signature-256 and the hub.challenge handshake
	SchemeFUBSignature     = "fub_signature"     // FUB-Signature: hex HMAC of base64(body), keyed by X-System-Key
	SchemeBasic            = "basic"             // HTTP Basic, secrets as user:password
	// SchemeDotloopSignature is Dotloop's X-DOTLOOP-SIGNATURE: hex HMAC-SHA1
	// with the subscription's signing key, over "<X-DOTLOOP-TIMESTAMP>.<body>"
	// (or the body alone: Auth.Signed), the timestamp within Auth.Tolerance.
	SchemeDotloopSignature = "dotloop_signature"
)

// Schemes lists every auth scheme.
var Schemes = []string{SchemeStandardWebhooks, SchemeHMACSHA256, SchemeAPIKey, SchemeSharedSecret, SchemeFacebook, SchemeFUBSignature, SchemeBasic, SchemeDotloopSignature}

// Formats.
const (
	FormatJSON            = "json"
	FormatForm            = "form"             // application/x-www-form-urlencoded
	FormatEmail           = "email"            // SendGrid Inbound Parse, multipart/form-data
	FormatFacebookLeadgen = "facebook_leadgen" // leadgen notifications; leads are read from the Graph API
)

// Formats lists every format with the media types it accepts by default.
var Formats = map[string][]string{
	FormatJSON:            {"application/json"},
	FormatForm:            {"application/x-www-form-urlencoded"},
	FormatEmail:           {"multipart/form-data"},
	FormatFacebookLeadgen: {"application/json"},
}

// Kinds of source: a sources file entry's kind, and the token after
// webhook.received. in the subjects of its webhooks.
const (
	KindLead   = "lead"
	KindCRM    = "crm"
	KindTMS    = "tms"
	KindLedger = "ledger"
)

// kinds is the one table of the kinds and their webhook.v1.Kind.
var kinds = []struct {
	name string
	enum webhookv1.Kind
}{
	{KindLead, webhookv1.Kind_KIND_LEAD},
	{KindCRM, webhookv1.Kind_KIND_CRM},
	{KindTMS, webhookv1.Kind_KIND_TMS},
	{KindLedger, webhookv1.Kind_KIND_LEDGER},
}

// Kinds lists every kind of source.
var Kinds = func() []string {
	out := make([]string, len(kinds))
	for i, k := range kinds {
		out[i] = k.name
	}
	return out
}()

// KindEnum is the webhook.v1.Kind of a kind of source; false when name is
// not one of Kinds.
func KindEnum(name string) (webhookv1.Kind, bool) {
	for _, k := range kinds {
		if k.name == name {
			return k.enum, true
		}
	}
	return webhookv1.Kind_KIND_UNSPECIFIED, false
}

// KindName is the kind of source of a webhook.v1.Kind, the subject token:
// "lead", "crm", "tms" or "ledger"; "" for KIND_UNSPECIFIED or a value this
// version does not know.
func KindName(k webhookv1.Kind) string {
	for _, e := range kinds {
		if e.enum == k {
			return e.name
		}
	}
	return ""
}

// FirstParty is the source of the leads the brokerage's own systems submit
// over the gateway's gRPC intake (IntakeService.SubmitLead). The gateway
// persists them on webhook.received.lead.first_party, like webhooks of that
// source; the normalizer always maps them, with the first_party preset.
const FirstParty = "first_party"

// NamePattern is what a source name matches: it is the last token of the
// source's subjects, so it holds no dot, wildcard or space.
const NamePattern = `[a-z0-9_-]+`

var nameRe = regexp.MustCompile(`^` + NamePattern + `$`)

// ValidName reports whether name is a source name (NamePattern).
func ValidName(name string) bool { return nameRe.MatchString(name) }

// CanonicalFields are the canonical lead fields a mapping may set (Fields is
// one lead's values of them).
var CanonicalFields = []string{
	"first_name", "last_name", "full_name", "email", "phone",
	"message", "inquiry_type",
	"property.address", "property.city", "property.state", "property.postal_code",
	"property.mls_number", "property.price", "property.url",
	"agent.name", "agent.email", "agent.id",
	"utm.source", "utm.medium", "utm.campaign", "utm.term", "utm.content", "page_url",
	"delivery_id", "crm_source",
}

// MaxCRMSource bounds the length, in characters, of the lead source name
// sent to the CRM.
const MaxCRMSource = 100

// CleanCRMSource is s as a lead source name for the CRM: control characters
// dropped, white space trimmed and collapsed to single spaces, and cut to
// MaxCRMSource characters. A payload's source is cleaned so; a fixed
// crm_source must already be clean.
func CleanCRMSource(s string) string {
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	if r := []rune(s); len(r) > MaxCRMSource {
		s = strings.TrimSpace(string(r[:MaxCRMSource]))
	}
	return s
}

// RateLimit bounds the requests the gateway accepts from a source; zero
// means the gateway's default.
type RateLimit struct {
	PerSecond float64 `yaml:"per_second,omitempty"`
	Burst     int     `yaml:"burst,omitempty"`
}

// EmailTemplate reads one kind of lead-notification e-mail.
type EmailTemplate struct {
	Name string `yaml:"name"`
	// FromPattern and SubjectPattern are regular expressions; a template
	// applies when both match (an empty one matches anything).
	FromPattern    string `yaml:"from,omitempty"`
	SubjectPattern string `yaml:"subject,omitempty"`
	// Fields maps a field name to a regular expression with one capture
	// group, applied to the e-mail's text; the mapping then reads
	// fields.<name>.
	Fields map[string]string `yaml:"fields"`
}

// Duration is a time.Duration written as "5m" in the file.
type Duration time.Duration

// UnmarshalYAML reads "5m", "30s" and the like.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration like 5m", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration as text.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

//go:embed presets.yaml
var presetsYAML []byte

// Presets returns the built-in presets by name.
func Presets() (map[string]Spec, error) {
	f, err := decode(presetsYAML, "presets.yaml")
	if err != nil {
		return nil, err
	}
	out := make(map[string]Spec, len(f.Sources))
	for _, s := range f.Sources {
		out[s.Name] = s
	}
	return out, nil
}

// Load reads a sources file, applies presets and defaults, and validates
// it. Errors name the source and the field.
func Load(path string) ([]Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("sources file: %w", err)
	}
	return Parse(b, path)
}

// Parse is Load on the file's bytes; name is used in errors.
func Parse(b []byte, name string) ([]Spec, error) {
	f, err := decode(b, name)
	if err != nil {
		return nil, err
	}
	presets, err := Presets()
	if err != nil {
		return nil, fmt.Errorf("built-in presets: %w", err)
	}
	specs := make([]Spec, 0, len(f.Sources))
	var errs []error
	for i, s := range f.Sources {
		if s.Preset != "" {
			p, ok := presets[s.Preset]
			if !ok {
				errs = append(errs, fmt.Errorf("%s: source %d (%q): preset %q is not one of %s", name, i+1, s.Name, s.Preset, presetNames(presets)))
				continue
			}
			s = s.over(p)
		}
		s.defaults()
		specs = append(specs, s)
	}
	errs = append(errs, validateAll(specs, name)...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return specs, nil
}

func decode(b []byte, name string) (File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return f, fmt.Errorf("%s: %w", name, err)
	}
	return f, nil
}

func presetNames(p map[string]Spec) string {
	names := make([]string, 0, len(p))
	for n := range p {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// over returns s with every unset field taken from the preset p.
func (s Spec) over(p Spec) Spec {
	out := p
	out.Name, out.Preset = s.Name, s.Preset
	out.Route = "" // a preset's route is its own name's; the source's is its own
	if s.Kind != "" {
		out.Kind = s.Kind
	}
	if s.Route != "" {
		out.Route = s.Route
	}
	if s.Format != "" {
		out.Format = s.Format
	}
	if len(s.ContentTypes) > 0 {
		out.ContentTypes = s.ContentTypes
	}
	if s.RateLimit != (RateLimit{}) {
		out.RateLimit = s.RateLimit
	}
	if s.Items != "" {
		out.Items = s.Items
	}
	if s.Notes != "" {
		out.Notes = s.Notes
	}
	if len(s.Templates) > 0 {
		out.Templates = s.Templates
	}
	if s.CRMSource != "" {
		out.CRMSource = s.CRMSource
	}
	// Mapping entries override one by one: fixing one renamed field keeps
	// the rest of the preset's mapping.
	out.Mapping = map[string]string{}
	for k, v := range p.Mapping {
		out.Mapping[k] = v
	}
	for k, v := range s.Mapping {
		out.Mapping[k] = v
	}
	out.Auth = p.Auth
	a := s.Auth
	for _, f := range []struct {
		dst *string
		src string
	}{
		{&out.Auth.Scheme, a.Scheme}, {&out.Auth.Header, a.Header}, {&out.Auth.Query, a.Query},
		{&out.Auth.Encoding, a.Encoding}, {&out.Auth.Prefix, a.Prefix}, {&out.Auth.SecretsEnv, a.SecretsEnv},
		{&out.Auth.SecretsFile, a.SecretsFile}, {&out.Auth.VerifyTokenEnv, a.VerifyTokenEnv},
		{&out.Auth.DeliveryIDHeader, a.DeliveryIDHeader},
	} {
		if f.src != "" {
			*f.dst = f.src
		}
	}
	if a.Tolerance != 0 {
		out.Auth.Tolerance = a.Tolerance
	}
	return out
}

// EnvName is the conventional prefix of a source's variables:
// SOURCE_<NAME>_, upper-cased, with - as _.
func EnvName(source string) string {
	return "SOURCE_" + strings.ToUpper(strings.ReplaceAll(source, "-", "_")) + "_"
}

func (s *Spec) defaults() {
	if s.Kind == "" {
		s.Kind = KindLead
	}
	if s.Auth.SecretsEnv == "" && s.Auth.SecretsFile == "" {
		s.Auth.SecretsEnv = EnvName(s.Name) + "SECRETS"
	}
	if s.Auth.Scheme == SchemeFacebook && s.Auth.VerifyTokenEnv == "" {
		s.Auth.VerifyTokenEnv = EnvName(s.Name) + "VERIFY_TOKEN"
	}
	if s.Route == "" {
		s.Route = "/webhooks/" + s.Name
	}
	if s.Format == "" {
		s.Format = FormatJSON
	}
	if len(s.ContentTypes) == 0 {
		s.ContentTypes = Formats[s.Format]
	}
	if s.Auth.Tolerance == 0 {
		s.Auth.Tolerance = Duration(5 * time.Minute)
	}
}

func validateAll(specs []Spec, file string) []error {
	var errs []error
	names, routes := map[string]bool{}, map[string]string{}
	for _, s := range specs {
		if err := s.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		// Every expression compiles at start, in every service that reads
		// the file, so a typo stops the gateway as it stops the normalizer.
		if s.Kind == KindLead {
			if _, err := NewMapper(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", file, err))
				continue
			}
		}
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("%s: source %q: declared twice", file, s.Name))
		}
		if other, ok := routes[s.Route]; ok {
			errs = append(errs, fmt.Errorf("%s: source %q: route %s is already source %q's", file, s.Name, s.Route, other))
		}
		names[s.Name], routes[s.Route] = true, s.Name
	}
	return errs
}

// Validate reports what is wrong with the source, naming it and the field.
func (s Spec) Validate() error {
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("source %q: %s: %s", s.Name, field, fmt.Sprintf(format, args...))
	}
	switch {
	case !ValidName(s.Name):
		return bad("name", "must match %s", NamePattern)
	case !slices.Contains(Kinds, s.Kind):
		return bad("kind", "%q is not one of %s", s.Kind, strings.Join(Kinds, ", "))
	case len(s.Route) < 2 || s.Route[0] != '/':
		return bad("route", "%q must be an absolute path", s.Route)
	case s.Auth.Scheme == "":
		return bad("auth.scheme", "missing: a source that cannot prove who it is gets nothing in (one of %s)", strings.Join(Schemes, ", "))
	case !slices.Contains(Schemes, s.Auth.Scheme):
		return bad("auth.scheme", "%q is not one of %s", s.Auth.Scheme, strings.Join(Schemes, ", "))
	case s.Auth.SecretsEnv == "" && s.Auth.SecretsFile == "":
		return bad("auth", "secrets_env or secrets_file is required")
	case s.Auth.Encoding != "" && s.Auth.Encoding != "hex" && s.Auth.Encoding != "base64":
		return bad("auth.encoding", "%q is not hex or base64", s.Auth.Encoding)
	case (s.Auth.Scheme == SchemeHMACSHA256 || s.Auth.Scheme == SchemeAPIKey) && s.Auth.Header == "":
		return bad("auth.header", "required by scheme %s", s.Auth.Scheme)
	case s.Auth.Scheme == SchemeSharedSecret && s.Auth.Header == "" && s.Auth.Query == "":
		return bad("auth", "scheme shared_secret needs header or query")
	case s.Auth.Scheme == SchemeFacebook && s.Auth.VerifyTokenEnv == "":
		return bad("auth.verify_token_env", "required by scheme facebook (the hub.challenge handshake)")
	case Formats[s.Format] == nil:
		return bad("format", "%q is not one of json, form, email, facebook_leadgen", s.Format)
	case s.RateLimit.PerSecond < 0 || s.RateLimit.Burst < 0:
		return bad("rate_limit", "must not be negative")
	case CleanCRMSource(s.CRMSource) != s.CRMSource:
		return bad("crm_source", "must be one line of at most %d characters, without control characters or extra spaces", MaxCRMSource)
	}
	for field := range s.Mapping {
		if !slices.Contains(CanonicalFields, field) {
			return bad("mapping."+field, "not a canonical lead field (one of %s)", strings.Join(CanonicalFields, ", "))
		}
	}
	if s.Kind == KindLead && len(s.Mapping) == 0 {
		return bad("mapping", "a lead source needs a mapping (or a preset)")
	}
	if s.Format == FormatEmail && len(s.Templates) == 0 {
		return bad("templates", "format email needs at least one template")
	}
	for i, t := range s.Templates {
		for _, p := range []struct{ field, re string }{{"from", t.FromPattern}, {"subject", t.SubjectPattern}} {
			if _, err := regexp.Compile(p.re); err != nil {
				return bad(fmt.Sprintf("templates[%d].%s", i, p.field), "%v", err)
			}
		}
		for name, re := range t.Fields {
			rx, err := regexp.Compile(re)
			if err != nil {
				return bad(fmt.Sprintf("templates[%d].fields.%s", i, name), "%v", err)
			}
			if rx.NumSubexp() != 1 {
				return bad(fmt.Sprintf("templates[%d].fields.%s", i, name), "needs exactly one capture group")
			}
		}
	}
	return nil
}

// Resolve reads each source's secrets (and Facebook's verify token) from
// the environment or their files. The gateway calls it at start: a missing
// secret is an error naming the source and the variable.
func Resolve(specs []Spec, environ map[string]string) error {
	var errs []error
	for i := range specs {
		a := &specs[i].Auth
		a.Secrets = nil
		if a.SecretsEnv != "" {
			for _, v := range strings.Split(environ[a.SecretsEnv], ",") {
				if v = strings.TrimSpace(v); v != "" {
					a.Secrets = append(a.Secrets, v)
				}
			}
		}
		if a.SecretsFile != "" {
			b, err := os.ReadFile(a.SecretsFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("source %q: auth.secrets_file: %w", specs[i].Name, err))
				continue
			}
			for _, line := range strings.Split(string(b), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
					a.Secrets = append(a.Secrets, line)
				}
			}
		}
		if len(a.Secrets) == 0 {
			where := a.SecretsEnv
			if a.SecretsFile != "" {
				where = a.SecretsFile
			}
			errs = append(errs, fmt.Errorf("source %q: auth: no secret in %s", specs[i].Name, where))
		}
		if a.VerifyTokenEnv != "" {
			if a.VerifyToken = strings.TrimSpace(environ[a.VerifyTokenEnv]); a.VerifyToken == "" {
				errs = append(errs, fmt.Errorf("source %q: auth.verify_token_env: %s is not set", specs[i].Name, a.VerifyTokenEnv))
			}
		}
	}
	return errors.Join(errs...)
}
