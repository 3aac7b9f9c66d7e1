package jsonscalar_test

import (
	"encoding/json"
	"testing"

	"github.com/brokerflow/brokerflow/pkg/jsonscalar"
)

// TestString pins what every reader of a vendor's id gets: the Facebook
// leadgen notification (normalizer), Follow Up Boss's eventId and
// resourceIds (crm-sync, and the gateway's delivery id).
func TestString(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, raw, want string
	}{
		{"string", `"abc-1"`, "abc-1"},
		{"string_is_trimmed", `" 4471111 "`, "4471111"},
		{"string_with_tab_and_newline_around", `"\t12\n"`, "12"},
		{"inner_space_kept", `"a b"`, "a b"},
		{"escaped_string", `"\u0031\u0032"`, "12"},
		{"empty_string", `""`, ""},
		{"integer", `40942`, "40942"},
		{"number_as_written", `1e3`, "1e3"},
		{"negative_and_fraction", `-12.50`, "-12.50"},
		{"beyond_int64", `99999999999999999999`, "99999999999999999999"},
		{"space_around_the_value", " \n 7 \t", "7"},
		{"null", `null`, ""},
		{"boolean", `true`, ""},
		{"object", `{"id":1}`, ""},
		{"list", `[1]`, ""},
		{"no_value", ``, ""},
		{"unterminated_string", `"abc`, ""},
		{"not_json", `abc`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := jsonscalar.String(json.RawMessage(tt.raw)); got != tt.want {
				t.Fatalf("String(%q) = %q, want %q", tt.raw, got, tt.want)
			}
		})
	}
}
