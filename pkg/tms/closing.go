package tms

import (
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/money"
)

// ClosingFields say where in a transaction's Details each fact of a closing
// is, as "<section>:<field>" (Dotloop's "Financials:Purchase/Sale Price").
// tms-sync reads a closing with them to announce it, and ledger-sync to
// check it against the TMS before booking it.
type ClosingFields struct {
	Price, Commission, CloseDate, Referral, ReferralSource string
}

// DefaultClosingFields are Dotloop's.
var DefaultClosingFields = ClosingFields{
	Price: "Financials:Purchase/Sale Price", Commission: "Financials:Sale Commission Total",
	CloseDate: "Contract Dates:Closing Date", Referral: "Referral:Referral Fee", ReferralSource: "Referral:Referral Source",
}

// Closing is a closing's facts as the TMS holds them, amounts in minor units.
type Closing struct {
	PriceMinor, CommissionMinor, ReferralMinor int64
	// CloseDate is ISO 8601 (YYYY-MM-DD) when it could be read, else as the
	// TMS holds it.
	CloseDate, ReferralSource string
	// Unavailable says why the TMS gives no commission, when it cannot.
	Unavailable string
}

// At returns the trimmed value at at ("<section>:<field>").
func (d Details) At(at string) string {
	sec, f, _ := strings.Cut(at, ":")
	return strings.TrimSpace(d.Field(sec, f))
}

// ReadClosing reads a closing from d; missing names each required fact (the
// sale price, the gross commission) that is absent or unreadable. An empty
// f.Commission reads no commission and misses none: a TMS that does not give
// one.
func (f ClosingFields) ReadClosing(d Details) (Closing, []string) {
	var c Closing
	var missing []string
	var err error
	if c.PriceMinor, err = money.ParseMinor(d.At(f.Price)); err != nil || c.PriceMinor <= 0 {
		missing = append(missing, "sale price ("+f.Price+")")
	}
	if f.Commission == "" {
		// The TMS gives no commission: the caller says why.
	} else if c.CommissionMinor, err = money.ParseMinor(d.At(f.Commission)); err != nil || c.CommissionMinor <= 0 {
		missing = append(missing, "gross commission ("+f.Commission+")")
	}
	c.CloseDate = NormalizeDate(d.At(f.CloseDate))
	if v := d.At(f.Referral); v != "" {
		c.ReferralMinor, _ = money.ParseMinor(v)
	}
	c.ReferralSource = d.At(f.ReferralSource)
	return c, missing
}

// NormalizeDate returns an ISO 8601 date for the formats agents use, or the
// value as it is.
func NormalizeDate(v string) string {
	for _, layout := range []string{"2006-01-02", "01/02/2006", "1/2/2006", time.RFC3339} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.Format("2006-01-02")
		}
	}
	return v
}
