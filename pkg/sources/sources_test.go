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
