package gateway

import (
	"encoding/json"
	"net/http"
	"testing"
)

// FuzzSource_wellFormed feeds outside bodies to the format checks: they
// never panic, and a JSON source accepts exactly the well-formed JSON.
func FuzzSource_wellFormed(f *testing.F) {
	f.Add("json", "application/json", []byte(`{"a":1}`))
	f.Add("form", "application/x-www-form-urlencoded", []byte("a=1&b=%zz"))
	f.Add("email", "multipart/form-data; boundary=xyz", []byte("--xyz\r\nContent-Disposition: form-data; name=\"from\"\r\n\r\na@b\r\n--xyz--\r\n"))
	f.Add("email", "multipart/form-data", []byte("--xyz--"))
	f.Fuzz(func(t *testing.T, format, contentType string, body []byte) {
		err := Source{Format: format}.wellFormed(contentType, body)
		if (format == "json" || format == "facebook_leadgen") && (err == nil) != json.Valid(body) {
			t.Fatalf("json.Valid = %v, wellFormed = %v", json.Valid(body), err)
		}
	})
}

// FuzzHeaderDeliveryID: whatever a provider sends as its delivery id, the
// id used in the Nats-Msg-Id is bounded and safe, and stable for a value.
func FuzzHeaderDeliveryID(f *testing.F) {
	f.Add("dlv-42")
	f.Add("has spaces\nand a newline")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		h := http.Header{"X-Delivery-Id": {v}}
		id := headerDeliveryID(h, "X-Delivery-Id")
		if id != headerDeliveryID(h, "X-Delivery-Id") || len(id) > 128 {
			t.Fatalf("id %q for %q", id, v)
		}
		for _, c := range id {
			if c <= ' ' || c > '~' {
				t.Fatalf("unsafe id %q for %q", id, v)
			}
		}
	})
}
