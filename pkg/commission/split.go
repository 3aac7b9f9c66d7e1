package commission

import (
	"errors"
	"fmt"
	"math/big"

	"github.com/brokerflow/brokerflow/pkg/ledger"
)

// Split is a closing's gross commission divided by a plan, in cents. Its
// components always add up to Gross.
type Split struct {
	Gross          int64
	AgentShare     int64
	BrokerageShare int64
	TransactionFee int64
	FranchiseFee   int64
	Referral       int64
	// YearToDateBefore and YearToDateAfter are the agent's brokerage share
	// over the plan year before and after this closing: what the cap is
	// measured on. Fees and referrals do not count towards the cap.
	YearToDateBefore, YearToDateAfter int64
	// CapCrossed says this closing reached the cap (part or all of it was
	// split at the post-cap split).
	CapCrossed bool
}

// Component is one part of a Split.
type Component struct {
	// Kind is one of ledger's Kind* constants.
	Kind        string
	AmountMinor int64
}

// Components are the split's non-zero parts, in a fixed order: the
// brokerage share, the agent share, the franchise fee, the transaction fee,
// the referral fee. They add up to Gross.
func (s Split) Components() []Component {
	var out []Component
	for _, c := range []Component{
		{ledger.KindBrokerageShare, s.BrokerageShare}, {ledger.KindAgentShare, s.AgentShare},
		{ledger.KindFranchiseFee, s.FranchiseFee}, {ledger.KindTransactionFee, s.TransactionFee},
		{ledger.KindReferralFee, s.Referral},
	} {
		if c.AmountMinor != 0 {
			out = append(out, c)
		}
	}
	return out
}

// BrokerageNet is what the brokerage keeps: its share and the transaction
// fee (the franchise fee and the referral are paid out).
func (s Split) BrokerageNet() int64 { return s.BrokerageShare + s.TransactionFee }

// ErrSplit is wrapped by every closing a plan cannot divide.
var ErrSplit = errors.New("commission: cannot split")

const bpWhole = 10000

// maxGross bounds a gross commission (ten billion) so that no product
// with a percentage overflows.
const maxGross = 1e12

// Compute divides gross (and a referral fee paid out of it) by plan p, for
// an agent whose brokerage share over the plan year so far is ytdBefore.
// It is a pure function.
//
// The order and the rounding, each amount rounded once, half to even (the
// banker's rounding: 0.5 cent goes to the even cent, so that roundings do
// not drift one way over many closings):
//
//  1. The franchise fee is FranchiseFee% of the gross, rounded.
//  2. The commission to split is the gross less the franchise fee, and less
//     the referral when the plan pays it off the top.
//  3. The brokerage share is (100 − AgentSplit)% of the commission to
//     split, until the brokerage share over the plan year reaches the cap;
//     the rest of the commission to split, past that point, at
//     (100 − PostCapAgentSplit)%. A closing that crosses the cap is split
//     at both rates, exactly (in rationals), and the sum rounded once. The
//     pre-cap part never exceeds what is left of the cap.
//  4. The transaction fee is the plan's, out of the agent's share.
//  5. The agent's share is the remainder: the gross less every other
//     component (less the referral too, when the plan pays it from the
//     agent's share). So the components always add up to the gross, and
//     any rounding cent is the agent's.
//
// A referral larger than the commission, or fees larger than the agent's
// share, is an error wrapping ErrSplit: the plan cannot pay them.
func Compute(gross, referral int64, p Plan, ytdBefore int64) (Split, error) {
	switch {
	case gross <= 0, gross > maxGross:
		return Split{}, fmt.Errorf("%w: the gross commission %d is not between 1 cent and %d", ErrSplit, gross, int64(maxGross))
	case referral < 0:
		return Split{}, fmt.Errorf("%w: the referral fee %d is negative", ErrSplit, referral)
	case ytdBefore < 0:
		return Split{}, fmt.Errorf("%w: the year to date %d is negative", ErrSplit, ytdBefore)
	}
	s := Split{Gross: gross, Referral: referral, TransactionFee: p.TransactionFeeMinor, YearToDateBefore: ytdBefore}
	s.FranchiseFee = roundHalfEven(new(big.Rat).SetFrac64(gross*p.FranchiseFeeBP, bpWhole))
	base := gross - s.FranchiseFee
	if p.Referral == ReferralOffTheTop {
		base -= referral
	}
	if base < 0 || referral > gross-s.FranchiseFee {
		return Split{}, fmt.Errorf("%w: the referral fee %d exceeds the commission %d after the franchise fee", ErrSplit, referral, gross-s.FranchiseFee)
	}
	pre := new(big.Rat).SetFrac64(base*(bpWhole-p.AgentSplitBP), bpWhole)
	brokerage := pre
	if p.CapMinor > 0 {
		room := max(p.CapMinor-ytdBefore, 0)
		if pre.Cmp(new(big.Rat).SetInt64(room)) > 0 {
			s.CapCrossed = true
			// The part of base that fills the room at the pre-cap rate:
			// room / pre-cap rate (the rate is above 0, since pre > room ≥ 0).
			filled := new(big.Rat).SetFrac64(room*bpWhole, bpWhole-p.AgentSplitBP)
			rest := new(big.Rat).Sub(new(big.Rat).SetInt64(base), filled)
			post := rest.Mul(rest, big.NewRat(bpWhole-p.PostCapAgentSplitBP, bpWhole))
			brokerage = post.Add(post, new(big.Rat).SetInt64(room))
		}
	}
	s.BrokerageShare = roundHalfEven(brokerage)
	s.AgentShare = gross - s.FranchiseFee - s.Referral - s.BrokerageShare - s.TransactionFee
	if s.AgentShare < 0 {
		return Split{}, fmt.Errorf("%w: plan %q leaves agent a negative share (%d cents) of a gross of %d", ErrSplit, p.ID, s.AgentShare, gross)
	}
	s.YearToDateAfter = ytdBefore + s.BrokerageShare
	return s, nil
}

// roundHalfEven rounds a non-negative r to the nearest integer, a half to
// the even one.
func roundHalfEven(r *big.Rat) int64 {
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	twice := m.Mul(m, big.NewInt(2))
	switch c := twice.Cmp(r.Denom()); {
	case c > 0, c == 0 && q.Bit(0) == 1:
		q.Add(q, big.NewInt(1))
	}
	return q.Int64()
}
