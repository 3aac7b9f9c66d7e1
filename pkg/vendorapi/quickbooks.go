package vendorapi

import (
	"encoding/json"
	"encoding/xml"
	"strings"
)

// quickBooksThrottleCode is the error code of QuickBooks Online's
// ThrottleExceeded fault, written "3001" in the Error element's code and
// "003001" in its message.
const quickBooksThrottleCode = "3001"

// quickBooksFault is QuickBooks Online's error envelope, as XML
// (<IntuitResponse><Fault type=…><Error code=…><Message/><Detail/></Error>
// </Fault></IntuitResponse>) or as JSON ({"Fault":{"Error":[{"Message",
// "Detail","code","element"}],"type":…}}).
type quickBooksFault struct {
	Type   string `xml:"type,attr" json:"type"`
	Errors []struct {
		Code    string `xml:"code,attr" json:"code"`
		Message string `xml:"Message" json:"Message"`
		Detail  string `xml:"Detail" json:"Detail"`
	} `xml:"Error" json:"Error"`
}

// QuickBooksClassifier classifies QuickBooks Online's error answers. Its
// throttle fault comes as XML even to a client that asked for JSON, with
// HTTP 429 (some accounts have seen 403):
//
//	<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="…">
//	  <Fault type="SERVICE">
//	    <Error code="3001">
//	      <Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>
//	      <Detail>…</Detail>
//
// A fault whose type is ThrottleExceeded, whose error code is 3001 (or
// 003001), or whose message names ThrottleExceeded, or any 429, is Throttled
// ("rate_limited"). Any other answer takes the status mapping
// (StatusVerdict), with the fault's code, message and detail when it has
// one. A fault inside a 200 answer is not seen here: the client decodes 2xx
// answers as the adapter's own.
func QuickBooksClassifier(a Answer) Verdict {
	v := StatusVerdict(a)
	f, ok := parseQuickBooksFault(a.Body)
	if !ok {
		v.Message = strings.TrimSpace(string(a.Body))
		return v
	}
	throttled := strings.EqualFold(f.Type, "ThrottleExceeded")
	var msgs []string
	for _, e := range f.Errors {
		code := strings.TrimLeft(strings.TrimSpace(e.Code), "0")
		if v.Code == "" {
			v.Code = code
		}
		if code == quickBooksThrottleCode || strings.Contains(e.Message, "ThrottleExceeded") {
			throttled = true
		}
		msg := strings.TrimSpace(e.Message)
		if d := strings.TrimSpace(e.Detail); d != "" {
			msg = strings.TrimSpace(msg + ": " + d)
		}
		if msg != "" {
			msgs = append(msgs, msg)
		}
	}
	v.Message = strings.Join(msgs, "; ")
	if throttled {
		v.Class, v.Reason = Throttled, "rate_limited"
	}
	return v
}

func parseQuickBooksFault(body []byte) (quickBooksFault, bool) {
	trimmed := strings.TrimSpace(string(body))
	switch {
	case strings.HasPrefix(trimmed, "<"):
		var doc struct {
			Fault *quickBooksFault `xml:"Fault"`
		}
		if xml.Unmarshal(body, &doc) == nil && doc.Fault != nil {
			return *doc.Fault, true
		}
	case strings.HasPrefix(trimmed, "{"):
		var doc struct {
			Fault *quickBooksFault `json:"Fault"`
		}
		if json.Unmarshal(body, &doc) == nil && doc.Fault != nil {
			return *doc.Fault, true
		}
	}
	return quickBooksFault{}, false
}
