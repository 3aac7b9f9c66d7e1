package vendorapi

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// GraphThrottleCodes are the Facebook Graph API's rate-limit error codes,
// which it answers with HTTP 400 rather than 429: the application (4), user
// (17), Page (32) and per-hour (613) limits.
var GraphThrottleCodes = []int{4, 17, 32, 613}

// GraphClassifier classifies the Graph API's error answers
// ({"error":{"message","type","code","error_subcode","is_transient",
// "fbtrace_id"}}): a rate-limit code (GraphThrottleCodes) or a 429 is
// Throttled ("rate_limited"); an error Graph marks is_transient, a 5xx or a
// 408 is Transient; any other 4xx (an unknown lead, a bad or expired token,
// a missing permission) is Permanent, "http_<status>". Graph sends no
// Retry-After: a throttled call is retried on the bus schedule.
func GraphClassifier(a Answer) Verdict {
	v := StatusVerdict(a)
	var body struct {
		Error *struct {
			Message     string `json:"message"`
			Type        string `json:"type"`
			Code        int    `json:"code"`
			Subcode     int    `json:"error_subcode"`
			IsTransient bool   `json:"is_transient"`
			FBTraceID   string `json:"fbtrace_id"`
		} `json:"error"`
	}
	if json.Unmarshal(a.Body, &body) != nil || body.Error == nil {
		v.Message = strings.TrimSpace(string(a.Body))
		return v
	}
	e := body.Error
	if e.Code != 0 {
		v.Code = strconv.Itoa(e.Code)
	}
	var msg strings.Builder
	msg.WriteString(e.Message)
	if e.Type != "" || e.Subcode != 0 {
		fmt.Fprintf(&msg, " (%s", e.Type)
		if e.Subcode != 0 {
			fmt.Fprintf(&msg, " subcode %d", e.Subcode)
		}
		msg.WriteString(")")
	}
	if e.FBTraceID != "" {
		msg.WriteString(" [fbtrace_id " + e.FBTraceID + "]")
	}
	v.Message = strings.TrimSpace(msg.String())
	switch {
	case slices.Contains(GraphThrottleCodes, e.Code):
		v.Class, v.Reason = Throttled, "rate_limited"
	case e.IsTransient && v.Class == Permanent:
		v.Class = Transient
	}
	return v
}
