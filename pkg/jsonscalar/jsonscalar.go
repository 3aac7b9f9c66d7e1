// Package jsonscalar reads a JSON value that vendors send as either a string
// or a number, such as an id ("eventId": "abc-1" or 12345, "leadgen_id":
// "4471111" or 4471111), as text.
package jsonscalar

import (
	"bytes"
	"encoding/json"
	"strings"
)

// String returns a JSON string's value, trimmed of surrounding white space,
// or a JSON number's literal as written (12345, 1e3, never 1000 or 1e+03).
// Anything else (null, a boolean, an object, a list, no value, or invalid
// JSON) is "".
func String(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return ""
		}
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) != nil {
		return ""
	}
	return n.String()
}
