package webhooksig

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// The published test vector of the Standard Webhooks reference libraries.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorBody      = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func vectorHeaders() http.Header {
	h := http.Header{}
	h.Set(HeaderID, vectorID)
	h.Set(HeaderTimestamp, strconv.Itoa(vectorTimestamp))
	h.Set(HeaderSignature, vectorSignature)
	return h
}

func atVector() time.Time { return time.Unix(vectorTimestamp, 0) }

func TestStandardWebhooks_publishedVector(t *testing.T) {
	t.Parallel()
	v, err := NewStandardWebhooks([]string{vectorSecret}, 0)
	if err != nil {
		t.Fatal(err)
	}
	id, err := v.WithClock(atVector).Verify(vectorHeaders(), []byte(vectorBody))
	if err != nil {
		t.Fatalf("published vector must verify: %v", err)
	}
	if id != vectorID {
		t.Fatalf("delivery id = %q, want %q", id, vectorID)
	}
	sig, err := Sign(vectorSecret, vectorID, atVector(), []byte(vectorBody))
	if err != nil || sig != vectorSignature {
		t.Fatalf("Sign = %q, %v; want %q", sig, err, vectorSignature)
	}
}

func TestStandardWebhooks_rejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		secret string
		edit   func(h http.Header) http.Header
		body   string
		now    time.Time
		want   error
	}{
		{name: "wrong_secret", secret: "whsec_" + "c2VjcmV0LXRoYXQtaXMtbm90LXRoZS1yaWdodC1vbmU=", want: ErrBadSignature},
		{name: "tampered_body", body: `{"test": 2432232315}`, want: ErrBadSignature},
		{name: "missing_signature", edit: func(h http.Header) http.Header { h.Del(HeaderSignature); return h }, want: ErrMissingSignature},
		{name: "missing_id", edit: func(h http.Header) http.Header { h.Del(HeaderID); return h }, want: ErrMissingSignature},
		{name: "stale", now: atVector().Add(5*time.Minute + time.Second), want: ErrStale},
		{name: "future", now: atVector().Add(-5*time.Minute - time.Second), want: ErrStale},
		{name: "timestamp_not_integer", edit: func(h http.Header) http.Header { h.Set(HeaderTimestamp, "yesterday"); return h }, want: ErrMalformed},
		{name: "id_with_dot", edit: func(h http.Header) http.Header { h.Set(HeaderID, "a.b"); return h }, want: ErrMalformed},
		{name: "other_version_only", edit: func(h http.Header) http.Header {
			h.Set(HeaderSignature, "v1a,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
			return h
		}, want: ErrBadSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			secret := vectorSecret
			if tt.secret != "" {
				secret = tt.secret
			}
			v, err := NewStandardWebhooks([]string{secret}, 0)
			if err != nil {
				t.Fatal(err)
			}
			now := atVector()
			if !tt.now.IsZero() {
				now = tt.now
			}
			h := vectorHeaders()
			if tt.edit != nil {
				h = tt.edit(h)
			}
			body := vectorBody
			if tt.body != "" {
				body = tt.body
			}
			_, err = v.WithClock(func() time.Time { return now }).Verify(h, []byte(body))
			if !errors.Is(err, tt.want) {
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestStandardWebhooks_rotation(t *testing.T) {
	t.Parallel()
	newSecret := "whsec_bmV3LXNlY3JldC1hZnRlci1yb3RhdGlvbi0yMDI2"
	v, err := NewStandardWebhooks([]string{newSecret, vectorSecret}, 0)
	if err != nil {
		t.Fatal(err)
	}
	v = v.WithClock(atVector)
	if _, err := v.Verify(vectorHeaders(), []byte(vectorBody)); err != nil {
		t.Fatalf("old secret must still verify during rotation: %v", err)
	}
	h, err := SignedHeaders(newSecret, "msg_rotated", atVector(), []byte(vectorBody))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(h, []byte(vectorBody)); err != nil {
		t.Fatalf("new secret must verify: %v", err)
	}
	// A sender mid-rotation sends both signatures; either matching suffices.
	h.Set(HeaderSignature, "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= "+h.Get(HeaderSignature))
	if _, err := v.Verify(h, []byte(vectorBody)); err != nil {
		t.Fatalf("a list with one matching signature must verify: %v", err)
	}
}

func TestNewStandardWebhooks_badSecrets(t *testing.T) {
	t.Parallel()
	for name, secrets := range map[string][]string{
		"none":       nil,
		"not_base64": {"whsec_!!!"},
		"empty":      {"whsec_"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewStandardWebhooks(secrets, 0); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func FuzzStandardWebhooks_Verify(f *testing.F) {
	f.Add(vectorID, strconv.Itoa(vectorTimestamp), vectorSignature, []byte(vectorBody))
	f.Add("", "", "", []byte{})
	f.Add("msg_1", "-1", "v1,", []byte("{}"))
	v, err := NewStandardWebhooks([]string{vectorSecret}, 0)
	if err != nil {
		f.Fatal(err)
	}
	v = v.WithClock(atVector)
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		got, err := v.Verify(h, body)
		if err != nil {
			return
		}
		// Anything accepted must carry the true signature of its content.
		want, serr := Sign(vectorSecret, id, atVector(), body)
		if serr != nil {
			t.Fatal(serr)
		}
		if got != id || (id != vectorID && !containsSig(sig, want)) {
			t.Fatalf("accepted id=%q sig=%q; true signature %q", id, sig, want)
		}
	})
}

func containsSig(list, sig string) bool {
	for start := 0; start <= len(list); {
		end := start
		for end < len(list) && list[end] != ' ' {
			end++
		}
		if list[start:end] == sig {
			return true
		}
		start = end + 1
	}
	return false
}
