package webhooksig

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // Dotloop signs its webhooks with HMAC-SHA1; SHA-1's collisions do not break an HMAC.
	"encoding/hex"
	"encoding/json"

	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/jsonscalar"
)

// Dotloop's webhook headers.
const (
	HeaderDotloopSignature = "X-DOTLOOP-SIGNATURE"
	HeaderDotloopTimestamp = "X-DOTLOOP-TIMESTAMP"
)

// DotloopSigned is what Dotloop's HMAC covers. Public client code disagrees
// (https://dotloop.github.io/public-api/ §14.3 as quoted by it): the
// timestamp, a dot and the raw body, or the raw body alone. The signed
// timestamp is checked against the tolerance either way.
type DotloopSigned string

// What the signature covers.
const (
	DotloopTimestampBody DotloopSigned = "timestamp_body" // "<X-DOTLOOP-TIMESTAMP>.<raw body>"
	DotloopBody          DotloopSigned = "body"           // the raw body
)

// DotloopSignature verifies Dotloop webhooks: X-DOTLOOP-SIGNATURE is the hex
// HMAC-SHA1, keyed by the subscription's signing key, of what DotloopSigned
// says; X-DOTLOOP-TIMESTAMP (Unix milliseconds, or seconds) must be within
// the tolerance. Several keys are accepted so that a signing key can rotate.
type DotloopSignature struct {
	keys      [][]byte
	signed    DotloopSigned
	tolerance time.Duration
	now       func() time.Time
}

// NewDotloopSignature returns a verifier accepting a signature by any of keys.
func NewDotloopSignature(keys []string, signed DotloopSigned, tolerance time.Duration) (*DotloopSignature, error) {
	if signed == "" {
		signed = DotloopTimestampBody
	}
	if signed != DotloopTimestampBody && signed != DotloopBody {
		return nil, fmt.Errorf("dotloop: signed content %q is not %s or %s", signed, DotloopTimestampBody, DotloopBody)
	}
	k, err := secretBytes("dotloop: signing key", keys)
	if err != nil {
		return nil, err
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	return &DotloopSignature{keys: k, signed: signed, tolerance: tolerance, now: time.Now}, nil
}

// WithClock returns a copy of v that reads the time from now, for tests.
func (v *DotloopSignature) WithClock(now func() time.Time) *DotloopSignature {
	c := *v
	c.now = now
	return &c
}

// SignDotloop returns X-DOTLOOP-SIGNATURE for body sent at timestamp (Unix
// milliseconds) under key. Tests and the demo sign with it.
func SignDotloop(key string, timestamp int64, body []byte, signed DotloopSigned) string {
	mac := hmac.New(sha1.New, []byte(key))
	_, _ = mac.Write(dotloopMessage(strconv.FormatInt(timestamp, 10), body, signed))
	return hex.EncodeToString(mac.Sum(nil))
}

func dotloopMessage(ts string, body []byte, signed DotloopSigned) []byte {
	if signed == DotloopBody {
		return body
	}
	return append([]byte(ts+"."), body...)
}

// Verify checks the timestamp and the signature, and returns the payload's
// eventId as the delivery id ("" when it has none usable).
func (v *DotloopSignature) Verify(h http.Header, body []byte) (string, error) {
	sig := strings.TrimSpace(h.Get(HeaderDotloopSignature))
	ts := strings.TrimSpace(h.Get(HeaderDotloopTimestamp))
	if sig == "" || ts == "" {
		return "", fmt.Errorf("%w: %s and %s are required", ErrMissingSignature, HeaderDotloopSignature, HeaderDotloopTimestamp)
	}
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || n <= 0 {
		return "", fmt.Errorf("%w: %s is not a Unix time", ErrMalformed, HeaderDotloopTimestamp)
	}
	at := time.Unix(n, 0)
	if n > 1e11 { // milliseconds
		at = time.UnixMilli(n)
	}
	if d := v.now().Sub(at); d > v.tolerance || d < -v.tolerance {
		return "", fmt.Errorf("%w: %s is %s from now, tolerance %s", ErrStale, HeaderDotloopTimestamp, d.Round(time.Second), v.tolerance)
	}
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha1.Size {
		return "", fmt.Errorf("%w: %s is not a hex HMAC-SHA1", ErrMalformed, HeaderDotloopSignature)
	}
	msg := dotloopMessage(ts, body, v.signed)
	ok := false
	for _, k := range v.keys { // every key, so the time taken does not say which matched
		mac := hmac.New(sha1.New, k)
		_, _ = mac.Write(msg)
		if hmac.Equal(mac.Sum(nil), got) {
			ok = true
		}
	}
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrBadSignature, HeaderDotloopSignature)
	}
	return dotloopEventID(body), nil
}

func dotloopEventID(body []byte) string {
	var p struct {
		EventID json.RawMessage `json:"eventId"`
	}
	if json.Unmarshal(body, &p) != nil {
		return ""
	}
	if id := jsonscalar.String(p.EventID); ValidDeliveryID(id) {
		return id
	}
	return ""
}
