package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const (
	hmacSecret    = "hmac-secret-current"
	hmacOldSecret = "hmac-secret-previous"
	sampleBody    = `{"lead_id":"r-1","contact":{"first_name":"Ada","email":"ada@example.com"}}`
)

// macOf is an independent implementation, so that the tests do not only
// check the signers against themselves.
func macOf(key, msg string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

func header(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

func TestHMACSHA256_Verify(t *testing.T) {
	t.Parallel()
	hexSig := hex.EncodeToString(macOf(hmacSecret, sampleBody))
	b64Sig := base64.StdEncoding.EncodeToString(macOf(hmacSecret, sampleBody))
	tests := []struct {
		name   string
		enc    Encoding
		prefix string
		h      http.Header
		body   string
		want   error
	}{
		{name: "hex", enc: Hex, h: header("X-Signature", hexSig)},
		{name: "hex_uppercase", enc: Hex, h: header("X-Signature", strings.ToUpper(hexSig))},
		{name: "hex_with_prefix", enc: Hex, prefix: "sha256=", h: header("X-Signature", "sha256="+hexSig)},
		{name: "prefix_case_insensitive", enc: Hex, prefix: "sha256=", h: header("X-Signature", "SHA256="+hexSig)},
		{name: "base64", enc: Base64, h: header("X-Signature", b64Sig)},
		{name: "base64_unpadded", enc: Base64, h: header("X-Signature", strings.TrimRight(b64Sig, "="))},
		{name: "previous_secret", enc: Hex, h: header("X-Signature", hex.EncodeToString(macOf(hmacOldSecret, sampleBody)))},
		{name: "missing", enc: Hex, h: header(), want: ErrMissingSignature},
		{name: "missing_prefix", enc: Hex, prefix: "sha256=", h: header("X-Signature", hexSig), want: ErrMalformed},
		{name: "wrong_encoding", enc: Hex, h: header("X-Signature", b64Sig), want: ErrMalformed},
		{name: "truncated", enc: Hex, h: header("X-Signature", hexSig[:40]), want: ErrMalformed},
		{name: "wrong_secret", enc: Hex, h: header("X-Signature", hex.EncodeToString(macOf("other", sampleBody))), want: ErrBadSignature},
		{name: "tampered_body", enc: Hex, h: header("X-Signature", hexSig), body: strings.Replace(sampleBody, "ada@", "eve@", 1), want: ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewHMACSHA256("x-signature", tt.enc, tt.prefix, []string{hmacSecret, hmacOldSecret})
			if err != nil {
				t.Fatal(err)
			}
			body := sampleBody
			if tt.body != "" {
				body = tt.body
			}
			id, err := v.Verify(tt.h, []byte(body))
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) || id != "" {
				t.Fatalf("Verify = %q, %v; want %v", id, err, tt.want)
			}
		})
	}
	if got := SignHMACSHA256(hmacSecret, Base64, "v=", []byte(sampleBody)); got != "v="+b64Sig {
		t.Fatalf("SignHMACSHA256 = %q", got)
	}
}

func TestNewHMACSHA256_refuses(t *testing.T) {
	t.Parallel()
	for name, f := range map[string]func() error{
		"no_header":    func() error { _, err := NewHMACSHA256("", Hex, "", []string{"s"}); return err },
		"bad_encoding": func() error { _, err := NewHMACSHA256("X", "base32", "", []string{"s"}); return err },
		"no_secret":    func() error { _, err := NewHMACSHA256("X", Hex, "", nil); return err },
		"blank_secret": func() error { _, err := NewHMACSHA256("X", Hex, "", []string{"s", " "}); return err },
	} {
		if f() == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func TestFacebook_Verify(t *testing.T) {
	t.Parallel()
	v, err := NewFacebook([]string{"app-secret-new", "app-secret-old"})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"object":"page","entry":[{"id":"1","time":1447342027,"changes":[{"field":"leadgen","value":{"leadgen_id":"444"}}]}]}`
	good := "sha256=" + hex.EncodeToString(macOf("app-secret-old", body))
	if SignFacebook("app-secret-old", []byte(body)) != good {
		t.Fatal("SignFacebook disagrees with the documented scheme")
	}
	for _, tt := range []struct {
		name string
		h    http.Header
		want error
	}{
		{"valid", header(HeaderHubSignature256, good), nil},
		{"missing", header("X-Hub-Signature", "sha1=abc"), ErrMissingSignature},
		{"sha1_prefix", header(HeaderHubSignature256, "sha1="+good[7:]), ErrMalformed},
		{"wrong_secret", header(HeaderHubSignature256, SignFacebook("not-the-app-secret", []byte(body))), ErrBadSignature},
	} {
		if _, err := v.Verify(tt.h, []byte(body)); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestFacebookChallenge(t *testing.T) {
	t.Parallel()
	q := func(mode, challenge, token string) url.Values {
		return url.Values{"hub.mode": {mode}, "hub.challenge": {challenge}, "hub.verify_token": {token}}
	}
	got, err := FacebookChallenge("verify-me", q("subscribe", "1158201444", "verify-me"))
	if err != nil || got != "1158201444" {
		t.Fatalf("FacebookChallenge = %q, %v", got, err)
	}
	for name, tt := range map[string]struct {
		want string
		q    url.Values
	}{
		"wrong_token":     {"verify-me", q("subscribe", "1", "guess")},
		"empty_token":     {"verify-me", q("subscribe", "1", "")},
		"wrong_mode":      {"verify-me", q("unsubscribe", "1", "verify-me")},
		"no_challenge":    {"verify-me", q("subscribe", "", "verify-me")},
		"long_challenge":  {"verify-me", q("subscribe", strings.Repeat("9", MaxChallengeLen+1), "verify-me")},
		"nothing_to_meet": {"", q("subscribe", "1", "")},
	} {
		if got, err := FacebookChallenge(tt.want, tt.q); !errors.Is(err, ErrChallenge) || got != "" {
			t.Errorf("%s: FacebookChallenge = %q, %v; want ErrChallenge", name, got, err)
		}
	}
}

func TestAPIKey_Verify(t *testing.T) {
	t.Parallel()
	v, err := NewAPIKey("", []string{"realtor-key-1", "realtor-key-2"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		h    http.Header
		want error
	}{
		{"current", header("X-API-Key", "realtor-key-1"), nil},
		{"rotating", header("x-api-key", " realtor-key-2 "), nil},
		{"missing", header(), ErrMissingCredentials},
		{"wrong", header("X-API-Key", "realtor-key-3"), ErrBadCredentials},
		{"prefix_of_a_key", header("X-API-Key", "realtor-key"), ErrBadCredentials},
	} {
		if _, err := v.Verify(tt.h, nil); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := NewAPIKey("X-API-Key", nil); err == nil {
		t.Error("no key: want an error")
	}
}

func TestSharedSecret_VerifyRequest(t *testing.T) {
	t.Parallel()
	both, err := NewSharedSecret("X-Zillow-Secret", "token", []string{"zillow-shared"})
	if err != nil {
		t.Fatal(err)
	}
	queryOnly, err := NewSharedSecret("", "token", []string{"zillow-shared"})
	if err != nil {
		t.Fatal(err)
	}
	req := func(rawQuery string, h http.Header) *http.Request {
		return &http.Request{URL: &url.URL{Path: "/webhooks/zillow", RawQuery: rawQuery}, Header: h}
	}
	for _, tt := range []struct {
		name string
		v    *SharedSecret
		r    *http.Request
		want error
	}{
		{"header", both, req("", header("X-Zillow-Secret", "zillow-shared")), nil},
		{"query", both, req("token=zillow-shared", header()), nil},
		{"query_only_source", queryOnly, req("token=zillow-shared&x=1", header()), nil},
		{"missing", both, req("", header()), ErrMissingCredentials},
		{"wrong_header", both, req("", header("X-Zillow-Secret", "nope")), ErrBadCredentials},
		{"wrong_query", queryOnly, req("token=nope", header()), ErrBadCredentials},
		{"header_is_checked_first", both, req("token=zillow-shared", header("X-Zillow-Secret", "nope")), ErrBadCredentials},
	} {
		if _, err := tt.v.VerifyRequest(tt.r, nil); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("%s: VerifyRequest = %v, want %v", tt.name, err, tt.want)
		}
	}
	if _, err := queryOnly.Verify(header(), nil); !errors.Is(err, ErrMissingCredentials) {
		t.Errorf("Verify without the query = %v", err)
	}
	if _, err := NewSharedSecret("", "", []string{"s"}); err == nil {
		t.Error("neither header nor query: want an error")
	}
}

func TestBasic_Verify(t *testing.T) {
	t.Parallel()
	v, err := NewBasic([]string{"vendor:pa:ss", "vendor:old"})
	if err != nil {
		t.Fatal(err)
	}
	basic := func(userpass string) http.Header {
		return header("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(userpass)))
	}
	for _, tt := range []struct {
		name string
		h    http.Header
		want error
	}{
		{"password_with_colon", basic("vendor:pa:ss"), nil},
		{"rotating", basic("vendor:old"), nil},
		{"missing", header(), ErrMissingCredentials},
		{"bearer", header("Authorization", "Bearer vendor:old"), ErrBadCredentials},
		{"wrong_password", basic("vendor:guess"), ErrBadCredentials},
		{"wrong_user", basic("other:old"), ErrBadCredentials},
	} {
		if _, err := v.Verify(tt.h, nil); !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
			t.Errorf("%s: Verify = %v, want %v", tt.name, err, tt.want)
		}
	}
	for _, bad := range [][]string{nil, {"no-colon"}, {":nouser"}} {
		if _, err := NewBasic(bad); err == nil {
			t.Errorf("NewBasic(%q): want an error", bad)
		}
	}
}

func TestEqualSecret(t *testing.T) {
	t.Parallel()
	if !EqualSecret("a", "a") || EqualSecret("a", "ab") || EqualSecret("", "a") {
		t.Fatal("EqualSecret is wrong")
	}
}
