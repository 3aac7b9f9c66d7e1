package webhooksig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
)

const (
	fubKey    = "fub-system-key-current"
	fubOldKey = "fub-system-key-previous"
	fubBody   = `{"eventId":"9c7f3c1e-5b1a-4a47-9d0e-3b3a3f0e2a11","eventCreated":"2026-03-02T15:04:05+00:00","event":"peopleStageUpdated","resourceIds":[40942],"uri":"https://api.followupboss.com/v1/people?id=40942"}`
)

// fubSign is an independent implementation of the documented scheme, so the
// test does not only check SignFUB against itself.
func fubSign(key, body string) string {
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(base64.StdEncoding.EncodeToString([]byte(body))))
	return hex.EncodeToString(mac.Sum(nil))
}

func TestFUBSignature_matchesTheDocumentedScheme(t *testing.T) {
	t.Parallel()
	if got, want := SignFUB(fubKey, []byte(fubBody)), fubSign(fubKey, fubBody); got != want {
		t.Fatalf("SignFUB = %s, want %s", got, want)
	}
}

func TestFUBSignature_Verify(t *testing.T) {
	t.Parallel()
	v, err := NewFUBSignature([]string{fubKey, fubOldKey})
	if err != nil {
		t.Fatal(err)
	}
	rawMAC := func() string {
		mac := hmac.New(sha256.New, []byte(fubKey))
		mac.Write([]byte(fubBody))
		return hex.EncodeToString(mac.Sum(nil))
	}()
	for _, tt := range []struct {
		name, sig, body, id string
		want                error
	}{
		{"current_key", fubSign(fubKey, fubBody), fubBody, "9c7f3c1e-5b1a-4a47-9d0e-3b3a3f0e2a11", nil},
		{"previous_key", fubSign(fubOldKey, fubBody), fubBody, "9c7f3c1e-5b1a-4a47-9d0e-3b3a3f0e2a11", nil},
		{"uppercase_hex", strings.ToUpper(fubSign(fubKey, `{"eventId":12345}`)), `{"eventId":12345}`, "12345", nil},
		{"unusable_event_id", fubSign(fubKey, `{"eventId":"a b"}`), `{"eventId":"a b"}`, "", nil},
		{"event_id_trimmed", fubSign(fubKey, `{"eventId":" e-1\n"}`), `{"eventId":" e-1\n"}`, "e-1", nil},
		{"event_id_number_as_written", fubSign(fubKey, `{"eventId":1e3}`), `{"eventId":1e3}`, "1e3", nil},
		{"event_id_object", fubSign(fubKey, `{"eventId":{"id":1}}`), `{"eventId":{"id":1}}`, "", nil},
		{"missing", "", fubBody, "", ErrMissingSignature},
		{"wrong_key", fubSign("not-the-system-key", fubBody), fubBody, "", ErrBadSignature},
		{"tampered_body", fubSign(fubKey, fubBody), strings.Replace(fubBody, "40942", "40943", 1), "", ErrBadSignature},
		{"signature_of_the_raw_body_not_its_base64", rawMAC, fubBody, "", ErrBadSignature},
		{"not_hex", "zz" + fubSign(fubKey, fubBody)[2:], fubBody, "", ErrMalformed},
		{"truncated", fubSign(fubKey, fubBody)[:40], fubBody, "", ErrMalformed},
	} {
		h := http.Header{}
		if tt.sig != "" {
			h.Set(HeaderFUBSignature, tt.sig)
		}
		id, err := v.Verify(h, []byte(tt.body))
		if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) || id != tt.id {
			t.Errorf("%s: Verify = %q, %v; want %q, %v", tt.name, id, err, tt.id, tt.want)
		}
	}
}

func TestNewFUBSignature_refusesNoKey(t *testing.T) {
	t.Parallel()
	for name, keys := range map[string][]string{"none": nil, "blank": {" "}} {
		if _, err := NewFUBSignature(keys); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func FuzzFUBSignature_Verify(f *testing.F) {
	f.Add(fubSign(fubKey, fubBody), []byte(fubBody))
	f.Add("", []byte{})
	f.Add(strings.Repeat("0", 64), []byte(`{"eventId":""}`))
	f.Add(fubSign(fubKey, `{"eventId":1e400}`), []byte(`{"eventId":1e400}`))
	v, err := NewFUBSignature([]string{fubKey, fubOldKey})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderFUBSignature, sig)
		id, err := v.Verify(h, body)
		if err != nil {
			if id != "" {
				t.Fatalf("rejected with a delivery id %q", id)
			}
			return
		}
		// Anything accepted carries a true signature of its body.
		s := strings.ToLower(strings.TrimSpace(sig))
		if s != SignFUB(fubKey, body) && s != SignFUB(fubOldKey, body) {
			t.Fatalf("accepted %q for a body it does not sign", sig)
		}
		if strings.ContainsAny(id, " \r\n\x00") || len(id) > 128 {
			t.Fatalf("unsafe delivery id %q", id)
		}
	})
}
