package gateway

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/brokerflow/brokerflow/pkg/sources"
	intakev1 "github.com/brokerflow/brokerflow/proto/brokerflow/intake/v1"
)

// The rules of a SubmitLeadRequest (docs/intake-grpc.md). They are checked
// here, in Go, because the schemas on the buf registry (protovalidate)
// cannot be fetched in this build.
var (
	idempotencyKeyRe = regexp.MustCompile(`^[A-Za-z0-9._:-]+$`)
	// priceRe is dollars, optionally with cents: "850000" or "850000.50".
	priceRe = regexp.MustCompile(`^[0-9]{1,12}(\.[0-9]{1,2})?$`)
)

const (
	maxIdempotencyKey = 128
	maxSystem         = 64
	maxName           = 200
	maxEmail          = 254 // RFC 5321's limit on a forward path
	maxPhone          = 32
	maxMessage        = 5000
	maxShort          = 100
	maxAddress        = 300
	maxURL            = 2048
	maxCampaign       = 200
)

// fieldError is one invalid field, named by its proto path, with the reason
// and never the value (values are personal data and end up in logs).
type fieldError struct{ field, reason string }

// invalidRequest lists every invalid field of a request.
type invalidRequest []fieldError

func (e invalidRequest) Error() string {
	parts := make([]string, len(e))
	for i, f := range e {
		parts[i] = f.field + ": " + f.reason
	}
	return "invalid SubmitLeadRequest: " + strings.Join(parts, "; ")
}

// submitLeadRequest gives a SubmitLeadRequest the Validate method the
// validator interceptor looks for.
type submitLeadRequest struct{ *intakev1.SubmitLeadRequest }

// Validate reports every invalid field at once, so a caller fixes them in
// one round.
func (r submitLeadRequest) Validate() error {
	var errs invalidRequest
	bad := func(field, reason string) { errs = append(errs, fieldError{field, reason}) }
	tooLong := func(field, value string, limit int) {
		if utf8.RuneCountInString(value) > limit {
			bad(field, fmt.Sprintf("longer than %d characters", limit))
		}
	}

	switch key := r.GetIdempotencyKey(); {
	case key == "":
		bad("idempotency_key", "required")
	case len(key) > maxIdempotencyKey:
		bad("idempotency_key", fmt.Sprintf("longer than %d characters", maxIdempotencyKey))
	case !idempotencyKeyRe.MatchString(key):
		bad("idempotency_key", "may hold only letters, digits and . _ : -")
	}
	switch sys := r.GetSystem(); {
	case sys == "":
		bad("system", "required")
	case len(sys) > maxSystem:
		bad("system", fmt.Sprintf("longer than %d characters", maxSystem))
	case !sources.ValidName(sys): // like a source name
		bad("system", "must match "+sources.NamePattern)
	}

	c := r.GetContact()
	if strings.TrimSpace(c.GetEmail()) == "" && strings.TrimSpace(c.GetPhone()) == "" {
		bad("contact", "contact.email or contact.phone is required")
	}
	tooLong("contact.first_name", c.GetFirstName(), maxName)
	tooLong("contact.last_name", c.GetLastName(), maxName)
	tooLong("contact.full_name", c.GetFullName(), maxName)
	tooLong("contact.email", c.GetEmail(), maxEmail)
	tooLong("contact.phone", c.GetPhone(), maxPhone)

	tooLong("message", r.GetMessage(), maxMessage)
	switch r.GetInquiryType() {
	case "", "buy", "sell", "rent":
	default:
		bad("inquiry_type", "must be buy, sell or rent, or empty")
	}

	p := r.GetProperty()
	tooLong("property.address", p.GetAddress(), maxAddress)
	tooLong("property.city", p.GetCity(), maxShort)
	tooLong("property.state", p.GetState(), maxShort)
	tooLong("property.postal_code", p.GetPostalCode(), maxShort)
	tooLong("property.mls_number", p.GetMlsNumber(), maxShort)
	if price := p.GetPrice(); price != "" && !priceRe.MatchString(price) {
		bad("property.price", `must be a decimal number of dollars, like "850000" or "850000.50"`)
	}
	tooLong("property.url", p.GetUrl(), maxURL)

	a := r.GetAgent()
	tooLong("agent.name", a.GetName(), maxName)
	tooLong("agent.email", a.GetEmail(), maxEmail)
	tooLong("agent.id", a.GetId(), maxShort)

	cp := r.GetCampaign()
	tooLong("campaign.utm_source", cp.GetUtmSource(), maxCampaign)
	tooLong("campaign.utm_medium", cp.GetUtmMedium(), maxCampaign)
	tooLong("campaign.utm_campaign", cp.GetUtmCampaign(), maxCampaign)
	tooLong("campaign.utm_term", cp.GetUtmTerm(), maxCampaign)
	tooLong("campaign.utm_content", cp.GetUtmContent(), maxCampaign)
	tooLong("campaign.page_url", cp.GetPageUrl(), maxURL)

	if len(errs) > 0 {
		return errs
	}
	return nil
}
