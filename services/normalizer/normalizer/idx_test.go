package normalizer

import (
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// The idx preset reproduces what the hand-written IDX mapper did; these
// cases run it through the sources mapping (Map, leadFromFields).

// mapIDX maps body with the built-in idx preset.
func mapIDX(tb testing.TB, body []byte) ([]*leadv1.Lead, error) {
	tb.Helper()
	return mapWith(tb, presetMapper(tb, "idx"), body, "application/json")
}

const idxFullPayload = `{"type":"lead.created","timestamp":"2026-11-26T20:00:00Z","data":{
  "first_name":"Ada","last_name":"Lovelace","name":"Ada Lovelace","email":"Ada@Example.com","phone":"(415) 555-0134",
  "message":"Is this still available?","inquiry_type":"buy",
  "property":{"address":"12 Main St","city":"Springfield","state":"IL","postal_code":"62701","mls_number":"MLS123","price":850000.50,"url":"https://brokerage.example/listing/123"},
  "agent":{"name":"Grace Hopper","email":"grace@brokerage.example","id":"A-42"},
  "utm":{"source":"google","medium":"cpc","campaign":"spring","term":"","content":""},
  "page_url":"https://brokerage.example/listing/123"}}`

func TestIDXPreset_lead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want *leadv1.Lead
	}{
		{
			name: "full_payload",
			body: idxFullPayload,
			want: &leadv1.Lead{
				Contact: &leadv1.Contact{
					FirstName: "Ada", LastName: "Lovelace", FullName: "Ada Lovelace",
					Email: "Ada@Example.com", MobilePhone: "(415) 555-0134",
				},
				Inquiry: &leadv1.Inquiry{
					Type:    leadv1.InquiryType_INQUIRY_TYPE_BUY,
					Message: "Is this still available?",
					Property: &leadv1.Property{
						UnparsedAddress: "12 Main St", City: "Springfield", StateOrProvince: "IL",
						PostalCode: "62701", ListingId: "MLS123",
						ListPrice: &commonv1.Money{AmountMinor: 85000050, CurrencyCode: "USD"},
						Url:       "https://brokerage.example/listing/123",
					},
				},
				Campaign: &leadv1.Campaign{
					UtmSource: "google", UtmMedium: "cpc", UtmCampaign: "spring",
					LandingPageUrl: "https://brokerage.example/listing/123",
				},
				Agent: &leadv1.Agent{Name: "Grace Hopper", Email: "grace@brokerage.example", MemberId: "A-42"},
			},
		},
		{
			name: "minimal_payload",
			body: `{"type":"lead.created","timestamp":"2026-11-26T20:00:00Z","data":{"email":"ada@example.com"}}`,
			want: &leadv1.Lead{Contact: &leadv1.Contact{Email: "ada@example.com"}},
		},
		{
			name: "empty_data",
			body: `{"type":"lead.created","data":{}}`,
			want: &leadv1.Lead{Contact: &leadv1.Contact{}},
		},
		{
			name: "numbers_for_codes_and_nulls",
			body: `{"type":"lead.created","data":{"phone":4155550134,"name":null,
				"property":{"postal_code":62701,"mls_number":123456,"price":null},"agent":{"id":42},"utm":null}}`,
			want: &leadv1.Lead{
				Contact: &leadv1.Contact{MobilePhone: "4155550134"},
				Inquiry: &leadv1.Inquiry{Property: &leadv1.Property{PostalCode: "62701", ListingId: "123456"}},
				Agent:   &leadv1.Agent{MemberId: "42"},
			},
		},
		{
			name: "empty_nested_objects_dropped",
			body: `{"type":"lead.created","data":{"email":"a@b.co","property":{},"agent":{"name":" "},"utm":{"source":""}}}`,
			want: &leadv1.Lead{Contact: &leadv1.Contact{Email: "a@b.co"}},
		},
		{
			name: "unknown_fields_ignored",
			body: `{"type":"lead.created","data":{"email":"a@b.co","favorite_color":"blue"},"version":2}`,
			want: &leadv1.Lead{Contact: &leadv1.Contact{Email: "a@b.co"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			leads, err := mapIDX(t, []byte(tt.body))
			if err != nil {
				t.Fatalf("map: %v", err)
			}
			if len(leads) != 1 {
				t.Fatalf("got %d leads; want 1", len(leads))
			}
			if !proto.Equal(leads[0], tt.want) {
				t.Errorf("lead = %v\nwant   %v", leads[0], tt.want)
			}
		})
	}
}

func TestIDXPreset_inquiryType(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want leadv1.InquiryType
	}{
		{name: "buy", in: "buy", want: leadv1.InquiryType_INQUIRY_TYPE_BUY},
		{name: "buyer_upper", in: "BUYER", want: leadv1.InquiryType_INQUIRY_TYPE_BUY},
		{name: "sell", in: "Sell", want: leadv1.InquiryType_INQUIRY_TYPE_SELL},
		{name: "seller", in: "seller", want: leadv1.InquiryType_INQUIRY_TYPE_SELL},
		{name: "rent", in: "rent", want: leadv1.InquiryType_INQUIRY_TYPE_RENT},
		{name: "renter", in: "renter", want: leadv1.InquiryType_INQUIRY_TYPE_RENT},
		{name: "rental_padded", in: " Rental ", want: leadv1.InquiryType_INQUIRY_TYPE_RENT},
		{name: "unknown", in: "invest", want: leadv1.InquiryType_INQUIRY_TYPE_UNSPECIFIED},
		{name: "empty", in: "", want: leadv1.InquiryType_INQUIRY_TYPE_UNSPECIFIED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := `{"type":"lead.created","data":{"message":"hi","inquiry_type":"` + tt.in + `"}}`
			leads, err := mapIDX(t, []byte(body))
			if err != nil {
				t.Fatalf("map: %v", err)
			}
			if got := leads[0].GetInquiry().GetType(); got != tt.want {
				t.Errorf("type = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestIDXPreset_price(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		price     string // JSON value
		wantCents int64
		wantNil   bool
	}{
		{name: "integer_number", price: `850000`, wantCents: 85000000},
		{name: "decimal_string", price: `"850000.50"`, wantCents: 85000050},
		{name: "one_decimal_number", price: `850000.5`, wantCents: 85000050},
		{name: "two_decimals_number", price: `1234.56`, wantCents: 123456},
		{name: "padded_string", price: `" 499000 "`, wantCents: 49900000},
		{name: "zero", price: `0`, wantCents: 0},
		{name: "exact_trailing_zeros", price: `"12.500"`, wantCents: 1250},
		{name: "three_decimals", price: `1.234`, wantNil: true},
		{name: "negative_number", price: `-5`, wantNil: true},
		{name: "negative_string", price: `"-5.00"`, wantNil: true},
		{name: "exponent", price: `8.5e5`, wantNil: true},
		{name: "dollar_sign", price: `"$850,000"`, wantNil: true},
		{name: "trailing_dot", price: `"850000."`, wantNil: true},
		{name: "leading_dot", price: `".50"`, wantNil: true},
		{name: "empty_string", price: `""`, wantNil: true},
		{name: "words", price: `"call for price"`, wantNil: true},
		{name: "null", price: `null`, wantNil: true},
		{name: "boolean", price: `true`, wantNil: true},
		{name: "overflow", price: `99999999999999999999`, wantNil: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body := `{"type":"lead.created","data":{"property":{"mls_number":"M1","price":` + tt.price + `}}}`
			leads, err := mapIDX(t, []byte(body))
			if err != nil {
				t.Fatalf("map: %v", err)
			}
			got := leads[0].GetInquiry().GetProperty().GetListPrice()
			if tt.wantNil {
				if got != nil {
					t.Errorf("list_price = %v; want nil", got)
				}
				return
			}
			want := &commonv1.Money{AmountMinor: tt.wantCents, CurrencyCode: "USD"}
			if !proto.Equal(got, want) {
				t.Errorf("list_price = %v; want %v", got, want)
			}
		})
	}
}

func TestIDXPreset_mappingError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		body       string
		wantReason string // substring
	}{
		{name: "empty_body", body: ``, wantReason: "invalid JSON"},
		{name: "not_json", body: `type=lead.created`, wantReason: "invalid JSON"},
		{name: "truncated", body: `{"type":"lead.created","data":{"email":"a@b.co"`, wantReason: "invalid JSON"},
		{name: "array", body: `[{"type":"lead.created"}]`, wantReason: "not a JSON object"},
		{name: "trailing_data", body: `{"type":"lead.created","data":{}} {}`, wantReason: "trailing data"},
		{name: "wrong_type", body: `{"type":"lead.updated","data":{"email":"a@b.co"}}`, wantReason: `unsupported event type "lead.updated"`},
		{name: "missing_type", body: `{"data":{"email":"a@b.co"}}`, wantReason: "event type is missing"},
		{name: "missing_data", body: `{"type":"lead.created"}`, wantReason: `"data" object is missing`},
		{name: "null_data", body: `{"type":"lead.created","data":null}`, wantReason: `"data" object is missing`},
		{name: "data_not_object", body: `{"type":"lead.created","data":"ada@example.com"}`, wantReason: `"data" object is missing`},
		{name: "field_wrong_kind", body: `{"type":"lead.created","data":{"email":{"value":"a@b.co"}}}`, wantReason: "mapping.email: want text, got an object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			leads, err := mapIDX(t, []byte(tt.body))
			if err == nil {
				t.Fatalf("map = %v, nil; want an error", leads)
			}
			var me *MappingError
			if !errors.As(err, &me) {
				t.Fatalf("error %v (%T) is not a *MappingError", err, err)
			}
			if !strings.Contains(me.Reason, tt.wantReason) {
				t.Errorf("reason = %q; want it to contain %q", me.Reason, tt.wantReason)
			}
		})
	}
}

func TestIDXPreset_canonicalizedFullPayload(t *testing.T) {
	t.Parallel()
	leads, err := mapIDX(t, []byte(idxFullPayload))
	if err != nil {
		t.Fatalf("map: %v", err)
	}
	if reason := Canonicalize(leads[0], "US"); reason != "" {
		t.Fatalf("Canonicalize reason = %q; want none", reason)
	}
	c := leads[0].GetContact()
	if c.GetEmail() != "ada@example.com" || c.GetMobilePhone() != "+14155550134" {
		t.Errorf("contact = %v", c)
	}
}

func FuzzMapIDX(f *testing.F) {
	f.Add([]byte(idxFullPayload))
	f.Add([]byte(`{"type":"lead.created","data":{"email":"ada@example.com"}}`))
	f.Add([]byte(`{"type":"lead.created","data":{"property":{"price":"1.234"}}}`))
	f.Add([]byte(`{"type":"lead.updated","data":{}}`))
	f.Add([]byte(`not json`))
	f.Fuzz(func(t *testing.T, body []byte) {
		leads, err := mapIDX(t, body)
		if err != nil {
			var me *MappingError
			if !errors.As(err, &me) {
				t.Fatalf("error %v (%T) is not a *MappingError", err, err)
			}
			return
		}
		for _, l := range leads {
			if _, err := proto.Marshal(l); err != nil {
				t.Fatalf("proto.Marshal: %v", err)
			}
			if p := l.GetInquiry().GetProperty().GetListPrice(); p != nil && p.GetAmountMinor() < 0 {
				t.Fatalf("negative price %d", p.GetAmountMinor())
			}
			Canonicalize(l, "US")
			if _, err := proto.Marshal(l); err != nil {
				t.Fatalf("proto.Marshal after Canonicalize: %v", err)
			}
		}
	})
}
