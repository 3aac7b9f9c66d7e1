// Package webhooksig verifies what outside senders prove about a request:
// signed webhooks (Standard Webhooks, HMAC-SHA256 of the body, Facebook's
// X-Hub-Signature-256, Follow Up Boss's FUB-Signature), API keys, shared
// secrets and HTTP Basic. Every scheme compares in constant time over the raw
// bytes, checks a signed timestamp against a tolerance where the scheme has
// one, and accepts several secrets at once so that secrets can rotate. Every
// failure wraps one of the sentinel errors below with the reason.
package webhooksig

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Errors a verifier returns. The gateway answers 401 with the message, and
// 403 for ErrChallenge.
var (
	ErrMissingSignature = errors.New("signature headers missing")
	ErrBadSignature     = errors.New("no signature matches")
	ErrStale            = errors.New("timestamp outside the allowed tolerance")
	ErrMalformed        = errors.New("signature headers malformed")
	// ErrMissingCredentials and ErrBadCredentials are the schemes without a
	// signature: an API key, a shared secret, HTTP Basic.
	ErrMissingCredentials = errors.New("credentials missing")
	ErrBadCredentials     = errors.New("credentials do not match")
	// ErrChallenge is a failed verification handshake (Facebook's hub.challenge).
	ErrChallenge = errors.New("verification handshake refused")
)

// Standard Webhooks header names.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is the reference library's tolerance, in both directions.
const DefaultTolerance = 5 * time.Minute

// StandardWebhooks verifies the Standard Webhooks scheme
// (https://www.standardwebhooks.com): HMAC-SHA256 over "{id}.{timestamp}.{body}",
// signatures "v1,<base64>" space-separated in webhook-signature.
type StandardWebhooks struct {
	keys      []*standardwebhooks.Webhook
	tolerance time.Duration
	now       func() time.Time
}

// NewStandardWebhooks returns a verifier accepting any of secrets
// ("whsec_<base64>"; the prefix is optional).
func NewStandardWebhooks(secrets []string, tolerance time.Duration) (*StandardWebhooks, error) {
	if len(secrets) == 0 {
		return nil, errors.New("standard webhooks: at least one secret is required")
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	v := &StandardWebhooks{tolerance: tolerance, now: time.Now}
	for i, s := range secrets {
		s = strings.TrimSpace(s)
		wh, err := standardwebhooks.NewWebhook(s)
		if err != nil {
			return nil, fmt.Errorf("standard webhooks: secret %d is not whsec_<base64>: %w", i+1, err)
		}
		if len(strings.TrimPrefix(s, "whsec_")) == 0 {
			return nil, fmt.Errorf("standard webhooks: secret %d is empty", i+1)
		}
		v.keys = append(v.keys, wh)
	}
	return v, nil
}

// WithClock returns a copy of v that reads the time from now, for tests.
func (v *StandardWebhooks) WithClock(now func() time.Time) *StandardWebhooks {
	c := *v
	c.now = now
	return &c
}

// Verify checks the request headers and raw body, and returns the delivery
// id (webhook-id), stable across the provider's retries.
func (v *StandardWebhooks) Verify(h http.Header, body []byte) (deliveryID string, err error) {
	id, ts, sig := h.Get(HeaderID), h.Get(HeaderTimestamp), h.Get(HeaderSignature)
	if id == "" || ts == "" || sig == "" {
		return "", fmt.Errorf("%w: webhook-id, webhook-timestamp and webhook-signature are required", ErrMissingSignature)
	}
	if strings.Contains(id, ".") || len(id) > 256 {
		return "", fmt.Errorf("%w: webhook-id must be at most 256 characters without '.'", ErrMalformed)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return "", fmt.Errorf("%w: webhook-timestamp is not integer seconds", ErrMalformed)
	}
	if d := v.now().Sub(time.Unix(sec, 0)); d > v.tolerance || d < -v.tolerance {
		return "", fmt.Errorf("%w: webhook-timestamp is %s from now, tolerance %s", ErrStale, d.Round(time.Second), v.tolerance)
	}
	for _, k := range v.keys {
		// The library compares with hmac.Equal; the timestamp is checked above
		// against our own tolerance and clock.
		if k.VerifyIgnoringTimestamp(body, h) == nil {
			return id, nil
		}
	}
	return "", ErrBadSignature
}

// Sign returns the webhook-signature value for a message, signed with secret.
// Tests, the demo and the benchmark send with it.
func Sign(secret, id string, ts time.Time, body []byte) (string, error) {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return "", err
	}
	return wh.Sign(id, ts, body)
}

// SignedHeaders returns the three Standard Webhooks headers for body.
func SignedHeaders(secret, id string, ts time.Time, body []byte) (http.Header, error) {
	sig, err := Sign(secret, id, ts, body)
	if err != nil {
		return nil, err
	}
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, sig)
	return h, nil
}
