// Package money reads amounts as people type them into integer minor units
// (cents), the only form in which Brokerflow computes with money.
package money

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ParseMinor reads an amount as an agent types it ("$525,000.00",
// "525000", "1,250.5") into minor units (cents). More than two decimals,
// a sign or anything else than digits is an error: an amount is never
// rounded on the way in.
func ParseMinor(s string) (int64, error) {
	t := strings.NewReplacer("$", "", ",", "", " ", "", "USD", "").Replace(strings.TrimSpace(s))
	if t == "" {
		return 0, errors.New("empty amount")
	}
	whole, frac, _ := strings.Cut(t, ".")
	if len(frac) > 2 {
		return 0, fmt.Errorf("amount %q has more than two decimals", s)
	}
	frac += strings.Repeat("0", 2-len(frac))
	w, err := strconv.ParseInt(cmp.Or(whole, "0"), 10, 64)
	if err != nil || w < 0 || strings.HasPrefix(whole, "+") {
		return 0, fmt.Errorf("amount %q is not a number", s)
	}
	f, err := strconv.ParseInt(frac, 10, 64)
	if err != nil || f < 0 || strings.HasPrefix(frac, "+") {
		return 0, fmt.Errorf("amount %q is not a number", s)
	}
	if w > (1<<62)/100 {
		return 0, fmt.Errorf("amount %q is too large", s)
	}
	return w*100 + f, nil
}

// Format writes minor units as a plain decimal amount: 1575000 → "15750.00".
func Format(minor int64) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return fmt.Sprintf("%s%d.%02d", sign, minor/100, minor%100)
}
