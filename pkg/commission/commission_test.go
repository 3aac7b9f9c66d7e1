package commission_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/agents"
	"github.com/brokerflow/brokerflow/pkg/commission"
)

// standard is the 70/30 plan with an $18,000 cap, a $395 transaction fee
// and a 6% franchise fee.
var standard = commission.Plan{
	ID: "standard-70-30", AgentSplitBP: 7000, PostCapAgentSplitBP: 10000, CapMinor: 1_800_000,
	YearStartMonth: 1, YearStartDay: 1, TransactionFeeMinor: 39_500, FranchiseFeeBP: 600, Referral: commission.ReferralOffTheTop,
}

func with(p commission.Plan, change func(*commission.Plan)) commission.Plan {
	change(&p)
	return p
}

func TestCompute(t *testing.T) {
	t.Parallel()
	bare := commission.Plan{ID: "bare", AgentSplitBP: 7000, PostCapAgentSplitBP: 7000, YearStartMonth: 1, YearStartDay: 1, Referral: commission.ReferralOffTheTop}
	tests := []struct {
		name                 string
		gross, referral, ytd int64
		plan                 commission.Plan
		want                 commission.Split
	}{
		{
			name: "below_the_cap", gross: 1_575_000, plan: standard,
			// 6% franchise 94,500; 30% of 1,480,500 = 444,150 to the brokerage.
			want: commission.Split{Gross: 1_575_000, FranchiseFee: 94_500, BrokerageShare: 444_150, TransactionFee: 39_500, AgentShare: 996_850, YearToDateAfter: 444_150},
		},
		{
			name: "cap_crossed_mid_deal", gross: 1_575_000, ytd: 1_600_000, plan: standard,
			// 2,000.00 of room left: the brokerage takes exactly it, the
			// rest of the deal is the agent's at 100%.
			want: commission.Split{Gross: 1_575_000, FranchiseFee: 94_500, BrokerageShare: 200_000, TransactionFee: 39_500, AgentShare: 1_241_000, YearToDateBefore: 1_600_000, YearToDateAfter: 1_800_000, CapCrossed: true},
		},
		{
			name: "cap_crossed_mid_deal_with_a_post_cap_split", gross: 1_575_000, ytd: 1_600_000,
			plan: with(standard, func(p *commission.Plan) { p.PostCapAgentSplitBP = 9500 }),
			// 200,000 fills the cap with 666,666.67 of the 1,480,500 split;
			// 5% of the other 813,833.33 is 40,691.67: 240,691.67 → 240,692.
			want: commission.Split{Gross: 1_575_000, FranchiseFee: 94_500, BrokerageShare: 240_692, TransactionFee: 39_500, AgentShare: 1_200_308, YearToDateBefore: 1_600_000, YearToDateAfter: 1_840_692, CapCrossed: true},
		},
		{
			name: "already_capped", gross: 1_575_000, ytd: 1_800_000, plan: standard,
			want: commission.Split{Gross: 1_575_000, FranchiseFee: 94_500, TransactionFee: 39_500, AgentShare: 1_441_000, YearToDateBefore: 1_800_000, YearToDateAfter: 1_800_000, CapCrossed: true},
		},
		{
			name: "reaches_the_cap_exactly", gross: 1_000_000, ytd: 1_500_000, plan: with(standard, func(p *commission.Plan) { p.FranchiseFeeBP, p.TransactionFeeMinor = 0, 0 }),
			want: commission.Split{Gross: 1_000_000, BrokerageShare: 300_000, AgentShare: 700_000, YearToDateBefore: 1_500_000, YearToDateAfter: 1_800_000},
		},
		{
			name: "no_cap", gross: 1_000_000, ytd: 99_000_000, plan: bare,
			want: commission.Split{Gross: 1_000_000, BrokerageShare: 300_000, AgentShare: 700_000, YearToDateBefore: 99_000_000, YearToDateAfter: 99_300_000},
		},
		{
			name: "referral_off_the_top", gross: 1_000_000, referral: 250_000, plan: bare,
			want: commission.Split{Gross: 1_000_000, Referral: 250_000, BrokerageShare: 225_000, AgentShare: 525_000, YearToDateAfter: 225_000},
		},
		{
			name: "referral_from_agent_share", gross: 1_000_000, referral: 250_000,
			plan: with(bare, func(p *commission.Plan) { p.Referral = commission.ReferralFromAgentShare }),
			want: commission.Split{Gross: 1_000_000, Referral: 250_000, BrokerageShare: 300_000, AgentShare: 450_000, YearToDateAfter: 300_000},
		},
		{
			name: "brokerage_half_cent_rounds_down_to_even", gross: 15, plan: bare,
			// 30% of 15 = 4.5 → 4; the agent gets the cent.
			want: commission.Split{Gross: 15, BrokerageShare: 4, AgentShare: 11, YearToDateAfter: 4},
		},
		{
			name: "brokerage_half_cent_rounds_up_to_even", gross: 5, plan: bare,
			// 30% of 5 = 1.5 → 2.
			want: commission.Split{Gross: 5, BrokerageShare: 2, AgentShare: 3, YearToDateAfter: 2},
		},
		{
			name: "franchise_half_cent_rounds_to_even", gross: 101,
			plan: with(bare, func(p *commission.Plan) { p.AgentSplitBP, p.PostCapAgentSplitBP, p.FranchiseFeeBP = 10000, 10000, 5000 }),
			// 50% of 101 = 50.5 → 50.
			want: commission.Split{Gross: 101, FranchiseFee: 50, AgentShare: 51},
		},
		{
			name: "franchise_half_cent_rounds_up_to_even", gross: 103,
			plan: with(bare, func(p *commission.Plan) { p.AgentSplitBP, p.PostCapAgentSplitBP, p.FranchiseFeeBP = 10000, 10000, 5000 }),
			want: commission.Split{Gross: 103, FranchiseFee: 52, AgentShare: 51},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := commission.Compute(tt.gross, tt.referral, tt.plan, tt.ytd)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("Compute = %+v\nwant      %+v", got, tt.want)
			}
			sum := int64(0)
			for _, c := range got.Components() {
				sum += c.AmountMinor
			}
			if sum != tt.gross {
				t.Fatalf("components add up to %d, not the gross %d: %+v", sum, tt.gross, got.Components())
			}
		})
	}
}

func TestCompute_refuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		gross, referral, ytd int64
		plan                 commission.Plan
		want                 string
	}{
		{"no_gross", 0, 0, 0, standard, "not between"},
		{"referral_above_the_commission", 100_000, 95_000, 0, standard, "referral fee"},
		{"fees_above_the_agent_share", 50_000, 0, 0, with(standard, func(p *commission.Plan) { p.AgentSplitBP = 0 }), "negative share"},
		{"negative_referral", 100_000, -1, 0, standard, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := commission.Compute(tt.gross, tt.referral, tt.plan, tt.ytd)
			if !errors.Is(err, commission.ErrSplit) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrSplit saying %q", err, tt.want)
			}
		})
	}
}

// TestCompute_componentsAlwaysAddUp: over many random closings and plans,
// the components add up to the gross, none is negative, and the year to
// date never passes the cap at a post-cap split of 100%.
func TestCompute_componentsAlwaysAddUp(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		p := commission.Plan{
			ID: "p", AgentSplitBP: r.Int64N(10001), PostCapAgentSplitBP: r.Int64N(10001), CapMinor: r.Int64N(3_000_000),
			TransactionFeeMinor: r.Int64N(50_000), FranchiseFeeBP: r.Int64N(1500), Referral: commission.ReferralOffTheTop,
		}
		if r.IntN(2) == 0 {
			p.Referral = commission.ReferralFromAgentShare
		}
		gross := 1 + r.Int64N(5_000_000)
		referral := r.Int64N(gross/3 + 1)
		ytd := r.Int64N(3_000_000)
		s, err := commission.Compute(gross, referral, p, ytd)
		if errors.Is(err, commission.ErrSplit) {
			continue
		} else if err != nil {
			t.Fatal(err)
		}
		sum := int64(0)
		for _, c := range s.Components() {
			if c.AmountMinor < 0 {
				t.Fatalf("%+v: negative %s", s, c.Kind)
			}
			sum += c.AmountMinor
		}
		if sum != gross {
			t.Fatalf("plan %+v gross %d referral %d ytd %d: components add up to %d: %+v", p, gross, referral, ytd, sum, s)
		}
		if p.CapMinor > 0 && p.PostCapAgentSplitBP == 10000 && s.YearToDateAfter > max(p.CapMinor, ytd) {
			t.Fatalf("plan %+v: year to date %d passed the cap", p, s.YearToDateAfter)
		}
	}
}

func TestPlan_planYear(t *testing.T) {
	t.Parallel()
	july := with(standard, func(p *commission.Plan) { p.YearStartMonth, p.YearStartDay = 7, 1 })
	for _, tt := range []struct {
		plan       commission.Plan
		date, want string
	}{
		{standard, "2026-12-01", "2026-01-01"}, {standard, "2026-01-01", "2026-01-01"},
		{july, "2026-06-30", "2025-07-01"}, {july, "2026-07-01", "2026-07-01"}, {july, "2026-12-01", "2026-07-01"},
	} {
		if got, err := tt.plan.PlanYear(tt.date); err != nil || got != tt.want {
			t.Errorf("PlanYear(%s) starting %d-%d = %q, %v; want %q", tt.date, tt.plan.YearStartMonth, tt.plan.YearStartDay, got, err, tt.want)
		}
	}
	if _, err := standard.PlanYear("12/01/2026"); err == nil {
		t.Error("PlanYear of a date not YYYY-MM-DD: no error")
	}
}

const plansFile = `
plans:
  - id: standard-70-30
    default: true
    agent_split: 70
    cap: "18000.00"
    post_cap_agent_split: 100
    plan_year_start: "01-01"
    transaction_fee: "395.00"
    franchise_fee: 6
  - id: senior-85-15
    agent_split: 85.5
    plan_year_start: "07-01"
    referral: from_agent_share
`

func TestParse(t *testing.T) {
	t.Parallel()
	ps, err := commission.Parse([]byte(plansFile))
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := ps.Get("standard-70-30"); p != with(standard, func(p *commission.Plan) { p.Default = true }) {
		t.Fatalf("standard = %+v", p)
	}
	senior, _ := ps.Get("senior-85-15")
	want := commission.Plan{ID: "senior-85-15", AgentSplitBP: 8550, PostCapAgentSplitBP: 8550, YearStartMonth: 7, YearStartDay: 1, Referral: commission.ReferralFromAgentShare}
	if senior != want {
		t.Fatalf("senior = %+v\nwant %+v", senior, want)
	}
	dir, err := agents.New(agents.Agent{ID: "ada", Name: "Ada"}, agents.Agent{ID: "bob", Name: "Bob", CommissionPlan: "senior-85-15"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ps.Check(dir); err != nil {
		t.Fatal(err)
	}
	for id, plan := range map[string]string{"ada": "standard-70-30", "bob": "senior-85-15"} {
		var a agents.Agent
		for _, x := range dir.Agents() {
			if x.ID == id {
				a = x
			}
		}
		if p, err := ps.For(a); err != nil || p.ID != plan {
			t.Errorf("For(%s) = %q, %v; want %q", id, p.ID, err, plan)
		}
	}
}

func TestParse_refuses(t *testing.T) {
	t.Parallel()
	for name, tt := range map[string]struct{ file, want string }{
		"no_plans":             {"plans: []", "no plans"},
		"unknown_field":        {"plans:\n  - id: a\n    agent_split: 70\n    split: 3", "field split not found"},
		"split_above_100":      {"plans:\n  - id: a\n    agent_split: 170", "agent_split"},
		"three_decimals":       {"plans:\n  - id: a\n    agent_split: 70.125", "agent_split"},
		"cap_without_post_cap": {"plans:\n  - id: a\n    agent_split: 70\n    cap: 18000", "post_cap_agent_split is required"},
		"bad_year_start":       {"plans:\n  - id: a\n    agent_split: 70\n    plan_year_start: 13-01", "plan_year_start"},
		"leap_day":             {"plans:\n  - id: a\n    agent_split: 70\n    plan_year_start: 02-29", "plan_year_start"},
		"bad_referral":         {"plans:\n  - id: a\n    agent_split: 70\n    referral: split", "referral"},
		"negative_fee":         {"plans:\n  - id: a\n    agent_split: 70\n    transaction_fee: -5", "transaction_fee"},
		"twice":                {"plans:\n  - id: a\n    agent_split: 70\n  - id: a\n    agent_split: 60", "twice"},
		"two_defaults":         {"plans:\n  - id: a\n    agent_split: 70\n    default: true\n  - id: b\n    agent_split: 60\n    default: true", "default"},
		"no_split":             {"plans:\n  - id: a", "agent_split is required"},
		"bad_id":               {"plans:\n  - id: A B\n    agent_split: 70", "id must match"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := commission.Parse([]byte(tt.file))
			if !errors.Is(err, commission.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalid saying %q", err, tt.want)
			}
		})
	}
}

func TestPlans_check(t *testing.T) {
	t.Parallel()
	ps, err := commission.New(with(standard, func(p *commission.Plan) { p.Default = false }))
	if err != nil {
		t.Fatal(err)
	}
	for name, a := range map[string]agents.Agent{
		"unknown_plan":           {ID: "ada", Name: "Ada", CommissionPlan: "gold"},
		"no_plan_and_no_default": {ID: "ada", Name: "Ada"},
	} {
		dir, err := agents.New(a)
		if err != nil {
			t.Fatal(err)
		}
		if err := ps.Check(dir); !errors.Is(err, commission.ErrNoPlan) {
			t.Errorf("%s: Check = %v, want ErrNoPlan", name, err)
		}
	}
}

// FuzzParse: a plans file never panics the parser, and every plan it
// accepts splits any closing into components that add up to the gross.
func FuzzParse(f *testing.F) {
	f.Add([]byte(plansFile))
	f.Add([]byte("plans:\n  - id: a\n    agent_split: 100\n    franchise_fee: 100\n"))
	f.Add([]byte("plans:\n  - id: a\n    agent_split: 0\n    cap: 1\n    post_cap_agent_split: 0\n    transaction_fee: 99999999\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := commission.Parse(b)
		if err != nil {
			return
		}
		for _, p := range ps.Plans() {
			for _, gross := range []int64{1, 99, 1_575_000} {
				s, err := commission.Compute(gross, gross/4, p, 1_000_000)
				if errors.Is(err, commission.ErrSplit) {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				sum := int64(0)
				for _, c := range s.Components() {
					sum += c.AmountMinor
				}
				if sum != gross {
					t.Fatalf("plan %+v: components add up to %d, not %d", p, sum, gross)
				}
			}
		}
	})
}
