package normalizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// IDXEventLeadCreated is the only event type the IDX website form sends.
const IDXEventLeadCreated = "lead.created"

// MappingError reports a webhook body that cannot be mapped to a lead. It is
// permanent: the body will never map, so the caller publishes
// lead.rejected.<source> with Reason.
type MappingError struct {
	Reason string
}

func (e *MappingError) Error() string {
	return "map lead: " + e.Reason
}

func mappingErrorf(format string, args ...any) *MappingError {
	return &MappingError{Reason: fmt.Sprintf(format, args...)}
}

// idxEnvelope is the Standard Webhooks envelope of the IDX website form.
type idxEnvelope struct {
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

type idxData struct {
	FirstName   flexString   `json:"first_name"`
	LastName    flexString   `json:"last_name"`
	Name        flexString   `json:"name"`
	Email       flexString   `json:"email"`
	Phone       flexString   `json:"phone"`
	Message     flexString   `json:"message"`
	InquiryType flexString   `json:"inquiry_type"`
	Property    *idxProperty `json:"property"`
	Agent       *idxAgent    `json:"agent"`
	UTM         *idxUTM      `json:"utm"`
	PageURL     flexString   `json:"page_url"`
}

type idxProperty struct {
	Address    flexString      `json:"address"`
	City       flexString      `json:"city"`
	State      flexString      `json:"state"`
	PostalCode flexString      `json:"postal_code"`
	MLSNumber  flexString      `json:"mls_number"`
	Price      json.RawMessage `json:"price"`
	URL        flexString      `json:"url"`
}

type idxAgent struct {
	Name  flexString `json:"name"`
	Email flexString `json:"email"`
	ID    flexString `json:"id"`
}

type idxUTM struct {
	Source   flexString `json:"source"`
	Medium   flexString `json:"medium"`
	Campaign flexString `json:"campaign"`
	Term     flexString `json:"term"`
	Content  flexString `json:"content"`
}

// flexString accepts a JSON string, a number (kept as written, for postal
// codes, MLS numbers and ids that forms send as numbers) or null.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = flexString(s)
		return nil
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("want a string or a number, got %.20s", b)
		}
		*f = flexString(n.String())
		return nil
	}
}

func (f flexString) trimmed() string { return strings.TrimSpace(string(f)) }

// MapIDX maps a lead.created webhook from the brokerage's IDX website form
// to one lead. Values are copied as sent: the caller canonicalises the lead
// and fills lead_id, lead_source, delivery_id and received_at. A body that
// cannot be mapped returns a *MappingError.
func MapIDX(body []byte) ([]*leadv1.Lead, error) {
	var env idxEnvelope
	if err := decodeStrict(body, &env); err != nil {
		return nil, mappingErrorf("invalid JSON: %v", err)
	}
	if env.Type != IDXEventLeadCreated {
		if env.Type == "" {
			return nil, mappingErrorf("event type is missing, want %q", IDXEventLeadCreated)
		}
		return nil, mappingErrorf("unsupported event type %q, want %q", env.Type, IDXEventLeadCreated)
	}
	data := bytes.TrimSpace(env.Data)
	if len(data) == 0 || data[0] != '{' {
		return nil, mappingErrorf(`"data" object is missing`)
	}
	var d idxData
	if err := decodeStrict(data, &d); err != nil {
		return nil, mappingErrorf("invalid data: %v", err)
	}

	lead := &leadv1.Lead{
		Contact: &leadv1.Contact{
			FirstName:   d.FirstName.trimmed(),
			LastName:    d.LastName.trimmed(),
			FullName:    d.Name.trimmed(),
			Email:       d.Email.trimmed(),
			MobilePhone: d.Phone.trimmed(),
		},
	}

	inq := &leadv1.Inquiry{
		Type:    idxInquiryType(d.InquiryType.trimmed()),
		Message: strings.TrimSpace(string(d.Message)),
	}
	if p := d.Property; p != nil {
		prop := &leadv1.Property{
			UnparsedAddress: p.Address.trimmed(),
			City:            p.City.trimmed(),
			StateOrProvince: p.State.trimmed(),
			PostalCode:      p.PostalCode.trimmed(),
			ListingId:       p.MLSNumber.trimmed(),
			ListPrice:       parseUSD(p.Price),
			Url:             p.URL.trimmed(),
		}
		if !isEmptyProperty(prop) {
			inq.Property = prop
		}
	}
	if inq.Type != leadv1.InquiryType_INQUIRY_TYPE_UNSPECIFIED || inq.Message != "" || inq.Property != nil {
		lead.Inquiry = inq
	}

	camp := &leadv1.Campaign{LandingPageUrl: d.PageURL.trimmed()}
	if u := d.UTM; u != nil {
		camp.UtmSource = u.Source.trimmed()
		camp.UtmMedium = u.Medium.trimmed()
		camp.UtmCampaign = u.Campaign.trimmed()
		camp.UtmTerm = u.Term.trimmed()
		camp.UtmContent = u.Content.trimmed()
	}
	if camp.LandingPageUrl != "" || camp.UtmSource != "" ||
		camp.UtmMedium != "" || camp.UtmCampaign != "" || camp.UtmTerm != "" || camp.UtmContent != "" {
		lead.Campaign = camp
	}

	if a := d.Agent; a != nil {
		ag := &leadv1.Agent{Name: a.Name.trimmed(), Email: a.Email.trimmed(), MemberId: a.ID.trimmed()}
		if ag.Name != "" || ag.Email != "" || ag.MemberId != "" {
			lead.Agent = ag
		}
	}
	return []*leadv1.Lead{lead}, nil
}

// decodeStrict decodes exactly one JSON value from b into v, with numbers
// kept as json.Number, and refuses trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func idxInquiryType(s string) leadv1.InquiryType {
	switch strings.ToLower(s) {
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

// parseUSD parses a price in dollars, sent as a JSON number or a numeric
// string, into cents without going through a float. It accepts digits with
// an optional fraction of at most two significant decimals ("850000",
// "850000.5", "850000.50"; trailing zeros beyond two decimals are exact and
// accepted). Anything else (negative, exponent, more decimals, empty, null)
// gives nil: a price is optional and never worth rejecting the lead.
func parseUSD(raw json.RawMessage) *commonv1.Money {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	var s string
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil
		}
		s = strings.TrimSpace(s)
	} else {
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil
		}
		s = n.String()
	}
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
