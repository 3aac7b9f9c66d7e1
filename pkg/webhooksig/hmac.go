package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Encoding is how a MAC is written in its header.
type Encoding string

// Encodings of a MAC.
const (
	Hex    Encoding = "hex"    // lower or upper case
	Base64 Encoding = "base64" // the standard alphabet, with or without padding
)

func (e Encoding) decode(s string) ([]byte, error) {
	switch e {
	case Hex:
		return hex.DecodeString(s)
	case Base64:
		if b, err := base64.StdEncoding.DecodeString(s); err == nil {
			return b, nil
		}
		return base64.RawStdEncoding.DecodeString(s)
	}
	return nil, fmt.Errorf("unknown encoding %q", string(e))
}

func (e Encoding) encode(b []byte) string {
	if e == Base64 {
		return base64.StdEncoding.EncodeToString(b)
	}
	return hex.EncodeToString(b)
}

// HMACSHA256 verifies an HMAC-SHA256 of the raw body, keyed by a shared
// secret, carried in one header, hex or base64, after an optional prefix
// such as "sha256=". The scheme carries no timestamp and no delivery id.
type HMACSHA256 struct {
	header string
	enc    Encoding
	prefix string
	keys   [][]byte
}

// NewHMACSHA256 returns a verifier of header accepting a MAC by any of
// secrets. enc is Hex when empty.
func NewHMACSHA256(header string, enc Encoding, prefix string, secrets []string) (*HMACSHA256, error) {
	if strings.TrimSpace(header) == "" {
		return nil, errors.New("hmac_sha256: a header is required")
	}
	if enc == "" {
		enc = Hex
	}
	if enc != Hex && enc != Base64 {
		return nil, fmt.Errorf("hmac_sha256: encoding %q is not hex or base64", string(enc))
	}
	keys, err := secretBytes("hmac_sha256", secrets)
	if err != nil {
		return nil, err
	}
	return &HMACSHA256{header: strings.TrimSpace(header), enc: enc, prefix: prefix, keys: keys}, nil
}

// SignHMACSHA256 returns the header value for body under secret: prefix
// followed by the encoded MAC. Tests and the benchmark sign with it.
func SignHMACSHA256(secret string, enc Encoding, prefix string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	_, _ = mac.Write(body)
	return prefix + enc.encode(mac.Sum(nil))
}

// Verify checks the MAC against every secret in constant time. It returns
// no delivery id: the scheme has none.
func (v *HMACSHA256) Verify(h http.Header, body []byte) (string, error) {
	raw := strings.TrimSpace(h.Get(v.header))
	if raw == "" {
		return "", fmt.Errorf("%w: %s is required", ErrMissingSignature, v.header)
	}
	sig, ok := cutPrefixFold(raw, v.prefix)
	if !ok {
		return "", fmt.Errorf("%w: %s must start with %q", ErrMalformed, v.header, v.prefix)
	}
	got, err := v.enc.decode(sig)
	if err != nil || len(got) != sha256.Size {
		return "", fmt.Errorf("%w: %s is not a %s HMAC-SHA256", ErrMalformed, v.header, v.enc)
	}
	if !anyMAC(v.keys, body, got) {
		return "", fmt.Errorf("%w: %s", ErrBadSignature, v.header)
	}
	return "", nil
}

// anyMAC reports whether got is the HMAC-SHA256 of msg under one of keys.
// Every key is tried, so that the time taken does not say which matched.
func anyMAC(keys [][]byte, msg, got []byte) bool {
	ok := false
	for _, k := range keys {
		mac := hmac.New(sha256.New, k)
		_, _ = mac.Write(msg)
		if hmac.Equal(mac.Sum(nil), got) {
			ok = true
		}
	}
	return ok
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// Facebook (Meta) webhook names.
const (
	HeaderHubSignature256 = "X-Hub-Signature-256"
	hubSignaturePrefix    = "sha256="
)

// Facebook verifies Meta's webhooks: X-Hub-Signature-256 is
// "sha256=" + hex(HMAC-SHA256(app secret, raw body)). Several app secrets
// are accepted at once, so that one can rotate.
type Facebook struct{ *HMACSHA256 }

// NewFacebook returns a verifier accepting a signature by any of appSecrets.
func NewFacebook(appSecrets []string) (*Facebook, error) {
	v, err := NewHMACSHA256(HeaderHubSignature256, Hex, hubSignaturePrefix, appSecrets)
	if err != nil {
		return nil, fmt.Errorf("facebook: %w", err)
	}
	return &Facebook{v}, nil
}

// SignFacebook returns the X-Hub-Signature-256 value of body under appSecret.
func SignFacebook(appSecret string, body []byte) string {
	return SignHMACSHA256(appSecret, Hex, hubSignaturePrefix, body)
}

// MaxChallengeLen bounds the hub.challenge echoed back.
const MaxChallengeLen = 256

// FacebookChallenge answers Meta's verification handshake,
// GET ?hub.mode=subscribe&hub.challenge=X&hub.verify_token=T: it returns X
// when the mode is subscribe and T is verifyToken (compared in constant
// time), and ErrChallenge with the reason otherwise.
func FacebookChallenge(verifyToken string, q url.Values) (string, error) {
	switch {
	case verifyToken == "":
		return "", fmt.Errorf("%w: no verify token is configured", ErrChallenge)
	case q.Get("hub.mode") != "subscribe":
		return "", fmt.Errorf("%w: hub.mode must be subscribe", ErrChallenge)
	case q.Get("hub.challenge") == "" || len(q.Get("hub.challenge")) > MaxChallengeLen:
		return "", fmt.Errorf("%w: hub.challenge must be 1 to %d characters", ErrChallenge, MaxChallengeLen)
	case !EqualSecret(q.Get("hub.verify_token"), verifyToken):
		return "", fmt.Errorf("%w: hub.verify_token does not match", ErrChallenge)
	}
	return q.Get("hub.challenge"), nil
}
