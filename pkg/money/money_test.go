package money_test

import (
	"testing"

	"github.com/brokerflow/brokerflow/pkg/money"
)

func TestParseMinor(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"$525,000.00", 52_500_000}, {"525000", 52_500_000}, {"1,250.5", 125_050}, {"15750", 1_575_000}, {".5", 50}, {"0", 0},
		{"\tUSD 12.34 ", 1234},
	} {
		if got, err := money.ParseMinor(c.in); err != nil || got != c.want {
			t.Errorf("ParseMinor(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "abc", "1.234", "-5", "+5", "1.+5", "1e5", "99999999999999999999"} {
		if got, err := money.ParseMinor(in); err == nil {
			t.Errorf("ParseMinor(%q) = %d, want an error", in, got)
		}
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	for in, want := range map[int64]string{1_575_000: "15750.00", 5: "0.05", 0: "0.00", -150: "-1.50"} {
		if got := money.Format(in); got != want {
			t.Errorf("Format(%d) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseMinor(f *testing.F) {
	for _, s := range []string{"$525,000.00", "1.5", "", "-1", "1.234"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := money.ParseMinor(s)
		if err == nil && v < 0 {
			t.Fatalf("ParseMinor(%q) = %d: negative", s, v)
		}
	})
}
