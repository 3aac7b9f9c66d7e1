package sources_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/sources"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// TestValidName is the one rule for a source name, which the sources file,
// the gateway's sources and the gRPC intake's system field all apply.
func TestValidName(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		want bool
	}{
		{"idx", true},
		{"first_party", true},
		{"open-house-app", true},
		{"zillow2", true},
		{"0", true},
		{"", false},
		{"Zillow", false},
		{"zillow.rentals", false}, // a dot would split the subject token
		{"zillow*", false},
		{"zillow>", false},
		{"open house", false},
		{"zillow\n", false},
		{"zïllow", false},
	} {
		if got := sources.ValidName(tt.name); got != tt.want {
			t.Errorf("ValidName(%q) = %v, want %v", tt.name, got, tt.want)
		}
		spec := sources.Spec{Name: tt.name, Kind: sources.KindCRM, Route: "/webhooks/x", Format: sources.FormatJSON,
			Auth: sources.Auth{Scheme: sources.SchemeBasic, SecretsEnv: "X"}}
		if err := spec.Validate(); (err == nil) != tt.want {
			t.Errorf("Spec{Name: %q}.Validate() = %v, want valid %v", tt.name, err, tt.want)
		}
	}
}

// TestKinds: every webhook.v1.Kind but UNSPECIFIED is a kind of source, its
// name is the enum's own (KIND_CRM is "crm"), and the two maps agree.
func TestKinds(t *testing.T) {
	t.Parallel()
	var names []string
	for v := range webhookv1.Kind_name {
		k := webhookv1.Kind(v)
		name := sources.KindName(k)
		if k == webhookv1.Kind_KIND_UNSPECIFIED {
			if name != "" {
				t.Errorf("KindName(UNSPECIFIED) = %q, want \"\"", name)
			}
			continue
		}
		if want := strings.ToLower(strings.TrimPrefix(k.String(), "KIND_")); name != want {
			t.Errorf("KindName(%v) = %q, want %q", k, name, want)
		}
		if back, ok := sources.KindEnum(name); !ok || back != k {
			t.Errorf("KindEnum(%q) = %v, %v, want %v", name, back, ok, k)
		}
		names = append(names, name)
	}
	if len(names) != len(sources.Kinds) {
		t.Errorf("Kinds = %q, the enum has %q", sources.Kinds, names)
	}
	for _, bad := range []string{"", "LEAD", "KIND_LEAD", "leads", "unspecified"} {
		if k, ok := sources.KindEnum(bad); ok || k != webhookv1.Kind_KIND_UNSPECIFIED {
			t.Errorf("KindEnum(%q) = %v, %v, want UNSPECIFIED, false", bad, k, ok)
		}
	}
	if name := sources.KindName(webhookv1.Kind(99)); name != "" {
		t.Errorf("KindName(99) = %q, want \"\"", name)
	}
	if got := fmt.Sprint(sources.Kinds); got != "[lead crm tms ledger]" {
		t.Errorf("Kinds = %s", got)
	}
}
