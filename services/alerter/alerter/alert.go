package alerter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"

	// The events a failed message may be: registered so that it decodes.
	_ "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	_ "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	_ "github.com/brokerflow/brokerflow/proto/brokerflow/reporting/v1"
	_ "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
	_ "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// Alert is what a person is told: the same in every channel.
type Alert struct {
	// ID is stable for one alert: a redelivery after a crash sends the
	// same id again (the webhook's webhook-id).
	ID    string          `json:"id"`
	Kind  opsv1.AlertKind `json:"-"`
	Group string          `json:"group"`
	Title string          `json:"title"`

	Service    string `json:"service,omitempty"`
	Consumer   string `json:"consumer,omitempty"`
	ReasonCode string `json:"reason_code,omitempty"`
	Reason     string `json:"reason,omitempty"`
	Source     string `json:"source,omitempty"`

	Stream   string `json:"stream,omitempty"`
	Sequence uint64 `json:"sequence,omitempty"`
	Subject  string `json:"subject,omitempty"`
	// EventType is the failed message's ce-type.
	EventType     string `json:"event_type,omitempty"`
	LeadID        string `json:"lead_id,omitempty"`
	ContactID     string `json:"contact_id,omitempty"`
	TransactionID string `json:"transaction_id,omitempty"`
	// Data is the failed message, as JSON, redacted unless PII is on.
	Data     any `json:"data,omitempty"`
	Attempts int `json:"attempts,omitempty"`
	// Redrive is the command that runs the failed message again.
	Redrive string `json:"redrive,omitempty"`
	// Count is how many failures a summary stands for.
	Count int `json:"count,omitempty"`
	// Redrives are some of a summary's redrive commands.
	Redrives []string  `json:"redrives,omitempty"`
	At       time.Time `json:"at"`
}

// KindName is the kind as routes and the webhook name it.
func (a *Alert) KindName() string {
	return strings.ToLower(strings.TrimPrefix(a.Kind.String(), "ALERT_KIND_"))
}

// MarshalJSON adds the kind's name.
func (a *Alert) MarshalJSON() ([]byte, error) {
	type plain Alert
	return json.Marshal(struct {
		Kind string `json:"kind"`
		*plain
	}{a.KindName(), (*plain)(a)})
}

// DedupKey is PagerDuty's key: one per group, so that a group is one incident.
func (a *Alert) DedupKey() string { return "brokerflow/" + a.Group }

// RedriveCommand is the operator's command that runs a failed message again.
func RedriveCommand(service, stream string, seq uint64) string {
	return fmt.Sprintf("brokerflow failures redrive %s %s %d", service, stream, seq)
}

// describe fills in the failed message from its stream: subject, type,
// the ids it concerns, and its data, redacted unless pii.
func describe(ctx context.Context, js jetstream.JetStream, a *Alert, pii bool) error {
	if a.Stream == "" || a.Sequence == 0 {
		return nil
	}
	s, err := js.Stream(ctx, a.Stream)
	if err != nil {
		return fmt.Errorf("stream %s: %w", a.Stream, err)
	}
	raw, err := s.GetMsg(ctx, a.Sequence)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		a.Data = "the message is no longer in its stream (past the stream's limits)"
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s/%d: %w", a.Stream, a.Sequence, err)
	}
	a.Subject = raw.Subject
	a.EventType = raw.Header.Get(bus.HeaderType)
	data, err := decodeEvent(a.EventType, raw.Data)
	if err != nil {
		a.Data = fmt.Sprintf("%d bytes that do not decode as %q", len(raw.Data), a.EventType)
		return nil //nolint:nilerr // an undecodable message is described, not an error of the alerter
	}
	ids := map[string]string{}
	collectIDs(data, ids)
	a.LeadID, a.ContactID, a.TransactionID = ids["lead_id"], ids["contact_id"], ids["transaction_id"]
	if a.Source == "" {
		a.Source = ids["lead_source"]
		if a.Source == "" {
			a.Source = ids["source"]
		}
	}
	if !pii {
		data = redact("", data)
	}
	a.Data = data
	return nil
}

// DecodeMessage turns a stream message's protobuf data of the event type
// (its ce-type) into JSON-like values, as alerts show it: redacted unless
// pii. ids are the journey ids found in it (lead_id, contact_id,
// transaction_id, lead_source, source), read before redaction.
func DecodeMessage(eventType string, data []byte, pii bool) (v any, ids map[string]string, err error) {
	v, err = decodeEvent(eventType, data)
	if err != nil {
		return nil, nil, err
	}
	ids = map[string]string{}
	collectIDs(v, ids)
	if !pii {
		v = redact("", v)
	}
	return v, ids, nil
}

// decodeEvent turns a protobuf event of type name into JSON-like values,
// with the schema's field names.
func decodeEvent(name string, b []byte) (any, error) {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		return nil, err
	}
	msg := mt.New().Interface()
	if err := proto.Unmarshal(b, msg); err != nil {
		return nil, err
	}
	j, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
	if err != nil {
		return nil, err
	}
	var v any
	err = json.Unmarshal(j, &v)
	return v, err
}

var idKeys = map[string]bool{"lead_id": true, "contact_id": true, "transaction_id": true, "lead_source": true, "source": true}

// collectIDs finds the first value of each id key, at any depth.
func collectIDs(v any, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			if s, ok := x.(string); ok && idKeys[k] && s != "" && out[k] == "" {
				out[k] = s
			}
		}
		for _, x := range t {
			collectIDs(x, out)
		}
	case []any:
		for _, x := range t {
			collectIDs(x, out)
		}
	}
}

// rawKeys hold a webhook's raw body and headers, and a person's own
// message: personal data in shapes no pattern finds, so they go whole.
var rawKeys = map[string]bool{"body": true, "headers": true, "message": true}

// redact replaces personal data: the value of a key that names it (email,
// phone, names, address), a webhook's raw body and headers, a person's
// message, and emails and phone numbers in any text.
func redact(key string, v any) any {
	if (logging.IsPIIKey(key) || rawKeys[key]) && v != nil && v != "" {
		return logging.Redacted
	}
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = redact(k, x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = redact(key, x)
		}
		return out
	case string:
		return logging.RedactString(t)
	}
	return v
}
