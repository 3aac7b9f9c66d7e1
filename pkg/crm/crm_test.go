package crm_test

import (
	"testing"

	"github.com/brokerflow/brokerflow/pkg/crm"
)

func TestSamePhone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"+14155550134", "(415) 555-0134", true},
		{"+1 415 555 0134", "415.555.0134", true},
		{"+442079460958", "020 7946 0958", true},
		{"+14155550134", "+14155550135", false},
		{"5550134", "555-0134", true},
		{"5550134", "+14155550134", false},
		{"", "", false},
		{"ext", "ext", false},
	} {
		if got := crm.SamePhone(tc.a, tc.b); got != tc.want {
			t.Errorf("SamePhone(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestMissing(t *testing.T) {
	t.Parallel()
	p := crm.Person{Emails: []string{"Ada@Example.com"}, Phones: []string{"(415) 555-0134"}}
	for _, tc := range []struct {
		id               crm.Identity
		wantEmail, wantP string
	}{
		{crm.Identity{Email: "ada@example.com", Phone: "+14155550134"}, "", ""},
		{crm.Identity{Email: "ada.l@example.org", Phone: "+14155550134"}, "ada.l@example.org", ""},
		{crm.Identity{Phone: "+14155550199"}, "", "+14155550199"},
		{crm.Identity{}, "", ""},
	} {
		email, phone := crm.Missing(p, tc.id)
		if email != tc.wantEmail || phone != tc.wantP {
			t.Errorf("Missing(%+v) = %q, %q; want %q, %q", tc.id, email, phone, tc.wantEmail, tc.wantP)
		}
	}
}
