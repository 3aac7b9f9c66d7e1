package normalizer

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

func TestNormalizeEmail_lowercaseBareAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		raw    string
		want   string
		wantOK bool
	}{
		{name: "already_canonical", raw: "ada@example.com", want: "ada@example.com", wantOK: true},
		{name: "mixed_case", raw: "Ada.Lovelace@Example.COM", want: "ada.lovelace@example.com", wantOK: true},
		{name: "surrounding_spaces", raw: "  ada@example.com \t\n", want: "ada@example.com", wantOK: true},
		{name: "plus_tag_and_subdomain", raw: "ada+zillow@mail.example.co.uk", want: "ada+zillow@mail.example.co.uk", wantOK: true},
		{name: "empty", raw: "", wantOK: false},
		{name: "only_spaces", raw: "   ", wantOK: false},
		{name: "display_name", raw: "Ada Lovelace <ada@example.com>", wantOK: false},
		{name: "angle_brackets", raw: "<ada@example.com>", wantOK: false},
		{name: "comment", raw: "ada@example.com (Ada)", wantOK: false},
		{name: "no_at", raw: "ada.example.com", wantOK: false},
		{name: "no_dot_in_domain", raw: "ada@localhost", wantOK: false},
		{name: "space_inside", raw: "ada lovelace@example.com", wantOK: false},
		{name: "double_dot_domain", raw: "ada@example..com", wantOK: false},
		{name: "trailing_dot_domain", raw: "ada@example.com.", wantOK: false},
		{name: "no_local_part", raw: "@example.com", wantOK: false},
		{name: "two_addresses", raw: "ada@example.com, bob@example.com", wantOK: false},
		{name: "placeholder_text", raw: "n/a", wantOK: false},
		{name: "too_long", raw: strings.Repeat("a", 250) + "@example.com", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := NormalizeEmail(tt.raw)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("NormalizeEmail(%q) = %q, %v; want %q, %v", tt.raw, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestNormalizePhone_e164(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		raw    string
		region string
		want   string
		wantOK bool
	}{
		{name: "us_parentheses", raw: "(415) 555-0134", region: "US", want: "+14155550134", wantOK: true},
		{name: "us_dashes", raw: "415-555-0134", region: "US", want: "+14155550134", wantOK: true},
		{name: "us_dots", raw: "415.555.0134", region: "US", want: "+14155550134", wantOK: true},
		{name: "us_digits_only", raw: "4155550134", region: "US", want: "+14155550134", wantOK: true},
		{name: "us_leading_one", raw: "1-415-555-0134", region: "US", want: "+14155550134", wantOK: true},
		{name: "us_international", raw: "+1 415 555 0134", region: "US", want: "+14155550134", wantOK: true},
		{name: "us_extension_dropped", raw: "415 555 0134 ext. 12", region: "US", want: "+14155550134", wantOK: true},
		{name: "us_toll_free", raw: "+1 (800) 555-0199", region: "US", want: "+18005550199", wantOK: true},
		{name: "us_lowercase_region", raw: "(202) 456-1111", region: "us", want: "+12024561111", wantOK: true},
		{name: "gb_landline_international", raw: "+44 20 7946 0958", region: "US", want: "+442079460958", wantOK: true},
		{name: "gb_landline_national", raw: "020 7946 0958", region: "GB", want: "+442079460958", wantOK: true},
		{name: "gb_mobile_international", raw: "+44 7911 123456", region: "US", want: "+447911123456", wantOK: true},
		{name: "gb_national_with_us_region", raw: "020 7946 0958", region: "US", wantOK: false},
		{name: "international_without_region", raw: "+1 415 555 0134", region: "", want: "+14155550134", wantOK: true},
		{name: "national_without_region", raw: "415 555 0134", region: "", wantOK: false},
		{name: "too_short", raw: "123", region: "US", wantOK: false},
		{name: "seven_digits_no_area_code", raw: "555-0134", region: "US", wantOK: false},
		{name: "all_zeros", raw: "(000) 000-0000", region: "US", wantOK: false},
		{name: "unknown_country_code", raw: "+999 123", region: "US", wantOK: false},
		{name: "letters", raw: "call me", region: "US", wantOK: false},
		{name: "empty", raw: "", region: "US", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := NormalizePhone(tt.raw, tt.region)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("NormalizePhone(%q, %q) = %q, %v; want %q, %v", tt.raw, tt.region, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestSplitName_lastSpace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		full      string
		wantFirst string
		wantLast  string
	}{
		{name: "two_words", full: "Ada Lovelace", wantFirst: "Ada", wantLast: "Lovelace"},
		{name: "three_words", full: "Mary Ann Smith", wantFirst: "Mary Ann", wantLast: "Smith"},
		{name: "single_word", full: "Cher", wantFirst: "Cher"},
		{name: "extra_spaces", full: "  Mary   Ann \t Smith  ", wantFirst: "Mary Ann", wantLast: "Smith"},
		{name: "empty", full: ""},
		{name: "only_spaces", full: "   "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			first, last := SplitName(tt.full)
			if first != tt.wantFirst || last != tt.wantLast {
				t.Errorf("SplitName(%q) = %q, %q; want %q, %q", tt.full, first, last, tt.wantFirst, tt.wantLast)
			}
		})
	}
}

func TestJoinName_collapsesSpaces(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		first string
		last  string
		want  string
	}{
		{name: "both", first: "Ada", last: "Lovelace", want: "Ada Lovelace"},
		{name: "first_only", first: "Ada", want: "Ada"},
		{name: "last_only", last: "Lovelace", want: "Lovelace"},
		{name: "padded", first: "  Mary  Ann ", last: " Smith ", want: "Mary Ann Smith"},
		{name: "neither", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := JoinName(tt.first, tt.last); got != tt.want {
				t.Errorf("JoinName(%q, %q) = %q; want %q", tt.first, tt.last, got, tt.want)
			}
		})
	}
}

func TestLeadID_deterministic(t *testing.T) {
	t.Parallel()
	base := LeadID("idx", "msg_2Lh9KkQk", 0)
	if !strings.HasPrefix(base, "ld_") || len(base) != len("ld_")+24 {
		t.Fatalf("LeadID = %q; want ld_ and 24 hex digits", base)
	}
	if again := LeadID("idx", "msg_2Lh9KkQk", 0); again != base {
		t.Errorf("LeadID is not deterministic: %q then %q", base, again)
	}
	tests := []struct {
		name       string
		source     string
		deliveryID string
		index      int
	}{
		{name: "other_index", source: "idx", deliveryID: "msg_2Lh9KkQk", index: 1},
		{name: "other_source", source: "zillow", deliveryID: "msg_2Lh9KkQk", index: 0},
		{name: "other_delivery", source: "idx", deliveryID: "msg_2Lh9KkQl", index: 0},
		{name: "separator_shift", source: "idxm", deliveryID: "sg_2Lh9KkQk", index: 0},
		{name: "index_in_delivery", source: "idx", deliveryID: "msg_2Lh9KkQk0", index: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := LeadID(tt.source, tt.deliveryID, tt.index); got == base {
				t.Errorf("LeadID(%q, %q, %d) = %q, the same as the base case", tt.source, tt.deliveryID, tt.index, got)
			}
		})
	}
}

func TestLeadID_knownValue(t *testing.T) {
	t.Parallel()
	// Computed independently (Python hashlib). A change here would give every
	// lead already published a new id and break idempotency downstream.
	tests := []struct {
		name       string
		source     string
		deliveryID string
		index      int
		want       string
	}{
		{name: "first_item", source: "idx", deliveryID: "d1", index: 0, want: "ld_254c1ee00ae2f1555d481cf4"},
		{name: "batched_item", source: "facebook", deliveryID: "wh_77", index: 12, want: "ld_b37e71eda05fc9df63e61597"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := LeadID(tt.source, tt.deliveryID, tt.index); got != tt.want {
				t.Errorf("LeadID(%q, %q, %d) = %q; want %q", tt.source, tt.deliveryID, tt.index, got, tt.want)
			}
		})
	}
}

func TestCanonicalize_contact(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         *leadv1.Contact
		want       *leadv1.Contact
		wantReason string
	}{
		{
			name: "full_name_from_parts_and_normalized",
			in:   &leadv1.Contact{FirstName: " Ada ", LastName: "Lovelace", Email: " Ada@Example.com ", MobilePhone: "(415) 555-0134"},
			want: &leadv1.Contact{FirstName: "Ada", LastName: "Lovelace", FullName: "Ada Lovelace", Email: "ada@example.com", MobilePhone: "+14155550134"},
		},
		{
			name: "parts_from_full_name",
			in:   &leadv1.Contact{FullName: "Mary  Ann Smith", Email: "mary@example.com"},
			want: &leadv1.Contact{FirstName: "Mary Ann", LastName: "Smith", FullName: "Mary Ann Smith", Email: "mary@example.com"},
		},
		{
			name: "all_names_kept",
			in:   &leadv1.Contact{FirstName: "Bob", LastName: "Jones", FullName: "Robert Jones", Email: "bob@example.com"},
			want: &leadv1.Contact{FirstName: "Bob", LastName: "Jones", FullName: "Robert Jones", Email: "bob@example.com"},
		},
		{
			name: "invalid_email_cleared_phone_enough",
			in:   &leadv1.Contact{Email: "not-an-email", MobilePhone: "+44 20 7946 0958"},
			want: &leadv1.Contact{MobilePhone: "+442079460958"},
		},
		{
			name: "invalid_phone_kept_raw_email_enough",
			in:   &leadv1.Contact{Email: "ada@example.com", MobilePhone: "555-0134"},
			want: &leadv1.Contact{Email: "ada@example.com", RawPhone: "555-0134"},
		},
		{
			name: "raw_phone_only_promoted",
			in:   &leadv1.Contact{RawPhone: "415.555.0134"},
			want: &leadv1.Contact{MobilePhone: "+14155550134"},
		},
		{
			name: "home_phone_counts",
			in:   &leadv1.Contact{HomePhone: "(202) 456-1111"},
			want: &leadv1.Contact{HomePhone: "+12024561111"},
		},
		{
			name:       "bad_email_and_bad_phone_rejected",
			in:         &leadv1.Contact{FullName: "Ada Lovelace", Email: "ada@localhost", MobilePhone: "123"},
			want:       &leadv1.Contact{FirstName: "Ada", LastName: "Lovelace", FullName: "Ada Lovelace", RawPhone: "123"},
			wantReason: "no usable email or phone: email is not a valid address; phone is not a valid number for region US",
		},
		{
			name:       "nothing_to_contact",
			in:         &leadv1.Contact{FirstName: "Ada"},
			want:       &leadv1.Contact{FirstName: "Ada", FullName: "Ada"},
			wantReason: "no usable email or phone: no email; no phone",
		},
		{
			name:       "missing_email_bad_phone",
			in:         &leadv1.Contact{MobilePhone: "call me maybe"},
			want:       &leadv1.Contact{RawPhone: "call me maybe"},
			wantReason: "no usable email or phone: no email; phone is not a valid number for region US",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := &leadv1.Lead{Contact: tt.in}
			reason := Canonicalize(l, "US")
			if reason != tt.wantReason {
				t.Errorf("reason = %q; want %q", reason, tt.wantReason)
			}
			if !proto.Equal(l.Contact, tt.want) {
				t.Errorf("contact = %v; want %v", l.Contact, tt.want)
			}
		})
	}
}

func TestCanonicalize_reasonHasNoPersonalData(t *testing.T) {
	t.Parallel()
	l := &leadv1.Lead{Contact: &leadv1.Contact{Email: "ada.secret@nowhere", MobilePhone: "98765"}}
	reason := Canonicalize(l, "US")
	if reason == "" {
		t.Fatal("want a reason")
	}
	for _, v := range []string{"ada.secret", "98765"} {
		if strings.Contains(reason, v) {
			t.Errorf("reason %q contains %q", reason, v)
		}
	}
}

func TestCanonicalize_nilContactAndAgent(t *testing.T) {
	t.Parallel()
	l := &leadv1.Lead{Agent: &leadv1.Agent{Name: "Grace", Email: "Grace@Brokerage.Example"}}
	if reason := Canonicalize(l, "US"); reason == "" {
		t.Error("lead without a contact: want a reason")
	}
	if l.Contact == nil {
		t.Error("Contact is still nil")
	}
	if got := l.Agent.GetEmail(); got != "grace@brokerage.example" {
		t.Errorf("agent email = %q; want it lower-cased", got)
	}
	if reason := Canonicalize(nil, "US"); reason == "" {
		t.Error("nil lead: want a reason")
	}
}

func FuzzCanonicalize(f *testing.F) {
	f.Add("Ada@Example.com", "(415) 555-0134")
	f.Add("", "+44 20 7946 0958")
	f.Add("Ada Lovelace <ada@example.com>", "123")
	f.Add("ada@localhost", "")
	f.Add("  MARY.SMITH+idx@MAIL.EXAMPLE.CO.UK ", "1-800-555-0199 ext 7")
	f.Fuzz(func(t *testing.T, email, phone string) {
		l := &leadv1.Lead{Contact: &leadv1.Contact{Email: email, MobilePhone: phone}}
		reason := Canonicalize(l, "US")
		c := l.GetContact()
		if e := c.GetEmail(); e != "" {
			if e != strings.ToLower(e) || !strings.Contains(e, "@") {
				t.Errorf("email %q is not lower-case with an @", e)
			}
		}
		if p := c.GetMobilePhone(); p != "" && !strings.HasPrefix(p, "+") {
			t.Errorf("mobile_phone %q does not start with +", p)
		}
		usable := c.GetEmail() != "" || c.GetMobilePhone() != "" || c.GetHomePhone() != ""
		if usable == (reason != "") {
			t.Errorf("usable = %v but reason = %q", usable, reason)
		}
	})
}

func TestCRMSource_fixedThenMappedThenName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ fixed, mapped, want string }{
		{"", "", "website"},
		{"", "MyAwesomeWebsite.com", "MyAwesomeWebsite.com"},
		{"", "  My \n Site  ", "My Site"},
		{"", " \t ", "website"},
		{"Our IDX", "MyAwesomeWebsite.com", "Our IDX"},
		{"Our IDX", "", "Our IDX"},
	} {
		if got := CRMSource(tc.fixed, tc.mapped, "website"); got != tc.want {
			t.Errorf("CRMSource(%q, %q, website) = %q, want %q", tc.fixed, tc.mapped, got, tc.want)
		}
	}
}
