package sources_test

import (
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/sources"
)

func TestParse_presetAndOverrides(t *testing.T) {
	t.Parallel()
	specs, err := sources.Parse([]byte(`
sources:
  - name: website
    preset: idx
    mapping:
      phone: body.data?.mobile
`), "sources.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := specs[0]
	if s.Route != "/webhooks/website" || s.Kind != "lead" || s.Auth.Scheme != sources.SchemeStandardWebhooks ||
		s.Auth.SecretsEnv != "SOURCE_WEBSITE_SECRETS" || s.Mapping["phone"] != "body.data?.mobile" || s.Mapping["email"] != "body.data?.email" {
		t.Fatalf("spec = %+v", s)
	}
}

func TestParse_errorsNameTheSourceAndTheField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown_preset", `sources: [{name: z, preset: nope}]`, `preset "nope" is not one of`},
		{"bad_name", `sources: [{name: Zillow!, preset: idx}]`, `source "Zillow!": name`},
		{"no_auth", `sources: [{name: v, mapping: {email: body.email}}]`, `source "v": auth.scheme: missing`},
		{"bad_scheme", `sources: [{name: v, auth: {scheme: magic}, mapping: {email: body.email}}]`, `source "v": auth.scheme: "magic"`},
		{"hmac_without_header", `sources: [{name: v, auth: {scheme: hmac_sha256}, mapping: {email: body.email}}]`, `source "v": auth.header`},
		{"unknown_field", `sources: [{name: v, preset: idx, mapping: {shoe_size: body.x}}]`, `source "v": mapping.shoe_size`},
		{"unknown_key", `sources: [{name: v, preset: idx, color: red}]`, `field color not found`},
		{"bad_format", `sources: [{name: v, preset: idx, format: xml}]`, `source "v": format: "xml"`},
		{"duplicate_route", `sources: [{name: a, preset: idx, route: /x}, {name: b, preset: idx, route: /x}]`, `route /x is already source "a"'s`},
		{"bad_expression", `sources: [{name: v, preset: idx, mapping: {email: "body.data?.email +"}}]`, `source "v": mapping.email`},
		{"crm_source_on_two_lines", "sources: [{name: v, preset: idx, crm_source: \"My\\nSite\"}]", `source "v": crm_source`},
		{"crm_source_too_long", `sources: [{name: v, preset: idx, crm_source: ` + strings.Repeat("x", sources.MaxCRMSource+1) + `}]`, `source "v": crm_source`},
		{"bad_template_regex", `sources: [{name: m, preset: idx, format: email, templates: [{name: t, fields: {email: "("}}]}]`, `templates[0].fields.email`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := sources.Parse([]byte(tt.yaml), "sources.yaml")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestResolve_readsSecretsAndNamesWhatIsMissing(t *testing.T) {
	t.Parallel()
	specs, err := sources.Parse([]byte(`sources: [{name: website, preset: idx}, {name: other, preset: idx}]`), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	err = sources.Resolve(specs, map[string]string{"SOURCE_WEBSITE_SECRETS": "whsec_a, whsec_b"})
	if err == nil || !strings.Contains(err.Error(), `source "other": auth: no secret in SOURCE_OTHER_SECRETS`) {
		t.Fatalf("err = %v", err)
	}
	if got := specs[0].Auth.Secrets; len(got) != 2 || got[1] != "whsec_b" {
		t.Fatalf("secrets = %v", got)
	}
}

func TestParse_crmSource(t *testing.T) {
	t.Parallel()
	specs, err := sources.Parse([]byte(`
sources:
  - {name: zillow, preset: zillow, crm_source: Zillow Premier Agent}
  - {name: idx-vendor, preset: fub_events}
`), "sources.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if specs[0].CRMSource != "Zillow Premier Agent" {
		t.Errorf("zillow crm_source = %q", specs[0].CRMSource)
	}
	// The Follow Up Boss event preset reads the vendor's own source name.
	if specs[1].CRMSource != "" || specs[1].Mapping["crm_source"] != "body?.source" {
		t.Errorf("fub_events crm_source %q, mapping %q", specs[1].CRMSource, specs[1].Mapping["crm_source"])
	}
}

func TestCleanCRMSource(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"MyAwesomeWebsite.com":          "MyAwesomeWebsite.com",
		"  My   Site \t":                "My Site",
		"Line\nbreak\x00and\x1bcontrol": "Line break and control",
		strings.Repeat("é", 150):        strings.Repeat("é", sources.MaxCRMSource),
		"":                              "",
	} {
		if got := sources.CleanCRMSource(in); got != want {
			t.Errorf("CleanCRMSource(%q) = %q, want %q", in, got, want)
		}
	}
}
