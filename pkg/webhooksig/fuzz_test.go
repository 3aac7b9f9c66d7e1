package webhooksig

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fuzz targets check one property each: whatever a verifier accepts
// carries a true credential, and nothing makes it panic.

func FuzzHMACSHA256_Verify(f *testing.F) {
	f.Add("sha256="+SignHMACSHA256(hmacSecret, Hex, "", []byte(sampleBody)), []byte(sampleBody))
	f.Add("sha256=", []byte{})
	f.Add("SHA256="+strings.Repeat("0", 64), []byte("{}"))
	v, err := NewHMACSHA256("X-Signature", Hex, "sha256=", []string{hmacSecret, hmacOldSecret})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sig string, body []byte) {
		id, err := v.Verify(header("X-Signature", sig), body)
		if err != nil || id != "" {
			if err == nil {
				t.Fatalf("delivery id %q from a scheme without one", id)
			}
			return
		}
		s := strings.ToLower(strings.TrimSpace(sig))
		if s != SignHMACSHA256(hmacSecret, Hex, "sha256=", body) && s != SignHMACSHA256(hmacOldSecret, Hex, "sha256=", body) {
			t.Fatalf("accepted %q for a body it does not sign", sig)
		}
	})
}

func FuzzHMACSHA256_VerifyBase64(f *testing.F) {
	f.Add(SignHMACSHA256(hmacSecret, Base64, "", []byte(sampleBody)), []byte(sampleBody))
	f.Add("====", []byte{})
	v, err := NewHMACSHA256("X-Signature", Base64, "", []string{hmacSecret})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sig string, body []byte) {
		if _, err := v.Verify(header("X-Signature", sig), body); err != nil {
			return
		}
		want := SignHMACSHA256(hmacSecret, Base64, "", body)
		if s := strings.TrimSpace(sig); s != want && s != strings.TrimRight(want, "=") {
			t.Fatalf("accepted %q for a body it does not sign (%q)", sig, want)
		}
	})
}

func FuzzFacebook_Verify(f *testing.F) {
	body := []byte(`{"object":"page","entry":[]}`)
	f.Add(SignFacebook("app-secret", body), body)
	f.Add("sha1=abc", []byte{})
	v, err := NewFacebook([]string{"app-secret"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sig string, body []byte) {
		if _, err := v.Verify(header(HeaderHubSignature256, sig), body); err != nil {
			return
		}
		if s := strings.ToLower(strings.TrimSpace(sig)); s != SignFacebook("app-secret", body) {
			t.Fatalf("accepted %q for a body it does not sign", sig)
		}
	})
}

func FuzzFacebookChallenge(f *testing.F) {
	f.Add("hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=verify-me")
	f.Add("hub.mode=subscribe&hub.challenge=&hub.verify_token=verify-me")
	f.Add("hub.mode=subscribe&hub.mode=unsubscribe&hub.challenge=1&hub.verify_token=verify-me")
	f.Fuzz(func(t *testing.T, rawQuery string) {
		q, err := url.ParseQuery(rawQuery)
		if err != nil {
			return
		}
		got, err := FacebookChallenge("verify-me", q)
		if err != nil {
			if got != "" {
				t.Fatalf("refused with a challenge %q", got)
			}
			return
		}
		if q.Get("hub.verify_token") != "verify-me" || q.Get("hub.mode") != "subscribe" || got != q.Get("hub.challenge") || got == "" || len(got) > MaxChallengeLen {
			t.Fatalf("accepted %q, answering %q", rawQuery, got)
		}
	})
}

func FuzzAPIKey_Verify(f *testing.F) {
	f.Add("realtor-key-1")
	f.Add(" realtor-key-1\t")
	f.Add("")
	v, err := NewAPIKey(HeaderAPIKey, []string{"realtor-key-1", "realtor-key-2"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key string) {
		if _, err := v.Verify(header(HeaderAPIKey, key), nil); err != nil {
			return
		}
		if k := strings.TrimSpace(key); k != "realtor-key-1" && k != "realtor-key-2" {
			t.Fatalf("accepted key %q", key)
		}
	})
}

func FuzzSharedSecret_VerifyRequest(f *testing.F) {
	f.Add("token=zillow-shared", "")
	f.Add("token=nope", "zillow-shared")
	f.Add("token=%zz", "")
	v, err := NewSharedSecret("X-Zillow-Secret", "token", []string{"zillow-shared"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rawQuery, hdr string) {
		r := &http.Request{URL: &url.URL{RawQuery: rawQuery}, Header: header("X-Zillow-Secret", hdr)}
		if _, err := v.VerifyRequest(r, nil); err != nil {
			return
		}
		h, q := strings.TrimSpace(r.Header.Get("X-Zillow-Secret")), strings.TrimSpace(r.URL.Query().Get("token"))
		if h != "zillow-shared" && (h != "" || q != "zillow-shared") {
			t.Fatalf("accepted header %q, query %q", hdr, rawQuery)
		}
	})
}

func FuzzBasic_Verify(f *testing.F) {
	f.Add("Basic " + base64.StdEncoding.EncodeToString([]byte("vendor:pa:ss")))
	f.Add("Basic !!!")
	f.Add("basic " + base64.StdEncoding.EncodeToString([]byte("vendor")))
	v, err := NewBasic([]string{"vendor:pa:ss"})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, authorization string) {
		h := header("Authorization", authorization)
		if _, err := v.Verify(h, nil); err != nil {
			return
		}
		user, pass, ok := (&http.Request{Header: h}).BasicAuth()
		if !ok || user+":"+pass != "vendor:pa:ss" {
			t.Fatalf("accepted %q", authorization)
		}
	})
}

func FuzzDotloopSignature_Verify(f *testing.F) {
	const ts = "1795982082000"
	body := []byte(`{"eventId":"evt_1","eventType":"LOOP_UPDATED","event":{"id":1,"profileId":2,"loopId":1}}`)
	f.Add(SignDotloop("dotloop-key", 1795982082000, body, DotloopTimestampBody), ts, body)
	f.Add("zz", "0", []byte{})
	f.Add(strings.Repeat("0", 40), "-1", []byte("{}"))
	v, err := NewDotloopSignature([]string{"dotloop-key"}, DotloopTimestampBody, time.Hour*24*365*100)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sig, stamp string, body []byte) {
		h := http.Header{}
		h.Set(HeaderDotloopSignature, sig)
		h.Set(HeaderDotloopTimestamp, stamp)
		id, err := v.Verify(h, body)
		if err != nil {
			return
		}
		n, perr := strconv.ParseInt(strings.TrimSpace(stamp), 10, 64)
		if perr != nil || strings.ToLower(strings.TrimSpace(sig)) != SignDotloop("dotloop-key", n, body, DotloopTimestampBody) {
			t.Fatalf("accepted %q at %q for a body and timestamp it does not sign", sig, stamp)
		}
		if id != "" && !ValidDeliveryID(id) {
			t.Fatalf("unsafe delivery id %q", id)
		}
	})
}
