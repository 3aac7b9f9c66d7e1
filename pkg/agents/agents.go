// Package agents is the agent directory: one file that maps each agent of
// the brokerage across systems, the CRM user, the Dotloop profile, and for
// the ledger the commission plan and the QuickBooks vendor. tms-sync reads
// it to open a loop in the assigned agent's profile and to name the agent of
// a closing; ledger-sync reads it to book the commission.
//
// The file is YAML (docs/tms.md#the-agent-directory):
//
//	agents:
//	  - id: ada
//	    name: Ada Agent
//	    email: ada@brokerage.example
//	    crm_user_id: "12"
//	    dotloop_profile_id: "4711"
//	    commission_plan: standard-70-30
//	    quickbooks_vendor_id: "56"
//	    default: true
//
// Load validates it, so that a mistake stops the start.
package agents

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Agent is one agent.
type Agent struct {
	// ID is the agent's id in Brokerflow's events ([a-z0-9_-]).
	ID    string `yaml:"id"`
	Name  string `yaml:"name"`
	Email string `yaml:"email,omitempty"`
	// CRMUserID is the agent's user id in the CRM (Follow Up Boss's
	// assignedUserId).
	CRMUserID string `yaml:"crm_user_id,omitempty"`
	// DotloopProfileID is the agent's INDIVIDUAL profile in Dotloop, where
	// their loops are opened.
	DotloopProfileID string `yaml:"dotloop_profile_id,omitempty"`
	// CommissionPlan (a plan id of the commission plans file, pkg/commission;
	// empty for the default plan) and QuickBooksVendorID are for ledger-sync.
	CommissionPlan     string `yaml:"commission_plan,omitempty"`
	QuickBooksVendorID string `yaml:"quickbooks_vendor_id,omitempty"`
	// Default takes the contacts whose assigned agent is unknown or not in
	// the directory. At most one agent is the default.
	Default bool `yaml:"default,omitempty"`
}

// Directory is a validated agent directory.
type Directory struct {
	agents []Agent
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("agent directory")

// ErrNoAgent is a lookup that found no agent and no default.
var ErrNoAgent = errors.New("no agent in the directory")

var idRe = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// Load reads and validates the directory at path.
func Load(path string) (*Directory, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return Parse(b)
}

// Parse reads and validates a directory.
func Parse(b []byte) (*Directory, error) {
	var f struct {
		Agents []Agent `yaml:"agents"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	d := &Directory{agents: f.Agents}
	return d, d.validate()
}

// New returns a directory of agents, validated.
func New(agents ...Agent) (*Directory, error) {
	d := &Directory{agents: agents}
	return d, d.validate()
}

func (d *Directory) validate() error {
	if len(d.agents) == 0 {
		return fmt.Errorf("%w: no agents", ErrInvalid)
	}
	ids, crm, defaults := map[string]bool{}, map[string]bool{}, 0
	for i, a := range d.agents {
		at := fmt.Sprintf("agent %d (%q)", i+1, a.ID)
		switch {
		case !idRe.MatchString(a.ID):
			return fmt.Errorf("%w: %s: id must match [a-z0-9_-]{1,64}", ErrInvalid, at)
		case ids[a.ID]:
			return fmt.Errorf("%w: %s: id appears twice", ErrInvalid, at)
		case a.Name == "":
			return fmt.Errorf("%w: %s: name is required", ErrInvalid, at)
		case a.CRMUserID != "" && crm[a.CRMUserID]:
			return fmt.Errorf("%w: %s: crm_user_id %q belongs to another agent", ErrInvalid, at, a.CRMUserID)
		}
		if a.DotloopProfileID != "" {
			if n, err := strconv.ParseInt(a.DotloopProfileID, 10, 64); err != nil || n <= 0 {
				return fmt.Errorf("%w: %s: dotloop_profile_id %q is not a profile id", ErrInvalid, at, a.DotloopProfileID)
			}
		}
		ids[a.ID] = true
		if a.CRMUserID != "" {
			crm[a.CRMUserID] = true
		}
		if a.Default {
			defaults++
		}
	}
	if defaults > 1 {
		return fmt.Errorf("%w: %d agents are the default; at most one may be", ErrInvalid, defaults)
	}
	return nil
}

// Agents returns every agent.
func (d *Directory) Agents() []Agent { return append([]Agent(nil), d.agents...) }

// ForCRMUser returns the agent of a CRM user id, else the default agent.
func (d *Directory) ForCRMUser(id string) (Agent, error) {
	if id != "" {
		for _, a := range d.agents {
			if a.CRMUserID == id {
				return a, nil
			}
		}
	}
	for _, a := range d.agents {
		if a.Default {
			return a, nil
		}
	}
	return Agent{}, fmt.Errorf("%w for CRM user %q, and no default agent", ErrNoAgent, id)
}

// ForDotloopProfile returns the agent of a Dotloop profile. No profile (a
// SkySlope sale names none) is no one's, not the first agent's without one.
func (d *Directory) ForDotloopProfile(id string) (Agent, bool) {
	if id == "" {
		return Agent{}, false
	}
	for _, a := range d.agents {
		if a.DotloopProfileID == id {
			return a, true
		}
	}
	return Agent{}, false
}
