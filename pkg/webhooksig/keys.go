package webhooksig

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// EqualSecret reports whether got is want, in time that depends on
// neither: it compares their SHA-256 digests in constant time, so that not
// even want's length leaks.
func EqualSecret(got, want string) bool {
	g, w := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(g[:], w[:]) == 1
}

// anySecret reports whether got is one of secrets, trying every one.
func anySecret(secrets []string, got string) bool {
	ok := false
	for _, s := range secrets {
		if EqualSecret(got, s) {
			ok = true
		}
	}
	return ok
}

func trimmedSecrets(scheme string, secrets []string) ([]string, error) {
	var out []string
	for i, s := range secrets {
		if s = strings.TrimSpace(s); s == "" {
			return nil, fmt.Errorf("%s: secret %d is empty", scheme, i+1)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: at least one secret is required", scheme)
	}
	return out, nil
}

func secretBytes(scheme string, secrets []string) ([][]byte, error) {
	s, err := trimmedSecrets(scheme, secrets)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(s))
	for i := range s {
		out[i] = []byte(s[i])
	}
	return out, nil
}

// HeaderAPIKey is Realtor.com's API key header.
const HeaderAPIKey = "X-API-Key"

// APIKey verifies a static key in a header, such as Realtor.com's
// X-API-Key. Several keys are valid at once, so that one can rotate.
type APIKey struct {
	header string
	keys   []string
}

// NewAPIKey returns a verifier of header accepting any of keys; header is
// X-API-Key when empty.
func NewAPIKey(header string, keys []string) (*APIKey, error) {
	if strings.TrimSpace(header) == "" {
		header = HeaderAPIKey
	}
	k, err := trimmedSecrets("api_key", keys)
	if err != nil {
		return nil, err
	}
	return &APIKey{header: strings.TrimSpace(header), keys: k}, nil
}

// Verify checks the header's key against every key in constant time.
func (v *APIKey) Verify(h http.Header, _ []byte) (string, error) {
	got := strings.TrimSpace(h.Get(v.header))
	if got == "" {
		return "", fmt.Errorf("%w: %s is required", ErrMissingCredentials, v.header)
	}
	if !anySecret(v.keys, got) {
		return "", fmt.Errorf("%w: %s is not a valid key", ErrBadCredentials, v.header)
	}
	return "", nil
}

// SharedSecret verifies a secret sent in a header, or in a query parameter
// for a vendor that can only configure a URL (Zillow's lead posts carry no
// signature).
type SharedSecret struct {
	header, query string
	secrets       []string
}

// NewSharedSecret returns a verifier reading header, or else the query
// parameter query; at least one of them must be set.
func NewSharedSecret(header, query string, secrets []string) (*SharedSecret, error) {
	header, query = strings.TrimSpace(header), strings.TrimSpace(query)
	if header == "" && query == "" {
		return nil, errors.New("shared_secret: a header or a query parameter is required")
	}
	s, err := trimmedSecrets("shared_secret", secrets)
	if err != nil {
		return nil, err
	}
	return &SharedSecret{header: header, query: query, secrets: s}, nil
}

// Verify checks the header only; VerifyRequest also reads the query.
func (v *SharedSecret) Verify(h http.Header, _ []byte) (string, error) {
	return v.check(h, "")
}

// VerifyRequest checks the header when it is sent, and otherwise the query
// parameter, against every secret in constant time.
func (v *SharedSecret) VerifyRequest(r *http.Request, _ []byte) (string, error) {
	q := ""
	if v.query != "" && r.URL != nil {
		q = r.URL.Query().Get(v.query)
	}
	return v.check(r.Header, q)
}

func (v *SharedSecret) check(h http.Header, fromQuery string) (string, error) {
	got, where := "", ""
	if v.header != "" {
		got, where = strings.TrimSpace(h.Get(v.header)), v.header
	}
	if got == "" && v.query != "" {
		got, where = strings.TrimSpace(fromQuery), "query parameter "+v.query
	}
	if got == "" {
		return "", fmt.Errorf("%w: %s is required", ErrMissingCredentials, v.where())
	}
	if !anySecret(v.secrets, got) {
		return "", fmt.Errorf("%w: %s does not match", ErrBadCredentials, where)
	}
	return "", nil
}

func (v *SharedSecret) where() string {
	switch {
	case v.header != "" && v.query != "":
		return "header " + v.header + " or query parameter " + v.query
	case v.header != "":
		return "header " + v.header
	}
	return "query parameter " + v.query
}

// Basic verifies HTTP Basic authentication; each secret is "user:password".
type Basic struct {
	secrets []string
}

// NewBasic returns a verifier accepting any of secrets ("user:password").
func NewBasic(secrets []string) (*Basic, error) {
	s, err := trimmedSecrets("basic", secrets)
	if err != nil {
		return nil, err
	}
	for i, c := range s {
		if user, _, ok := strings.Cut(c, ":"); !ok || user == "" {
			return nil, fmt.Errorf("basic: secret %d is not user:password", i+1)
		}
	}
	return &Basic{secrets: s}, nil
}

// Verify checks Authorization: Basic against every user:password in
// constant time.
func (v *Basic) Verify(h http.Header, _ []byte) (string, error) {
	if h.Get("Authorization") == "" {
		return "", fmt.Errorf("%w: Authorization: Basic is required", ErrMissingCredentials)
	}
	user, pass, ok := (&http.Request{Header: h}).BasicAuth()
	if !ok {
		return "", fmt.Errorf("%w: Authorization is not Basic base64(user:password)", ErrBadCredentials)
	}
	if !anySecret(v.secrets, user+":"+pass) {
		return "", fmt.Errorf("%w: the user or password does not match", ErrBadCredentials)
	}
	return "", nil
}
