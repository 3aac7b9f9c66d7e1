package gateway

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// HeaderFUBSignature carries Follow Up Boss's webhook signature.
const HeaderFUBSignature = "FUB-Signature"

// FUBSignature verifies Follow Up Boss webhooks: FUB-Signature is
// hex(HMAC-SHA256(key = the system's X-System-Key, message = base64(raw body))),
// the standard alphabet with padding (apis.md §1 "Webhooks", [C]). Several
// keys are accepted at once so that a system key can rotate. The scheme has
// no timestamp: a replay is stopped only by the eventId dedup window.
type FUBSignature struct {
	keys [][]byte
}

var _ Verifier = (*FUBSignature)(nil)

// NewFUBSignature returns a verifier accepting a signature by any of keys.
func NewFUBSignature(keys []string) (*FUBSignature, error) {
	v := &FUBSignature{}
	for i, k := range keys {
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, fmt.Errorf("follow up boss: system key %d is empty", i+1)
		}
		v.keys = append(v.keys, []byte(k))
	}
	if len(v.keys) == 0 {
		return nil, errors.New("follow up boss: at least one system key is required")
	}
	return v, nil
}

// SignFUB returns the FUB-Signature of body under systemKey. The sandbox,
// tests and the demo sign with it.
func SignFUB(systemKey string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(systemKey))
	_, _ = mac.Write([]byte(base64.StdEncoding.EncodeToString(body)))
	return hex.EncodeToString(mac.Sum(nil))
}

// Verify checks FUB-Signature against every key in constant time, and
// returns the payload's eventId as the delivery id ("" when the body has
// none, or an unusable one: the gateway then uses the body's hash).
func (v *FUBSignature) Verify(h http.Header, body []byte) (string, error) {
	sig := strings.TrimSpace(h.Get(HeaderFUBSignature))
	if sig == "" {
		return "", fmt.Errorf("%w: %s is required", webhooksig.ErrMissingSignature, HeaderFUBSignature)
	}
	got, err := hex.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return "", fmt.Errorf("%w: %s is not a hex HMAC-SHA256", webhooksig.ErrMalformed, HeaderFUBSignature)
	}
	msg := []byte(base64.StdEncoding.EncodeToString(body))
	ok := false
	for _, k := range v.keys {
		mac := hmac.New(sha256.New, k)
		_, _ = mac.Write(msg)
		// Every key is tried, so the time taken does not say which matched.
		if hmac.Equal(mac.Sum(nil), got) {
			ok = true
		}
	}
	if !ok {
		return "", webhooksig.ErrBadSignature
	}
	return fubEventID(body), nil
}

// deliveryIDRe bounds what a provider's id may be before it becomes part of
// a Nats-Msg-Id.
var deliveryIDRe = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)

// fubEventID reads only the top-level eventId of a webhook payload, a string
// or a number; anything else yields "".
func fubEventID(body []byte) string {
	var p struct {
		EventID json.RawMessage `json:"eventId"`
	}
	if json.Unmarshal(body, &p) != nil || len(p.EventID) == 0 {
		return ""
	}
	var id string
	if err := json.Unmarshal(p.EventID, &id); err != nil {
		var n json.Number
		if json.Unmarshal(p.EventID, &n) != nil {
			return ""
		}
		id = n.String()
	}
	if !deliveryIDRe.MatchString(id) {
		return ""
	}
	return id
}

// fubSource is the built-in Follow Up Boss source, signed with keys.
func fubSource(keys []string) (Source, error) {
	v, err := NewFUBSignature(keys)
	if err != nil {
		return Source{}, fmt.Errorf("source \"followupboss\": %w", err)
	}
	return Source{
		Name:         "followupboss",
		Kind:         webhookv1.Kind_KIND_CRM,
		Route:        "/webhooks/followupboss",
		Verifiers:    []Verifier{v},
		ContentTypes: []string{"application/json"},
		JSON:         true,
	}, nil
}
