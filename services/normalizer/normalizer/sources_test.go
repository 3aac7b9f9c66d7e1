package normalizer

import (
	"bytes"
	"errors"
	"fmt"
	"mime/multipart"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/sources"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

var (
	presetMu      sync.Mutex
	presetMappers = map[string]*sources.Mapper{}
)

// presetMapper compiles the built-in preset name, once per test binary.
func presetMapper(tb testing.TB, name string) *sources.Mapper {
	tb.Helper()
	presetMu.Lock()
	defer presetMu.Unlock()
	if m, ok := presetMappers[name]; ok {
		return m
	}
	specs, err := sources.Parse(fmt.Appendf(nil, "sources: [{name: %s, preset: %s}]", name, name), "test")
	if err != nil {
		tb.Fatal(err)
	}
	m, err := sources.NewMapper(specs[0])
	if err != nil {
		tb.Fatal(err)
	}
	presetMappers[name] = m
	return m
}

// mapWith maps body and builds the leads, not yet canonicalised.
func mapWith(tb testing.TB, m *sources.Mapper, body []byte, contentType string) ([]*leadv1.Lead, error) {
	tb.Helper()
	fs, err := m.Map(body, contentType)
	if err != nil {
		return nil, err
	}
	leads := make([]*leadv1.Lead, 0, len(fs))
	for _, f := range fs {
		l, err := leadFromFields(f)
		if err != nil {
			tb.Fatalf("leadFromFields(%v): %v", f, err)
		}
		leads = append(leads, l)
	}
	return leads, nil
}

// emailBoundary is fixed so that the fuzz corpus keeps matching.
const emailBoundary = "brokerflow-inbound-parse"

// inboundEmail builds a SendGrid Inbound Parse post.
func inboundEmail(tb testing.TB, fields map[string]string) ([]byte, string) {
	tb.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	if err := w.SetBoundary(emailBoundary); err != nil {
		tb.Fatal(err)
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if err := w.WriteField(k, fields[k]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes(), w.FormDataContentType()
}

func usd(cents int64) *commonv1.Money {
	return &commonv1.Money{AmountMinor: cents, CurrencyCode: "USD"}
}

// Realistic payloads, one per preset.
var (
	zillowForm = url.Values{
		"listingId": {"Z-2026-118"}, "name": {"Ada Lovelace"}, "email": {"Ada@Example.com"}, "phone": {"(415) 555-0134 x12"},
		"movingDate": {"20261201"}, "numBedroomsSought": {"2"}, "message": {"Is the unit still available in December?"},
		"listingStreet": {"12 Main St"}, "listingUnit": {"4B"}, "listingCity": {"Springfield"}, "listingState": {"IL"},
		"listingPostalCode": {"62701"}, "listingContactEmail": {"leasing@brokerage.example"},
	}.Encode()
	realtorJSON = `{"lead_id":"RDC-7731","role":"seller","contact":{"first_name":"Grace","last_name":"Hopper","email":"GRACE@example.com","phone":"+1 (415) 555-0199"},
	  "property":{"listing_url":"https://www.realtor.com/realestateandhomes-detail/M123","address":"99 Elm St","city":"Portland","state":"OR","zip_code":"97201",
	  "mls_id":"RMLS-55","list_price":625000,"beds":3},"finance_info":{"pre_approved":true},"listing_agent":{"name":"Someone Else"},
	  "source":"listing_page","message":"What would my home sell for?","is_likely_to_transact":true,"probability_to_transact":0.8,"timestamp":"2026-11-26T20:00:00Z"}`
	fubEventJSON = `{"source":"MyAwesomeWebsite.com","system":"AwesomeIDX","type":"Property Inquiry","message":"I'd like to see this one",
	  "person":{"firstName":"John","lastName":"Smith","emails":[{"value":"john.smith@example.com"}],"phones":[{"value":"555-555-5555"}],"tags":["Buyer"]},
	  "property":{"street":"1234 High Oak St","city":"Rochester","state":"WA","code":"98579","mlsNumber":"1234567","price":449000,"forRent":false,
	  "url":"http://example.com/listing/1234567","type":"Single-Family Home","bedrooms":3,"bathrooms":2,"area":2888,"lot":0.98}}`
	firstPartyJSON = `{"system":"open-house-app","idempotency_key":"oh-2026-11-26-0001","contact":{"first_name":"Katherine","last_name":"Johnson",
	  "email":"kj@example.com","phone":"757-555-0100"},"message":"Signed in at the open house","inquiry_type":"buy",
	  "property":{"address":"5 Langley Rd","city":"Hampton","state":"VA","postal_code":"23666","mls_number":"REIN-9","price":"410000.00"},
	  "agent":{"name":"Dorothy Vaughan","email":"DV@brokerage.example","id":"A-7"},"campaign":{"utm_medium":"event","page_url":"https://brokerage.example/oh"}}`
)

func TestPresets_mapRealisticPayloads(t *testing.T) {
	t.Parallel()
	emailBody, emailCT := inboundEmail(t, map[string]string{
		"from":     "Zillow <noreply@zillow.com>",
		"to":       "leads@inbound.brokerage.example",
		"subject":  "New Contact: Ada Lovelace",
		"headers":  "Received: by mx.sendgrid.net\nContent-Type: multipart/alternative",
		"envelope": `{"to":["leads@inbound.brokerage.example"],"from":"noreply@zillow.com"}`,
		"text":     "Ada Lovelace is interested in 12 Main St.\n\nName: Ada Lovelace\nEmail: ada@example.com\nPhone: 415.555.0134\nMessage: Can I tour on Saturday?\nProperty: 12 Main St, Springfield, IL 62701\nPrice: $850,000\n",
		"charsets": `{"to":"UTF-8","subject":"UTF-8","from":"UTF-8","text":"UTF-8"}`,
	})
	tests := []struct {
		name, preset, body, contentType string
		want                            *leadv1.Lead // after Canonicalize
	}{
		{
			name: "zillow_form", preset: "zillow", body: zillowForm, contentType: "application/x-www-form-urlencoded",
			want: &leadv1.Lead{
				Contact: &leadv1.Contact{FirstName: "Ada", LastName: "Lovelace", FullName: "Ada Lovelace", Email: "ada@example.com", MobilePhone: "+14155550134"},
				Inquiry: &leadv1.Inquiry{Type: leadv1.InquiryType_INQUIRY_TYPE_RENT, Message: "Is the unit still available in December?",
					Property: &leadv1.Property{UnparsedAddress: "12 Main St #4B", City: "Springfield", StateOrProvince: "IL", PostalCode: "62701", ListingId: "Z-2026-118"}},
				Campaign: &leadv1.Campaign{UtmSource: "zillow"},
			},
		},
		{
			name: "realtor_json", preset: "realtor", body: realtorJSON, contentType: "application/json",
			want: &leadv1.Lead{
				Contact: &leadv1.Contact{FirstName: "Grace", LastName: "Hopper", FullName: "Grace Hopper", Email: "grace@example.com", MobilePhone: "+14155550199"},
				Inquiry: &leadv1.Inquiry{Type: leadv1.InquiryType_INQUIRY_TYPE_SELL, Message: "What would my home sell for?",
					Property: &leadv1.Property{UnparsedAddress: "99 Elm St", City: "Portland", StateOrProvince: "OR", PostalCode: "97201", ListingId: "RMLS-55",
						ListPrice: usd(62500000), Url: "https://www.realtor.com/realestateandhomes-detail/M123"}},
				Campaign: &leadv1.Campaign{UtmSource: "realtor.com", UtmContent: "listing_page"},
			},
		},
		{
			name: "fub_event_property_inquiry", preset: "fub_events", body: fubEventJSON, contentType: "application/json",
			want: &leadv1.Lead{
				Contact: &leadv1.Contact{FirstName: "John", LastName: "Smith", FullName: "John Smith", Email: "john.smith@example.com", RawPhone: "555-555-5555"},
				Inquiry: &leadv1.Inquiry{Type: leadv1.InquiryType_INQUIRY_TYPE_BUY, Message: "I'd like to see this one",
					Property: &leadv1.Property{UnparsedAddress: "1234 High Oak St", City: "Rochester", StateOrProvince: "WA", PostalCode: "98579", ListingId: "1234567",
						ListPrice: usd(44900000), Url: "http://example.com/listing/1234567"}},
				Campaign:  &leadv1.Campaign{UtmSource: "MyAwesomeWebsite.com"},
				CrmSource: "MyAwesomeWebsite.com",
			},
		},
		{
			name: "fub_event_seller", preset: "fub_events", contentType: "application/json",
			body: `{"system":"AwesomeIDX","type":"Seller Inquiry","person":{"name":"Mary Ann Smith","emails":[{"value":"mary@example.com"}]},"property":{"street":"1 Oak"}}`,
			want: &leadv1.Lead{
				Contact:  &leadv1.Contact{FirstName: "Mary Ann", LastName: "Smith", FullName: "Mary Ann Smith", Email: "mary@example.com"},
				Inquiry:  &leadv1.Inquiry{Type: leadv1.InquiryType_INQUIRY_TYPE_SELL, Property: &leadv1.Property{UnparsedAddress: "1 Oak"}},
				Campaign: &leadv1.Campaign{UtmSource: "AwesomeIDX"},
			},
		},
		{
			name: "fub_event_for_rent", preset: "fub_events", contentType: "application/json",
			body: `{"source":"Site","type":"Property Inquiry","person":{"emails":[{"value":"r@example.com"}]},"property":{"forRent":true,"price":"2400"}}`,
			want: &leadv1.Lead{
				Contact:   &leadv1.Contact{Email: "r@example.com"},
				Inquiry:   &leadv1.Inquiry{Type: leadv1.InquiryType_INQUIRY_TYPE_RENT, Property: &leadv1.Property{ListPrice: usd(240000)}},
				Campaign:  &leadv1.Campaign{UtmSource: "Site"},
				CrmSource: "Site",
			},
		},
		{
			name: "fub_event_general_inquiry", preset: "fub_events", contentType: "application/json",
			body: `{"source":"Site","type":"General Inquiry","message":"Call me","person":{"phones":[{"value":"(415) 555-0134"}]}}`,
			want: &leadv1.Lead{
				Contact:   &leadv1.Contact{MobilePhone: "+14155550134"},
				Inquiry:   &leadv1.Inquiry{Message: "Call me"},
				Campaign:  &leadv1.Campaign{UtmSource: "Site"},
				CrmSource: "Site",
			},
		},
		{
			name: "first_party_grpc", preset: "first_party", body: firstPartyJSON, contentType: "application/json",
			want: &leadv1.Lead{
				Contact: &leadv1.Contact{FirstName: "Katherine", LastName: "Johnson", FullName: "Katherine Johnson", Email: "kj@example.com", MobilePhone: "+17575550100"},
				Inquiry: &leadv1.Inquiry{Type: leadv1.InquiryType_INQUIRY_TYPE_BUY, Message: "Signed in at the open house",
					Property: &leadv1.Property{UnparsedAddress: "5 Langley Rd", City: "Hampton", StateOrProvince: "VA", PostalCode: "23666", ListingId: "REIN-9", ListPrice: usd(41000000)}},
				Campaign: &leadv1.Campaign{UtmSource: "open-house-app", UtmMedium: "event", LandingPageUrl: "https://brokerage.example/oh"},
				Agent:    &leadv1.Agent{Name: "Dorothy Vaughan", Email: "dv@brokerage.example", MemberId: "A-7"},
			},
		},
		{
			name: "email_zillow_notification", preset: "email", body: string(emailBody), contentType: emailCT,
			want: &leadv1.Lead{
				Contact: &leadv1.Contact{FirstName: "Ada", LastName: "Lovelace", FullName: "Ada Lovelace", Email: "ada@example.com", MobilePhone: "+14155550134"},
				Inquiry: &leadv1.Inquiry{Message: "Can I tour on Saturday?",
					Property: &leadv1.Property{UnparsedAddress: "12 Main St, Springfield, IL 62701", ListPrice: usd(85000000)}},
				Campaign: &leadv1.Campaign{UtmSource: "zillow"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			leads, err := mapWith(t, presetMapper(t, tt.preset), []byte(tt.body), tt.contentType)
			if err != nil {
				t.Fatalf("map: %v", err)
			}
			if len(leads) != 1 {
				t.Fatalf("%d leads, want 1", len(leads))
			}
			if reason := Canonicalize(leads[0], "US"); reason != "" {
				t.Fatalf("rejected: %s", reason)
			}
			if !proto.Equal(leads[0], tt.want) {
				t.Errorf("lead = %v\nwant   %v", leads[0], tt.want)
			}
		})
	}
}

func TestPresets_deliveryIDFromTheVendor(t *testing.T) {
	t.Parallel()
	for preset, body := range map[string]string{"realtor": realtorJSON, "first_party": firstPartyJSON} {
		fs, err := presetMapper(t, preset).Map([]byte(body), "application/json")
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"realtor": "RDC-7731", "first_party": "oh-2026-11-26-0001"}[preset]
		if got := fs[0]["delivery_id"]; got != want {
			t.Errorf("%s delivery_id = %q, want %q", preset, got, want)
		}
	}
}

func TestLeadFromFields_price(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]*commonv1.Money{
		"850000": usd(85000000), "850000.5": usd(85000050), "850000.50": usd(85000050), "12.500": usd(1250), "0": usd(0),
		"1.234": nil, "-5": nil, "8.5e5": nil, "$850,000": nil, "850,000": nil, ".5": nil, "5.": nil, "": nil, "true": nil, "99999999999999999999": nil,
	} {
		l, err := leadFromFields(sources.Fields{"property.price": in})
		if err != nil {
			t.Fatal(err)
		}
		if got := l.GetInquiry().GetProperty().GetListPrice(); !proto.Equal(got, want) {
			t.Errorf("price %q = %v, want %v", in, got, want)
		}
	}
	if _, err := leadFromFields(sources.Fields{"shoe_size": "9"}); err == nil {
		t.Error("a field that is not canonical is an error")
	}
}

func TestDecodeLeadgen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, body string
		want       []map[string]string
		reason     string
	}{
		{
			name: "two_leads_numbers_and_strings",
			body: `{"object":"page","entry":[{"id":"153125381133","time":1447342027,"changes":[
			  {"field":"leadgen","value":{"ad_id":0,"form_id":"F1","leadgen_id":123123123123,"created_time":1447342026,"page_id":153125381133,"adgroup_id":0}},
			  {"field":"feed","value":{"item":"status"}}]},
			  {"id":"153125381133","time":1447342030,"changes":[{"field":"leadgen","value":{"leadgen_id":"444","form_id":"F1"}}]}]}`,
			want: []map[string]string{
				{"ad_id": "0", "form_id": "F1", "leadgen_id": "123123123123", "created_time": "1447342026", "page_id": "153125381133", "adgroup_id": "0"},
				{"leadgen_id": "444", "form_id": "F1"},
			},
		},
		{name: "not_json", body: `leadgen`, reason: "invalid leadgen notification"},
		{name: "not_a_page", body: `{"object":"user","entry":[]}`, reason: `notification object "user"`},
		{name: "no_leadgen", body: `{"object":"page","entry":[{"changes":[{"field":"feed","value":{}}]}]}`, reason: "no leadgen change"},
		{name: "no_id", body: `{"object":"page","entry":[{"changes":[{"field":"leadgen","value":{"form_id":"F"}}]}]}`, reason: "no leadgen_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := decodeLeadgen([]byte(tt.body))
			if tt.reason != "" {
				var me *MappingError
				if !errors.As(err, &me) || !strings.Contains(me.Reason, tt.reason) {
					t.Fatalf("err = %v, want a MappingError containing %q", err, tt.reason)
				}
				return
			}
			if err != nil || fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("decodeLeadgen = %v, %v\nwant %v", got, err, tt.want)
			}
		})
	}
}

func TestLoadMappers(t *testing.T) {
	t.Parallel()
	write := func(t *testing.T, yaml string) string {
		t.Helper()
		p := filepath.Join(t.TempDir(), "sources.yaml")
		if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("built_in", func(t *testing.T) {
		t.Parallel()
		m, err := loadMappers("")
		if err != nil || m["idx"] == nil || m[sources.FirstParty] == nil || len(m) != 2 {
			t.Fatalf("loadMappers = %v, %v", m, err)
		}
	})
	t.Run("file_plus_first_party_and_no_crm", func(t *testing.T) {
		t.Parallel()
		m, err := loadMappers(write(t, `
sources:
  - {name: zillow, preset: zillow}
  - {name: followupboss, kind: crm, auth: {scheme: fub_signature}}
`))
		if err != nil || m["zillow"] == nil || m[sources.FirstParty] == nil || m["idx"] != nil || m["followupboss"] != nil {
			t.Fatalf("loadMappers = %v, %v", m, err)
		}
	})
	t.Run("bad_expression_names_source_and_field", func(t *testing.T) {
		t.Parallel()
		_, err := loadMappers(write(t, `
sources:
  - name: zillow
    preset: zillow
    mapping:
      email: bdy.email
`))
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), `source "zillow": mapping.email: unknown name bdy`) {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("missing_file", func(t *testing.T) {
		t.Parallel()
		if _, err := loadMappers(filepath.Join(t.TempDir(), "nope.yaml")); !errors.Is(err, ErrConfig) {
			t.Fatalf("err = %v", err)
		}
	})
}

// checkLeads asserts what every mapped, canonicalised lead promises.
func checkLeads(t *testing.T, m *sources.Mapper, body []byte, contentType string) {
	t.Helper()
	fs, err := m.Map(body, contentType)
	if err != nil {
		var me *MappingError
		if !errors.As(err, &me) || me.Reason == "" {
			t.Fatalf("error %v (%T) is not a *MappingError with a reason", err, err)
		}
		return
	}
	for _, f := range fs {
		l, err := leadFromFields(f)
		if err != nil {
			t.Fatalf("leadFromFields: %v", err)
		}
		if p := l.GetInquiry().GetProperty().GetListPrice(); p != nil && p.GetAmountMinor() < 0 {
			t.Fatalf("negative price %d", p.GetAmountMinor())
		}
		Canonicalize(l, "US")
		if _, err := proto.Marshal(l); err != nil {
			t.Fatalf("proto.Marshal: %v", err)
		}
	}
}

func FuzzPreset_JSON(f *testing.F) {
	mappers := []*sources.Mapper{presetMapper(f, "realtor"), presetMapper(f, "fub_events"), presetMapper(f, "first_party")}
	for _, s := range []string{realtorJSON, fubEventJSON, firstPartyJSON, `{"person":{"emails":"x"}}`, `{"property":{"price":-1e400}}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, m := range mappers {
			checkLeads(t, m, body, "application/json")
		}
	})
}

func FuzzPreset_Form(f *testing.F) {
	m := presetMapper(f, "zillow")
	f.Add([]byte(zillowForm))
	f.Add([]byte("name=%ff&email=a%40b&phone=%2B44+20+7946+0958"))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkLeads(t, m, body, "application/x-www-form-urlencoded")
	})
}

func FuzzPreset_Email(f *testing.F) {
	m := presetMapper(f, "email")
	body, ct := inboundEmail(f, map[string]string{"from": "Zillow <noreply@zillow.com>", "subject": "New Contact",
		"text": "Name: Ada Lovelace\nEmail: ada@example.com\nPhone: 415 555 0134\nPrice: 1,250,000.505\n"})
	_, params, _ := strings.Cut(ct, "boundary=")
	f.Add(body)
	f.Add([]byte("--" + params + "\r\nContent-Disposition: form-data; name=\"html\"\r\n\r\n<meta name=\"lead_phone\" content=\"+44 20 7946 0958\">\r\n--" + params + "--\r\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkLeads(t, m, body, ct)
	})
}
