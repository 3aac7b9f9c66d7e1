package normalizer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/jsonscalar"
	"github.com/brokerflow/brokerflow/pkg/sources"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// firstPartySource is the sources file entry of sources.FirstParty, which
// the normalizer always knows.
const firstPartySource = "{name: " + sources.FirstParty + ", preset: " + sources.FirstParty + "}"

// builtinSources are the sources known without NORMALIZER_SOURCES_FILE.
const builtinSources = "sources: [{name: idx, preset: idx}, " + firstPartySource + "]"

// MappingError reports a body that cannot be mapped to a lead; the caller
// publishes lead.rejected.<source> with its Reason.
type MappingError = sources.MappingError

// LeadReader reads one Facebook lead by its leadgen id from the Graph API.
// The lead is a map of its attributes (id, created_time, ad_id, form_id,
// campaign_id, …) with its field_data flattened to name → first value
// under "fields". An error is retried on the bus's schedule unless it is
// permanent (bus.AsPermanent, e.g. a 4xx other than 429) or says when to
// retry (bus.RetryAfter, bus.Throttled).
type LeadReader interface {
	ReadLead(ctx context.Context, leadgenID string) (map[string]any, error)
}

// loadMappers compiles the mapper of every lead source: those of the
// sources file (when path is set) plus first_party if the file does not
// define it, or the built-in idx and first_party. Errors name the source
// and the field.
func loadMappers(path string) (map[string]*sources.Mapper, error) {
	var specs []sources.Spec
	var err error
	if path == "" {
		specs, err = sources.Parse([]byte(builtinSources), "built-in sources")
	} else {
		specs, err = sources.Load(path)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	has := false
	for _, s := range specs {
		has = has || s.Name == sources.FirstParty
	}
	if !has {
		fp, err := sources.Parse([]byte("sources: ["+firstPartySource+"]"), "built-in sources")
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		specs = append(specs, fp...)
	}
	out := make(map[string]*sources.Mapper, len(specs))
	var errs []error
	for _, s := range specs {
		if s.Kind != sources.KindLead {
			continue
		}
		m, err := sources.NewMapper(s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out[s.Name] = m
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrConfig, errors.Join(errs...))
	}
	return out, nil
}

// mapDelivery maps one webhook body with the source's mapper; for
// facebook_leadgen it reads each notified lead through the LeadReader.
// Each result is the fields of one lead, or the reason it cannot be mapped.
func (n *Normalizer) mapDelivery(ctx context.Context, m *sources.Mapper, body []byte, contentType string) ([]mapped, error) {
	if m.Spec().Format != sources.FormatFacebookLeadgen {
		fs, err := m.Map(body, contentType)
		if err != nil {
			return nil, err
		}
		out := make([]mapped, len(fs))
		for i, f := range fs {
			out[i] = mapped{fields: f}
		}
		return out, nil
	}
	changes, err := decodeLeadgen(body)
	if err != nil {
		return nil, err
	}
	if n.leads == nil {
		return nil, bus.AsPermanent(fmt.Errorf("source %q sends Facebook leadgen ids, but no Graph API client is configured: %w", m.Spec().Name, errNoLeadReader))
	}
	out := make([]mapped, len(changes))
	for i, ch := range changes {
		lead, err := n.leads.ReadLead(ctx, ch["leadgen_id"])
		if err != nil {
			return nil, fmt.Errorf("read Facebook lead %d of %d from the Graph API: %w", i+1, len(changes), err)
		}
		lead = maps.Clone(lead) // the reader's map stays as it was
		if lead == nil {
			lead = map[string]any{}
		}
		// The notification's ids fill what the Graph read left out.
		for k, v := range ch {
			if k == "leadgen_id" {
				k = "id"
			}
			if cur, ok := lead[k]; !ok || cur == nil || cur == "" {
				lead[k] = v
			}
		}
		fs, err := m.MapItems([]map[string]any{lead})
		var me *MappingError
		switch {
		case errors.As(err, &me):
			out[i] = mapped{reason: me.Reason}
		case err != nil:
			return nil, err
		default:
			out[i] = mapped{fields: fs[0]}
		}
	}
	return out, nil
}

// mapped is one lead of a delivery: its fields, or why it cannot be mapped.
type mapped struct {
	fields sources.Fields
	reason string
}

var errNoLeadReader = errors.New("normalizer: no LeadReader (set the Graph API access token)")

// decodeLeadgen reads a Facebook leadgen notification:
// {"object":"page","entry":[{"changes":[{"field":"leadgen","value":{…}}]}]}
// and returns each leadgen change's value as text, in order.
func decodeLeadgen(body []byte) ([]map[string]string, error) {
	var n struct {
		Object string `json:"object"`
		Entry  []struct {
			Changes []struct {
				Field string                     `json:"field"`
				Value map[string]json.RawMessage `json:"value"`
			} `json:"changes"`
		} `json:"entry"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&n); err != nil {
		return nil, &MappingError{Reason: fmt.Sprintf("invalid leadgen notification: %v", err)}
	}
	if n.Object != "page" {
		return nil, &MappingError{Reason: fmt.Sprintf("notification object %q, want \"page\"", n.Object)}
	}
	var out []map[string]string
	for _, e := range n.Entry {
		for _, ch := range e.Changes {
			if ch.Field != "leadgen" {
				continue
			}
			v := make(map[string]string, len(ch.Value))
			for k, raw := range ch.Value {
				if s := jsonscalar.String(raw); s != "" {
					v[k] = s
				}
			}
			if v["leadgen_id"] == "" {
				return nil, &MappingError{Reason: fmt.Sprintf("leadgen change %d has no leadgen_id", len(out))}
			}
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, &MappingError{Reason: "the notification carries no leadgen change"}
	}
	return out, nil
}

// leadFromFields builds the lead the fields describe, not yet
// canonicalised: values as sent, the inquiry type and the price parsed.
// Empty parts (property, campaign, agent, inquiry) are left unset.
func leadFromFields(f sources.Fields) (*leadv1.Lead, error) {
	for k := range f {
		if !isCanonicalField(k) {
			return nil, fmt.Errorf("field %q is not a canonical lead field", k)
		}
	}
	get := func(k string) string { return strings.TrimSpace(f[k]) }
	lead := &leadv1.Lead{
		CrmSource: get("crm_source"),
		Contact: &leadv1.Contact{
			FirstName:   get("first_name"),
			LastName:    get("last_name"),
			FullName:    get("full_name"),
			Email:       get("email"),
			MobilePhone: get("phone"),
		},
	}
	inq := &leadv1.Inquiry{Type: parseInquiryType(get("inquiry_type")), Message: get("message")}
	prop := &leadv1.Property{
		UnparsedAddress: get("property.address"),
		City:            get("property.city"),
		StateOrProvince: get("property.state"),
		PostalCode:      get("property.postal_code"),
		ListingId:       get("property.mls_number"),
		ListPrice:       parseUSD(get("property.price")),
		Url:             get("property.url"),
	}
	if !isEmptyProperty(prop) {
		inq.Property = prop
	}
	if inq.Type != leadv1.InquiryType_INQUIRY_TYPE_UNSPECIFIED || inq.Message != "" || inq.Property != nil {
		lead.Inquiry = inq
	}
	camp := &leadv1.Campaign{
		UtmSource: get("utm.source"), UtmMedium: get("utm.medium"), UtmCampaign: get("utm.campaign"),
		UtmTerm: get("utm.term"), UtmContent: get("utm.content"), LandingPageUrl: get("page_url"),
	}
	if camp.UtmSource != "" || camp.UtmMedium != "" || camp.UtmCampaign != "" ||
		camp.UtmTerm != "" || camp.UtmContent != "" || camp.LandingPageUrl != "" {
		lead.Campaign = camp
	}
	ag := &leadv1.Agent{Name: get("agent.name"), Email: get("agent.email"), MemberId: get("agent.id")}
	if ag.Name != "" || ag.Email != "" || ag.MemberId != "" {
		lead.Agent = ag
	}
	return lead, nil
}

func isCanonicalField(k string) bool {
	for _, c := range sources.CanonicalFields {
		if c == k {
			return true
		}
	}
	return false
}

// parseInquiryType reads buy/buyer, sell/seller, rent/renter/rental (and a
// few synonyms), case-insensitive; anything else is unspecified.
func parseInquiryType(s string) leadv1.InquiryType {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "buy", "buyer", "buying", "purchase":
		return leadv1.InquiryType_INQUIRY_TYPE_BUY
	case "sell", "seller", "selling":
		return leadv1.InquiryType_INQUIRY_TYPE_SELL
	case "rent", "renter", "rental", "renting", "lease":
		return leadv1.InquiryType_INQUIRY_TYPE_RENT
	default:
		return leadv1.InquiryType_INQUIRY_TYPE_UNSPECIFIED
	}
}

func isEmptyProperty(p *leadv1.Property) bool {
	return p.UnparsedAddress == "" && p.City == "" && p.StateOrProvince == "" && p.PostalCode == "" &&
		p.ListingId == "" && p.ListPrice == nil && p.Url == ""
}

// maxDollarDigits keeps a price in cents inside int64.
const maxDollarDigits = 15

// parseUSD parses a price in dollars, as the mapping rendered it (a JSON
// number as written, or text), into cents without going through a float.
// It accepts digits with an optional fraction of at most two significant
// decimals ("850000", "850000.5", "850000.50"; trailing zeros beyond two
// decimals are exact and accepted). Anything else (negative, exponent, $,
// thousands separators, more decimals, empty) gives nil: a price is
// optional and never worth rejecting the lead.
func parseUSD(s string) *commonv1.Money {
	s = strings.TrimSpace(s)
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || len(whole) > maxDollarDigits || !allDigits(whole) {
		return nil
	}
	if hasDot {
		if frac == "" || !allDigits(frac) {
			return nil
		}
		if len(frac) > 2 {
			if strings.TrimRight(frac[2:], "0") != "" {
				return nil
			}
			frac = frac[:2]
		}
	}
	frac += strings.Repeat("0", 2-len(frac))
	cents, err := strconv.ParseInt(whole+frac, 10, 64)
	if err != nil || cents < 0 {
		return nil
	}
	return &commonv1.Money{AmountMinor: cents, CurrencyCode: "USD"}
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
