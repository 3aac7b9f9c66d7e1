// Package normalizer maps lead webhooks from each source to the canonical
// brokerflow.lead.v1.Lead and canonicalises it: lower-cased emails, E.164
// phones and consistent names.
package normalizer

import (
	"crypto/sha256"
	"encoding/hex"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"

	"github.com/brokerflow/brokerflow/pkg/sources"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
)

// maxEmailLen is the longest address accepted (RFC 5321 path limit).
const maxEmailLen = 254

// maxPhoneLen bounds the input handed to the phone parser; no real phone
// number, even with formatting and an extension, comes close.
const maxPhoneLen = 64

// NormalizeEmail trims and lower-cases raw and reports whether it is a bare,
// valid address (no display name, no angle brackets, a dotted domain). It
// returns "", false when raw is not usable.
func NormalizeEmail(raw string) (string, bool) {
	s := strings.ToLower(strings.TrimSpace(raw))
	if s == "" || len(s) > maxEmailLen || !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsSpace) {
		return "", false
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Name != "" || addr.Address != s {
		return "", false
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return "", false
	}
	domain := s[at+1:]
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") ||
		strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return "", false
	}
	// ToLower is not idempotent for a few runes; the contract is a
	// lower-case result, so refuse anything that would not stay that way.
	if strings.ToLower(s) != s {
		return "", false
	}
	return s, true
}

// NormalizePhone parses raw with defaultRegion (ISO 3166-1 alpha-2, such as
// "US") used when raw has no country code, and returns it in E.164. It
// returns "", false when raw is not a valid number.
func NormalizePhone(raw, defaultRegion string) (string, bool) {
	s := strings.TrimSpace(raw)
	if s == "" || len(s) > maxPhoneLen || !utf8.ValidString(s) {
		return "", false
	}
	num, err := phonenumbers.Parse(s, strings.ToUpper(defaultRegion))
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return "", false
	}
	e164 := phonenumbers.Format(num, phonenumbers.E164)
	if !strings.HasPrefix(e164, "+") {
		return "", false
	}
	return e164, true
}

// SplitName splits a full name on its last space: "Mary Ann Smith" gives
// "Mary Ann" and "Smith". A single word is a first name only.
func SplitName(full string) (first, last string) {
	f := strings.Fields(full)
	switch len(f) {
	case 0:
		return "", ""
	case 1:
		return f[0], ""
	default:
		return strings.Join(f[:len(f)-1], " "), f[len(f)-1]
	}
}

// JoinName joins first and last with one space, trimming and collapsing
// whitespace.
func JoinName(first, last string) string {
	return collapse(first + " " + last)
}

// collapse trims s and collapses each run of whitespace to one space.
func collapse(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// LeadID returns the deterministic lead id of the item at index in the
// delivery deliveryID from source: "ld_" and the first 24 hex digits of
// SHA-256 over source, 0x00, deliveryID, 0x00 and the decimal index.
//
// It is derived rather than random because delivery is at-least-once: the
// gateway drops provider retries only within its dedup window, and a retry
// that arrives after the window must still map to the same lead_id so that
// crm-sync and the records downstream treat it as the lead they already
// have (docs/architecture.md, "Guarantees"). The NUL separators keep
// ("ab", "c") and ("a", "bc") apart; the index separates leads batched in one
// delivery.
func LeadID(source, deliveryID string, index int) string {
	h := sha256.New()
	h.Write([]byte(source))
	h.Write([]byte{0})
	h.Write([]byte(deliveryID))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(index)))
	return "ld_" + hex.EncodeToString(h.Sum(nil))[:24]
}

// Canonicalize normalizes l's contact in place:
//   - names are trimmed and collapsed; full_name is filled from first and
//     last names, or first and last from full_name, whichever is missing;
//   - the email is lower-cased, and cleared when it is not a valid address;
//   - the phone (mobile_phone, or raw_phone when the source only gave that)
//     is normalized to E.164 into mobile_phone; when it is not valid the
//     original goes into raw_phone and mobile_phone is cleared;
//   - home_phone is normalized, or moved to raw_phone when invalid and
//     raw_phone is free;
//   - a valid agent email is lower-cased and an invalid one cleared.
//
// It returns a reason for a person to read when the lead has neither a
// usable email nor a usable phone, and "" when the lead is usable. The
// reason names what was wrong but never the values themselves.
func Canonicalize(l *leadv1.Lead, defaultRegion string) (reason string) {
	if l == nil {
		return "no lead"
	}
	if l.Contact == nil {
		l.Contact = &leadv1.Contact{}
	}
	c := l.Contact

	c.FirstName = collapse(c.FirstName)
	c.LastName = collapse(c.LastName)
	c.FullName = collapse(c.FullName)
	switch {
	case c.FullName == "" && (c.FirstName != "" || c.LastName != ""):
		c.FullName = JoinName(c.FirstName, c.LastName)
	case c.FullName != "" && c.FirstName == "" && c.LastName == "":
		c.FirstName, c.LastName = SplitName(c.FullName)
	}

	var emailProblem string
	rawEmail := strings.TrimSpace(c.Email)
	if e, ok := NormalizeEmail(rawEmail); ok {
		c.Email = e
	} else {
		c.Email = ""
		if rawEmail == "" {
			emailProblem = "no email"
		} else {
			emailProblem = "email is not a valid address"
		}
	}

	var phoneProblem string
	rawPhone := strings.TrimSpace(c.MobilePhone)
	fromRaw := false
	if rawPhone == "" {
		rawPhone, fromRaw = strings.TrimSpace(c.RawPhone), true
	}
	if p, ok := NormalizePhone(rawPhone, defaultRegion); ok {
		c.MobilePhone = p
		if fromRaw {
			c.RawPhone = ""
		}
	} else {
		c.MobilePhone = ""
		if rawPhone != "" {
			c.RawPhone = rawPhone
		}
	}

	home := strings.TrimSpace(c.HomePhone)
	if p, ok := NormalizePhone(home, defaultRegion); ok {
		c.HomePhone = p
	} else {
		c.HomePhone = ""
		if home != "" && c.RawPhone == "" {
			c.RawPhone = home
		}
	}

	if c.MobilePhone == "" && c.HomePhone == "" {
		switch {
		case rawPhone == "" && home == "":
			phoneProblem = "no phone"
		default:
			phoneProblem = "phone is not a valid number for region " + regionLabel(defaultRegion)
		}
	}

	if l.Agent != nil && l.Agent.Email != "" {
		l.Agent.Email, _ = NormalizeEmail(l.Agent.Email)
	}

	if emailProblem != "" && phoneProblem != "" {
		return "no usable email or phone: " + emailProblem + "; " + phoneProblem
	}
	return ""
}

func regionLabel(region string) string {
	if region == "" {
		return "(none)"
	}
	return strings.ToUpper(region)
}

// CRMSource is the lead source name the CRM records for a lead: the
// source's fixed crm_source when the sources file sets one, else the one
// its mapping read from the payload (cleaned by sources.CleanCRMSource),
// else the source's name.
func CRMSource(fixed, mapped, name string) string {
	if fixed != "" {
		return fixed
	}
	if m := sources.CleanCRMSource(mapped); m != "" {
		return m
	}
	return name
}
