package sources_test

import (
	"bytes"
	"errors"
	"fmt"
	"mime/multipart"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/brokerflow/brokerflow/pkg/sources"
)

// preset compiles the built-in preset name as a source of the same name.
func preset(tb testing.TB, name string) *sources.Mapper {
	tb.Helper()
	specs, err := sources.Parse([]byte(fmt.Sprintf("sources: [{name: %s, preset: %s}]", name, name)), "test")
	if err != nil {
		tb.Fatal(err)
	}
	m, err := sources.NewMapper(specs[0])
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// mapper compiles a source from YAML.
func mapper(tb testing.TB, yaml string) *sources.Mapper {
	tb.Helper()
	specs, err := sources.Parse([]byte(yaml), "test")
	if err != nil {
		tb.Fatal(err)
	}
	m, err := sources.NewMapper(specs[0])
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestNewMapper_everyPresetCompiles(t *testing.T) {
	t.Parallel()
	presets, err := sources.Presets()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"idx", "zillow", "realtor", "fub_events", "facebook", "email", "first_party"} {
		if _, ok := presets[want]; !ok {
			t.Errorf("preset %s is missing", want)
		}
	}
	for name, p := range presets {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if p.Notes == "" {
				t.Error("a preset says what is known of its contract in notes")
			}
			preset(t, name)
		})
	}
}

func TestNewMapper_errorsNameTheSourceAndTheField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		spec sources.Spec
		want string
	}{
		{"unknown_name", sources.Spec{Name: "zillow", Mapping: map[string]string{"email": "emial.address"}}, `source "zillow": mapping.email: unknown name emial`},
		{"syntax", sources.Spec{Name: "v", Mapping: map[string]string{"phone": "body.("}}, `source "v": mapping.phone: `},
		{"items", sources.Spec{Name: "v", Items: "body.leads[", Mapping: map[string]string{"email": "item.email"}}, `source "v": items: `},
		{"not_canonical", sources.Spec{Name: "v", Mapping: map[string]string{"shoe": "body.x"}}, `source "v": mapping.shoe: not a canonical lead field`},
		{"template_groups", sources.Spec{Name: "m", Format: sources.FormatEmail, Mapping: map[string]string{"email": "fields.email"},
			Templates: []sources.EmailTemplate{{Name: "t", Fields: map[string]string{"email": "(a)(b)"}}}}, `source "m": templates[0].fields.email: needs exactly one capture group`},
		{"template_regex", sources.Spec{Name: "m", Format: sources.FormatEmail, Mapping: map[string]string{"email": "fields.email"},
			Templates: []sources.EmailTemplate{{Name: "t", SubjectPattern: "(", Fields: map[string]string{"email": "(a)"}}}}, `source "m": templates[0].subject: `},
		{"email_without_templates", sources.Spec{Name: "m", Format: sources.FormatEmail, Mapping: map[string]string{"email": "fields.email"}}, `source "m": templates: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := sources.NewMapper(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "\n |") {
				t.Errorf("err = %q carries expr's snippet", err)
			}
		})
	}
}

func TestMapper_textOfValues(t *testing.T) {
	t.Parallel()
	m := mapper(t, `sources: [{name: v, auth: {scheme: basic}, mapping: {
  property.price: body.price, property.postal_code: body.zip, email: body.email, phone: body.phone,
  first_name: body.first, last_name: "body.last ?? 'x'", agent.id: body.ok}}]`)
	tests := []struct {
		name, body string
		want       sources.Fields
	}{
		{"integer", `{"price":850000}`, sources.Fields{"property.price": "850000", "last_name": "x"}},
		{"decimal", `{"price":850000.5}`, sources.Fields{"property.price": "850000.5", "last_name": "x"}},
		{"as_written", `{"price":8.5e5,"zip":62701}`, sources.Fields{"property.price": "8.5e5", "property.postal_code": "62701", "last_name": "x"}},
		{"nil_and_empty_are_absent", `{"email":null,"phone":"  ","first":""}`, sources.Fields{"last_name": "x"}},
		{"trimmed", `{"email":"  a@b.co \n"}`, sources.Fields{"email": "a@b.co", "last_name": "x"}},
		{"bool", `{"ok":true}`, sources.Fields{"agent.id": "true", "last_name": "x"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := m.Map([]byte(tt.body), "application/json")
			if err != nil || len(got) != 1 || !equal(got[0], tt.want) {
				t.Fatalf("Map = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func TestMapper_arithmeticThroughNum(t *testing.T) {
	t.Parallel()
	// JSON numbers stay as written (json.Number); num() makes them numbers.
	m := mapper(t, `sources: [{name: v, auth: {scheme: basic}, mapping: {message: num(body.n) * 2, agent.id: num(body.bad)}}]`)
	for body, want := range map[string]sources.Fields{
		`{"n":1.25}`:              {"message": "2.5"},
		`{"n":500000}`:            {"message": "1000000"},
		`{"n":"7","bad":"seven"}`: {"message": "14"},
	} {
		got, err := m.Map([]byte(body), "application/json")
		if err != nil || !equal(got[0], want) {
			t.Errorf("Map(%s) = %v, %v; want %v", body, got, err, want)
		}
	}
}

func TestMapper_mappingErrors(t *testing.T) {
	t.Parallel()
	m := mapper(t, `sources: [{name: v, auth: {scheme: basic}, mapping: {email: body.contact.email, phone: body.phone}}]`)
	items := mapper(t, `sources: [{name: v, auth: {scheme: basic}, items: body.leads, mapping: {email: item.email}}]`)
	tests := []struct {
		name string
		m    *sources.Mapper
		body string
		want string
	}{
		{"bad_json", m, `{"contact":`, "invalid JSON"},
		{"trailing", m, `{} {}`, "invalid JSON: trailing data"},
		{"runtime_error_names_the_field", m, `{"phone":"1"}`, "mapping.email: cannot fetch email from <nil>"},
		{"object_for_text", m, `{"contact":{"email":"a@b.co"},"phone":{"n":1}}`, "mapping.phone: want text, got an object"},
		{"list_for_text", m, `{"contact":{"email":["a@b.co"]}}`, "mapping.email: want text, got a list"},
		{"items_not_a_list", items, `{"leads":{"email":"a@b.co"}}`, "items: an object is not a list of leads"},
		{"items_missing", items, `{}`, "items: nothing (nil) is not a list of leads"},
		{"item_error_names_the_item", items, `{"leads":[{"email":"a@b.co"},{"email":{}}]}`, "item 1: mapping.email: want text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := tt.m.Map([]byte(tt.body), "application/json")
			var me *sources.MappingError
			if !errors.As(err, &me) || !strings.Contains(me.Reason, tt.want) {
				t.Fatalf("err = %v, want a MappingError containing %q", err, tt.want)
			}
		})
	}
}

func TestMapper_itemsAndHelpers(t *testing.T) {
	t.Parallel()
	m := mapper(t, `
sources:
  - name: v
    auth: {scheme: basic}
    items: 'body.kind == "test" ? reject("test deliveries are not leads") : body.leads'
    mapping:
      full_name: join(item.first, item.last)
      email: coalesce(item.email, item.alt_email)
      phone: first(item.phones)
      message: 'join(item.tags ?? [], ", ")'
      property.mls_number: 'capture(item.ref, "MLS-([0-9]+)")'
`)
	got, err := m.Map([]byte(`{"leads":[
	  {"first":"Ada","last":"Lovelace","email":"","alt_email":"ada@example.com","phones":["+14155550134","x"],"tags":["a","b"],"ref":"see MLS-42"},
	  {"first":" Grace ","phones":[]}]}`), "application/json")
	if err != nil {
		t.Fatal(err)
	}
	want := []sources.Fields{
		{"full_name": "Ada Lovelace", "email": "ada@example.com", "phone": "+14155550134", "message": "a, b", "property.mls_number": "42"},
		{"full_name": "Grace"},
	}
	if len(got) != 2 || !equal(got[0], want[0]) || !equal(got[1], want[1]) {
		t.Fatalf("Map = %v; want %v", got, want)
	}
	_, err = m.Map([]byte(`{"kind":"test"}`), "application/json")
	var me *sources.MappingError
	if !errors.As(err, &me) || me.Reason != "test deliveries are not leads" {
		t.Fatalf("err = %v", err)
	}
}

func TestMapper_form(t *testing.T) {
	t.Parallel()
	m := mapper(t, `sources: [{name: v, auth: {scheme: basic}, format: form, mapping: {email: body.email, message: 'join(body.all.tag, ",")'}}]`)
	got, err := m.Map([]byte("email=ada%40example.com&email=other%40example.com&tag=a&tag=b"), "application/x-www-form-urlencoded")
	if err != nil || !equal(got[0], sources.Fields{"email": "ada@example.com", "message": "a,b"}) {
		t.Fatalf("Map = %v, %v", got, err)
	}
}

// sendgrid builds a SendGrid Inbound Parse post.
func sendgrid(tb testing.TB, fields map[string]string) ([]byte, string) {
	tb.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, k := range slicesSorted(fields) {
		if err := w.WriteField(k, fields[k]); err != nil {
			tb.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes(), w.FormDataContentType()
}

func slicesSorted(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestMapper_email(t *testing.T) {
	t.Parallel()
	m := preset(t, "email")
	tests := []struct {
		name   string
		fields map[string]string
		want   sources.Fields
		reason string
	}{
		{
			name: "zillow_text",
			fields: map[string]string{
				"from": "Zillow <noreply@zillow.com>", "to": "leads@brokerage.example", "subject": "New Contact: Ada Lovelace is requesting information",
				"text": "You have a new contact!\n\nName: Ada Lovelace\nEmail: Ada@Example.com\nPhone: (415) 555-0134\nMessage: I'd like to tour 12 Main St.\nProperty: 12 Main St, Springfield, IL 62701\nMLS #: MLS123\nPrice: $850,000\n",
				"html": "<p>ignored when there is text</p>",
			},
			want: sources.Fields{"full_name": "Ada Lovelace", "email": "Ada@Example.com", "phone": "(415) 555-0134", "message": "I'd like to tour 12 Main St.",
				"property.address": "12 Main St, Springfield, IL 62701", "property.mls_number": "MLS123", "property.price": "850000", "utm.source": "zillow"},
		},
		{
			name: "realtor_html_only",
			fields: map[string]string{
				"from": "realtor.com <leads@email.realtor.com>", "subject": "New realtor.com lead",
				"html": "<html><head><style>p{color:red}</style></head><body><table><tr><td>First Name:</td><td>Grace</td></tr><tr><td>Last Name:</td><td>Hopper</td></tr>" +
					"<tr><td>Email:</td><td>grace@example.com</td></tr><tr><td>Phone:</td><td>415-555-0199</td></tr><tr><td>Comments:</td><td>Can I see it Saturday? &amp; bring my dog</td></tr>" +
					"<tr><td>Lead Type:</td><td>Seller</td></tr></table></body></html>",
			},
			want: sources.Fields{"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com", "phone": "415-555-0199",
				"message": "Can I see it Saturday? & bring my dog", "inquiry_type": "sell", "utm.source": "realtor"},
		},
		{
			name: "lead_metadata_meta_tags",
			fields: map[string]string{
				"from": "StreetSmart <alerts@portal.example>", "subject": "You have a lead",
				"html": `<html><head><meta name="lead_information_version" content="1.0" /><meta name="lead_source" content="Portal.example" />` +
					`<meta name="lead_type" content="Buyer" /><meta name="lead_name" content="John Smith" /><meta name="lead_email" content="john@example.com" />` +
					`<meta name="lead_phone" content="703-555-1212" /><meta name="lead_property_address" content="72 Oak Ave &amp; Main" /></head><body>Hi</body></html>`,
			},
			want: sources.Fields{"full_name": "John Smith", "email": "john@example.com", "phone": "703-555-1212", "inquiry_type": "buy",
				"property.address": "72 Oak Ave & Main", "utm.source": "Portal.example"},
		},
		{
			name:   "no_template_fits",
			fields: map[string]string{"from": "Newsletter <news@example.com>", "subject": "Our spring sale", "text": "Hello!"},
			reason: "no e-mail template fits (tried lead_metadata, zillow, realtor)",
		},
		{
			name:   "zillow_sender_without_fields",
			fields: map[string]string{"from": "Zillow <noreply@zillow.com>", "subject": "New Contact", "text": "Open the app to see your lead."},
			reason: "no e-mail template fits",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			body, ct := sendgrid(t, tt.fields)
			got, err := m.Map(body, ct)
			if tt.reason != "" {
				var me *sources.MappingError
				if !errors.As(err, &me) || !strings.Contains(me.Reason, tt.reason) {
					t.Fatalf("Map = %v, %v; want a MappingError containing %q", got, err, tt.reason)
				}
				return
			}
			if err != nil || len(got) != 1 || !equal(got[0], tt.want) {
				t.Fatalf("Map = %v, %v\nwant %v", got, err, tt.want)
			}
		})
	}
}

func TestMapper_emailNotMultipart(t *testing.T) {
	t.Parallel()
	_, err := preset(t, "email").Map([]byte(`{"from":"x"}`), "application/json")
	var me *sources.MappingError
	if !errors.As(err, &me) || !strings.Contains(me.Reason, "multipart/form-data") {
		t.Fatalf("err = %v", err)
	}
}

func TestMapper_mapItemsFacebook(t *testing.T) {
	t.Parallel()
	m := preset(t, "facebook")
	got, err := m.MapItems([]map[string]any{
		{"id": "444", "created_time": "2026-11-26T20:00:00+0000", "ad_id": "A1", "form_id": "F1", "campaign_id": "C1",
			"fields": map[string]any{"email": "ada@example.com", "full_name": "Ada Lovelace", "phone_number": "+14155550134",
				"are_you_looking_to_buy_or_sell?": "I'm looking to sell my home", "zip_code": "62701"}},
		{"id": "445", "fields": map[string]string{"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []sources.Fields{
		{"email": "ada@example.com", "full_name": "Ada Lovelace", "phone": "+14155550134", "inquiry_type": "sell", "property.postal_code": "62701",
			"utm.source": "facebook", "utm.medium": "paid_social", "utm.campaign": "C1", "utm.content": "A1", "utm.term": "F1"},
		{"first_name": "Grace", "last_name": "Hopper", "email": "grace@example.com", "utm.source": "facebook", "utm.medium": "paid_social"},
	}
	if len(got) != 2 || !equal(got[0], want[0]) || !equal(got[1], want[1]) {
		t.Fatalf("MapItems = %v\nwant %v", got, want)
	}
	if _, err := m.Map([]byte(`{}`), "application/json"); err == nil {
		t.Fatal("Map of a facebook_leadgen source must say to use MapItems")
	}
}

func TestStripHTML(t *testing.T) {
	t.Parallel()
	got := sources.StripHTML("<html><head><title>x</title><script>var a=1</script></head><body><p>Name: <b>Ada</b></p><div>Phone:&nbsp;1</div>a<br>b</body></html>")
	if want := "Name: Ada\nPhone: 1\na\nb"; got != want {
		t.Fatalf("StripHTML = %q", got)
	}
}

func equal(a, b sources.Fields) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkFields asserts what every mapping result promises.
func checkFields(t *testing.T, got []sources.Fields, err error) {
	t.Helper()
	if err != nil {
		var me *sources.MappingError
		if !errors.As(err, &me) {
			t.Fatalf("error %v (%T) is not a *MappingError", err, err)
		}
		if me.Reason == "" || !utf8.ValidString(me.Reason) {
			t.Fatalf("reason %q", me.Reason)
		}
		return
	}
	for _, f := range got {
		for k, v := range f {
			if !slices.Contains(sources.CanonicalFields, k) {
				t.Fatalf("field %q is not canonical", k)
			}
			if v == "" || v != strings.TrimSpace(v) || !utf8.ValidString(v) {
				t.Fatalf("field %s = %q: want non-empty, trimmed, valid UTF-8", k, v)
			}
		}
	}
}

func FuzzMapper_JSON(f *testing.F) {
	mappers := []*sources.Mapper{preset(f, "idx"), preset(f, "realtor"), preset(f, "fub_events"), preset(f, "first_party")}
	f.Add([]byte(`{"type":"lead.created","data":{"name":"Ada Lovelace","email":"ada@example.com","property":{"price":850000.5}}}`))
	f.Add([]byte(`{"lead_id":"L1","role":"buyer","contact":{"first_name":"Ada","email":"ada@example.com"},"property":{"list_price":1e3}}`))
	f.Add([]byte(`{"type":"Seller Inquiry","person":{"emails":[{"value":"a@b.co"}],"phones":[]},"property":{"forRent":"true"}}`))
	f.Add([]byte(`[1,2,{"x":null}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, m := range mappers {
			got, err := m.Map(body, "application/json")
			checkFields(t, got, err)
		}
	})
}

func FuzzMapper_Form(f *testing.F) {
	m := preset(f, "zillow")
	f.Add([]byte("listingId=Z1&name=Ada+Lovelace&email=ada%40example.com&phone=%28415%29+555-0134&message=Hi&listingStreet=12+Main+St&listingUnit=4B"))
	f.Add([]byte("email=%zz&name=%ff%fe"))
	f.Add([]byte("a=1;b=2&all=x"))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := m.Map(body, "application/x-www-form-urlencoded")
		checkFields(t, got, err)
	})
}

func FuzzMapper_Email(f *testing.F) {
	m := preset(f, "email")
	const boundary = "xYzZY"
	ct := "multipart/form-data; boundary=" + boundary
	part := func(name, value string) string {
		return "--" + boundary + "\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n"
	}
	f.Add([]byte(part("from", "Zillow <noreply@zillow.com>") + part("subject", "New Contact") +
		part("text", "Name: Ada Lovelace\nEmail: ada@example.com\nPhone: 415 555 0134\nPrice: $1,250,000.50\n") + "--" + boundary + "--\r\n"))
	f.Add([]byte(part("from", "x@y.z") + part("html", `<meta name="lead_email" content="a@b.co"><meta name="lead_name" content="&#xff;">`) + "--" + boundary + "--\r\n"))
	f.Add([]byte(part("subject", "no end")))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := m.Map(body, ct)
		checkFields(t, got, err)
	})
}
