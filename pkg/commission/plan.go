// Package commission divides a closing's gross commission as the
// brokerage's commission plans say: the agent's split (which changes when
// the agent reaches the plan's cap over their plan year), the transaction
// and franchise fees, and a referral fee paid out.
//
// Plans are data in a YAML file, assigned to agents through the agent
// directory (pkg/agents, commission_plan), with one default plan:
//
//	plans:
//	  - id: standard-70-30
//	    default: true
//	    agent_split: 70            # % of the commission to split that the agent keeps
//	    cap: "18000.00"            # brokerage share per plan year after which...
//	    post_cap_agent_split: 100  # ...the agent keeps this % instead
//	    plan_year_start: "01-01"   # MM-DD: the agent's plan year begins on this day
//	    transaction_fee: "395.00"  # per closing, out of the agent's share
//	    franchise_fee: 6           # % of the gross, off the top
//	    referral: off_the_top      # or from_agent_share
//
// Amounts are decimal strings of at most two decimals, computed with as
// integer cents; percentages have at most two decimals (70.25). Split is
// the pure computation; its rounding is documented there.
package commission

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/brokerflow/brokerflow/pkg/agents"
	"github.com/brokerflow/brokerflow/pkg/money"
)

// How a referral fee is paid.
const (
	// ReferralOffTheTop pays the referral out of the gross before the
	// split: the agent and the brokerage bear it in the split's proportion.
	ReferralOffTheTop = "off_the_top"
	// ReferralFromAgentShare pays it out of the agent's share alone.
	ReferralFromAgentShare = "from_agent_share"
)

// Plan is one commission plan, amounts in cents and percentages in basis
// points (1% = 100).
type Plan struct {
	ID      string
	Default bool
	// AgentSplitBP is the agent's part of the commission to split before
	// the cap; PostCapAgentSplitBP after it.
	AgentSplitBP, PostCapAgentSplitBP int64
	// CapMinor is the brokerage share over a plan year after which
	// PostCapAgentSplitBP applies; 0 for no cap.
	CapMinor int64
	// YearStartMonth and YearStartDay begin the agent's plan year.
	YearStartMonth time.Month
	YearStartDay   int
	// TransactionFeeMinor is charged per closing, out of the agent's share.
	TransactionFeeMinor int64
	// FranchiseFeeBP is a percentage of the gross, paid off the top.
	FranchiseFeeBP int64
	// Referral is ReferralOffTheTop or ReferralFromAgentShare.
	Referral string
}

// PlanYear returns the first day (YYYY-MM-DD) of the plan year that date
// (YYYY-MM-DD) falls in.
func (p Plan) PlanYear(date string) (string, error) {
	d, err := time.Parse(time.DateOnly, date)
	if err != nil {
		return "", fmt.Errorf("commission: the closing date %q is not YYYY-MM-DD", date)
	}
	start := time.Date(d.Year(), p.YearStartMonth, p.YearStartDay, 0, 0, 0, 0, time.UTC)
	if d.Before(start) {
		start = start.AddDate(-1, 0, 0)
	}
	return start.Format(time.DateOnly), nil
}

// Plans is a validated set of plans.
type Plans struct {
	plans []Plan
}

// ErrInvalid is wrapped by every validation error of a plans file.
var ErrInvalid = errors.New("commission plans")

// ErrNoPlan is an agent with no plan of their own and no default plan.
var ErrNoPlan = errors.New("no commission plan")

type planYAML struct {
	ID                string `yaml:"id"`
	Default           bool   `yaml:"default"`
	AgentSplit        string `yaml:"agent_split"`
	Cap               string `yaml:"cap"`
	PostCapAgentSplit string `yaml:"post_cap_agent_split"`
	PlanYearStart     string `yaml:"plan_year_start"`
	TransactionFee    string `yaml:"transaction_fee"`
	FranchiseFee      string `yaml:"franchise_fee"`
	Referral          string `yaml:"referral"`
}

var idRe = regexp.MustCompile(`^[a-z0-9_.-]{1,64}$`)

// Load reads and validates the plans file at path.
func Load(path string) (*Plans, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return Parse(b)
}

// Parse reads and validates a plans file.
func Parse(b []byte) (*Plans, error) {
	var f struct {
		Plans []planYAML `yaml:"plans"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(f.Plans) == 0 {
		return nil, fmt.Errorf("%w: no plans", ErrInvalid)
	}
	ps := &Plans{}
	for i, y := range f.Plans {
		p, err := y.plan()
		if err != nil {
			return nil, fmt.Errorf("%w: plan %d (%q): %w", ErrInvalid, i+1, y.ID, err)
		}
		ps.plans = append(ps.plans, p)
	}
	return ps, ps.validate()
}

// New returns a set of plans, validated.
func New(plans ...Plan) (*Plans, error) {
	ps := &Plans{plans: plans}
	if len(plans) == 0 {
		return nil, fmt.Errorf("%w: no plans", ErrInvalid)
	}
	for i, p := range plans {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("%w: plan %d (%q): %w", ErrInvalid, i+1, p.ID, err)
		}
	}
	return ps, ps.validate()
}

func (ps *Plans) validate() error {
	ids, defaults := map[string]bool{}, 0
	for _, p := range ps.plans {
		if ids[p.ID] {
			return fmt.Errorf("%w: plan id %q appears twice", ErrInvalid, p.ID)
		}
		ids[p.ID] = true
		if p.Default {
			defaults++
		}
	}
	if defaults > 1 {
		return fmt.Errorf("%w: %d plans are the default; at most one may be", ErrInvalid, defaults)
	}
	return nil
}

func percent(field, v string) (int64, error) {
	bp, err := money.ParseMinor(v)
	if err != nil || bp > 10000 {
		return 0, fmt.Errorf("%s %q must be a percentage from 0 to 100 with at most two decimals", field, v)
	}
	return bp, nil
}

func amount(field, v string) (int64, error) {
	if strings.TrimSpace(v) == "" {
		return 0, nil
	}
	m, err := money.ParseMinor(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	return m, nil
}

func (y planYAML) plan() (Plan, error) {
	p := Plan{ID: y.ID, Default: y.Default, Referral: y.Referral}
	var err error
	if strings.TrimSpace(y.AgentSplit) == "" {
		return p, errors.New("agent_split is required")
	}
	if p.AgentSplitBP, err = percent("agent_split", y.AgentSplit); err != nil {
		return p, err
	}
	if p.CapMinor, err = amount("cap", y.Cap); err != nil {
		return p, err
	}
	switch {
	case strings.TrimSpace(y.PostCapAgentSplit) != "":
		if p.PostCapAgentSplitBP, err = percent("post_cap_agent_split", y.PostCapAgentSplit); err != nil {
			return p, err
		}
	case p.CapMinor > 0:
		return p, errors.New("post_cap_agent_split is required with a cap")
	default:
		p.PostCapAgentSplitBP = p.AgentSplitBP
	}
	start := y.PlanYearStart
	if start == "" {
		start = "01-01"
	}
	d, err := time.Parse("01-02", start)
	if err != nil || start == "02-29" {
		return p, fmt.Errorf("plan_year_start %q must be MM-DD (and not 02-29)", y.PlanYearStart)
	}
	p.YearStartMonth, p.YearStartDay = d.Month(), d.Day()
	if p.TransactionFeeMinor, err = amount("transaction_fee", y.TransactionFee); err != nil {
		return p, err
	}
	if strings.TrimSpace(y.FranchiseFee) != "" {
		if p.FranchiseFeeBP, err = percent("franchise_fee", y.FranchiseFee); err != nil {
			return p, err
		}
	}
	if p.Referral == "" {
		p.Referral = ReferralOffTheTop
	}
	return p, p.Validate()
}

// Validate reports the first invalid field of p.
func (p Plan) Validate() error {
	switch {
	case !idRe.MatchString(p.ID):
		return errors.New("id must match [a-z0-9_.-]{1,64}")
	case p.AgentSplitBP < 0 || p.AgentSplitBP > 10000, p.PostCapAgentSplitBP < 0 || p.PostCapAgentSplitBP > 10000:
		return errors.New("a split must be from 0 to 100%")
	case p.FranchiseFeeBP < 0 || p.FranchiseFeeBP > 10000:
		return errors.New("franchise_fee must be from 0 to 100%")
	case p.CapMinor < 0, p.TransactionFeeMinor < 0:
		return errors.New("amounts must not be negative")
	case p.Referral != ReferralOffTheTop && p.Referral != ReferralFromAgentShare:
		return fmt.Errorf("referral %q is not %s or %s", p.Referral, ReferralOffTheTop, ReferralFromAgentShare)
	case p.YearStartMonth < time.January || p.YearStartMonth > time.December || p.YearStartDay < 1 || p.YearStartDay > 28 && p.YearStartMonth == time.February:
		return errors.New("plan_year_start is not a day of the year")
	}
	return nil
}

// Plans returns every plan.
func (ps *Plans) Plans() []Plan { return append([]Plan(nil), ps.plans...) }

// Get returns the plan with id.
func (ps *Plans) Get(id string) (Plan, bool) {
	for _, p := range ps.plans {
		if p.ID == id {
			return p, true
		}
	}
	return Plan{}, false
}

// For returns a's plan: the one the directory names, else the default.
func (ps *Plans) For(a agents.Agent) (Plan, error) {
	if a.CommissionPlan != "" {
		if p, ok := ps.Get(a.CommissionPlan); ok {
			return p, nil
		}
		return Plan{}, fmt.Errorf("%w: agent %q names plan %q, which the plans file does not hold", ErrNoPlan, a.ID, a.CommissionPlan)
	}
	for _, p := range ps.plans {
		if p.Default {
			return p, nil
		}
	}
	return Plan{}, fmt.Errorf("%w for agent %q: the directory names none and no plan is the default", ErrNoPlan, a.ID)
}

// Check validates the directory against the plans, so that a mistake
// stops the start rather than a closing: every agent gets a plan.
func (ps *Plans) Check(d *agents.Directory) error {
	for _, a := range d.Agents() {
		if _, err := ps.For(a); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalid, err)
		}
	}
	return nil
}
