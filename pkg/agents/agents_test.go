package agents_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/agents"
)

const good = `
agents:
  - id: ada
    name: Ada Agent
    crm_user_id: "12"
    dotloop_profile_id: "4711"
    commission_plan: standard-70-30
    quickbooks_vendor_id: "56"
  - id: bob
    name: Bob Broker
    dotloop_profile_id: "4712"
    default: true
  - id: cy
    name: Cy SkySlope
    crm_user_id: "13"
`

func TestDirectory_lookups(t *testing.T) {
	t.Parallel()
	d, err := agents.Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if a, err := d.ForCRMUser("12"); err != nil || a.ID != "ada" || a.QuickBooksVendorID != "56" {
		t.Fatalf("ForCRMUser(12) = %+v, %v", a, err)
	}
	if a, err := d.ForCRMUser("99"); err != nil || a.ID != "bob" {
		t.Fatalf("an unknown CRM user gets the default: %+v, %v", a, err)
	}
	if a, ok := d.ForDotloopProfile("4712"); !ok || a.ID != "bob" {
		t.Fatalf("ForDotloopProfile = %+v", a)
	}
	if a, ok := d.ForDotloopProfile(""); ok {
		t.Fatalf("ForDotloopProfile(\"\") = %+v, want no agent", a)
	}
	if _, ok := d.ForDotloopProfile("1"); ok {
		t.Fatal("unknown profile found")
	}
}

func TestDirectory_noDefault(t *testing.T) {
	t.Parallel()
	d, err := agents.Parse([]byte("agents:\n  - id: ada\n    name: Ada\n    crm_user_id: \"1\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.ForCRMUser("2"); !errors.Is(err, agents.ErrNoAgent) {
		t.Fatalf("err = %v", err)
	}
}

func TestParse_refusesAnInvalidDirectory(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, yaml, want string }{
		{"empty", "agents: []", "no agents"},
		{"bad_id", "agents:\n  - id: Ada\n    name: A", "id must match"},
		{"duplicate_id", "agents:\n  - {id: a, name: A}\n  - {id: a, name: B}", "appears twice"},
		{"no_name", "agents:\n  - {id: a}", "name is required"},
		{"duplicate_crm_user", "agents:\n  - {id: a, name: A, crm_user_id: '1'}\n  - {id: b, name: B, crm_user_id: '1'}", "belongs to another"},
		{"bad_profile", "agents:\n  - {id: a, name: A, dotloop_profile_id: x}", "not a profile id"},
		{"two_defaults", "agents:\n  - {id: a, name: A, default: true}\n  - {id: b, name: B, default: true}", "at most one"},
		{"unknown_field", "agents:\n  - {id: a, name: A, dotloop: x}", "not found"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := agents.Parse([]byte(c.yaml))
			if !errors.Is(err, agents.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}
