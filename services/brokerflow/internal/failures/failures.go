// Package failures is the operator's view of failed messages: each failure
// and its state (open, failed again, redriven, resolved), folded from the
// OPS stream, and a paced redrive of many at once.
//
// The state is not kept anywhere else: the OPS stream already holds every
// failure record (ops.failure.<service>), every good redrive
// (ops.redrive.done.<service>) and every failure a person resolved by hand
// (ops.resolved.<service>), in order, durably and on as many replicas as
// the stream has. Reading them in order gives every failure's state, the
// same on any machine and after any restart.
package failures

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

// State is where a failure stands.
type State string

// The states of a failure.
const (
	// Open: it failed and nothing was done yet.
	Open State = "open"
	// FailedAgain: a redrive ran it again and it failed again.
	FailedAgain State = "failed_again"
	// Redriven: a redrive ran it again and it succeeded.
	Redriven State = "redriven"
	// Resolved: a person handled it by hand (brokerflow failures resolve).
	Resolved State = "resolved"
)

// States is every state, in the order they are documented.
var States = []State{Open, FailedAgain, Redriven, Resolved}

// Unsettled are the states that still need a person: what ls shows by default.
var Unsettled = []State{Open, FailedAgain}

// ParseState reads a state's name.
func ParseState(s string) (State, error) {
	st := State(strings.ReplaceAll(strings.TrimSpace(s), "-", "_"))
	if !slices.Contains(States, st) {
		return "", fmt.Errorf("state %q: want one of open, failed_again, redriven, resolved, all", s)
	}
	return st, nil
}

// Failure is one failed message of one service, with what happened to it.
type Failure struct {
	// ID is "<service>/<stream>/<sequence>": the arguments of a redrive.
	ID         string `json:"id"`
	State      State  `json:"state"`
	Service    string `json:"service"`
	Consumer   string `json:"consumer"`
	Stream     string `json:"stream"`
	Sequence   uint64 `json:"sequence"`
	Subject    string `json:"subject"`
	EventType  string `json:"event_type,omitempty"`
	Source     string `json:"source,omitempty"`
	ReasonCode string `json:"reason_code"`
	// Reason is the last failure's free text, redacted by the service.
	Reason   string `json:"reason"`
	Class    string `json:"class"`
	Attempts uint32 `json:"attempts"`
	// Failures counts the failure records: the first and every failed redrive.
	Failures      int       `json:"failures"`
	FirstFailedAt time.Time `json:"first_failed_at"`
	LastFailedAt  time.Time `json:"last_failed_at"`

	RedrivenAt *time.Time `json:"redriven_at,omitempty"`
	RedrivenBy string     `json:"redriven_by,omitempty"`
	ResolvedAt *time.Time `json:"resolved_at,omitempty"`
	ResolvedBy string     `json:"resolved_by,omitempty"`
	Note       string     `json:"note,omitempty"`
}

// ID is a failure's id.
func ID(service, stream string, seq uint64) string {
	return service + "/" + stream + "/" + strconv.FormatUint(seq, 10)
}

// ParseID reads an id ID made.
func ParseID(id string) (service, stream string, seq uint64, err error) {
	parts := strings.Split(id, "/")
	if len(parts) == 3 && parts[0] != "" && parts[1] != "" {
		if seq, err = strconv.ParseUint(parts[2], 10, 64); err == nil && seq > 0 {
			return parts[0], parts[1], seq, nil
		}
	}
	return "", "", 0, fmt.Errorf("failure id %q: want SERVICE/STREAM/SEQUENCE, as brokerflow failures ls prints it (e.g. crm-sync/LEADS/42)", id)
}

// RedriveCommand is the command that runs the failure again.
func (f *Failure) RedriveCommand() string { return "brokerflow failures redrive " + f.ID }

// Source is the lead source a failed message concerns, read from its
// subject: the last token of lead.<kind>.<source> and
// webhook.received.<kind>.<source>; empty for other subjects.
func Source(subject string) string {
	t := strings.Split(subject, ".")
	switch {
	case len(t) == 3 && t[0] == "lead":
		return t[2]
	case len(t) == 4 && t[0] == "webhook" && t[1] == "received":
		return t[3]
	}
	return ""
}

// subjects are what Load reads from OPS.
var subjects = []string{"ops.failure.>", "ops.redrive.done.>", "ops.resolved.>"}

// Load reads every failure and its state from the OPS stream, oldest
// first. A record that does not decode is skipped and counted in skipped.
func Load(ctx context.Context, js jetstream.JetStream) (list []*Failure, skipped int, err error) {
	// A short inactive threshold: an ordered consumer makes a consumer
	// per fetch, and the server keeps at most 1,000 per stream by default.
	c, err := js.OrderedConsumer(ctx, bus.StreamOps, jetstream.OrderedConsumerConfig{FilterSubjects: subjects, InactiveThreshold: readerInactive})
	if err != nil {
		return nil, 0, fmt.Errorf("read %s: %w", bus.StreamOps, err)
	}
	defer deleteOrdered(js, c)
	byID := map[string]*Failure{}
	for {
		batch, err := c.FetchNoWait(512)
		if err != nil {
			return nil, 0, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if !apply(byID, &list, m.Subject(), m.Data()) {
				skipped++
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return nil, 0, err
		}
		if n == 0 {
			return list, skipped, nil
		}
	}
}

// readerInactive is when the server removes a reader's consumer left behind.
const readerInactive = 30 * time.Second

// deleteOrdered removes the ordered consumer's current server consumer.
func deleteOrdered(js jetstream.JetStream, c jetstream.Consumer) {
	info := c.CachedInfo()
	if info == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = js.DeleteConsumer(ctx, bus.StreamOps, info.Name)
}

// apply folds one OPS message into the failures; false when it does not decode.
func apply(byID map[string]*Failure, list *[]*Failure, subject string, data []byte) bool {
	switch {
	case strings.HasPrefix(subject, "ops.failure."):
		var r opsv1.Failure
		if proto.Unmarshal(data, &r) != nil {
			return false
		}
		ref := r.GetMessage()
		id := ID(r.GetService(), ref.GetStream(), ref.GetSequence())
		f := byID[id]
		if f == nil {
			f = &Failure{ID: id, Service: r.GetService(), Stream: ref.GetStream(), Sequence: ref.GetSequence(), FirstFailedAt: r.GetFailedAt().AsTime()}
			byID[id] = f
			*list = append(*list, f)
		}
		f.Consumer, f.Subject, f.EventType = r.GetConsumer(), ref.GetSubject(), r.GetEventType()
		f.Source = r.GetCorrelation().GetSource()
		if f.Source == "" {
			f.Source = Source(f.Subject)
		}
		f.ReasonCode, f.Reason, f.Attempts = r.GetReasonCode(), r.GetReason(), r.GetAttempts()
		f.Class = strings.ToLower(strings.TrimPrefix(r.GetClass().String(), "ERROR_CLASS_"))
		f.LastFailedAt = r.GetFailedAt().AsTime()
		f.Failures++
		f.State = Open
		if r.GetRedrive() {
			f.State = FailedAgain
		}
	case strings.HasPrefix(subject, "ops.redrive.done."):
		var r opsv1.RedriveDone
		if proto.Unmarshal(data, &r) != nil {
			return false
		}
		if f := byID[ID(r.GetService(), r.GetMessage().GetStream(), r.GetMessage().GetSequence())]; f != nil {
			t := r.GetDoneAt().AsTime()
			f.State, f.RedrivenAt, f.RedrivenBy = Redriven, &t, r.GetRequestedBy()
		}
	case strings.HasPrefix(subject, "ops.resolved."):
		var r opsv1.FailureResolved
		if proto.Unmarshal(data, &r) != nil {
			return false
		}
		if f := byID[ID(r.GetService(), r.GetMessage().GetStream(), r.GetMessage().GetSequence())]; f != nil {
			t := r.GetResolvedAt().AsTime()
			f.State, f.ResolvedAt, f.ResolvedBy, f.Note = Resolved, &t, r.GetResolvedBy(), r.GetNote()
		}
	}
	return true
}

// Filter selects failures; an empty field selects all.
type Filter struct {
	Service string
	Source  string
	// Reason is a reason code or a glob of them ("crm.*").
	Reason string
	// Since keeps the failures that failed last at or after it.
	Since  time.Time
	States []State
}

// Match reports whether f passes the filter.
func (fl Filter) Match(f *Failure) bool {
	if fl.Service != "" && f.Service != fl.Service {
		return false
	}
	if fl.Source != "" && f.Source != fl.Source {
		return false
	}
	if fl.Reason != "" {
		if ok, _ := path.Match(fl.Reason, f.ReasonCode); !ok {
			return false
		}
	}
	if !fl.Since.IsZero() && f.LastFailedAt.Before(fl.Since) {
		return false
	}
	return len(fl.States) == 0 || slices.Contains(fl.States, f.State)
}

// Select returns the failures in list that pass the filter.
func Select(list []*Failure, fl Filter) []*Failure {
	var out []*Failure
	for _, f := range list {
		if fl.Match(f) {
			out = append(out, f)
		}
	}
	return out
}

// ParseSince reads --since: a duration back from now ("2h", "7d" as
// "168h") or an RFC 3339 time.
func ParseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("since %q: want a duration back from now (90m, 24h, 7d) or an RFC 3339 time", s)
}
