package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/logging"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

// RequestRedrive publishes a redrive command for the message at seq in
// stream to service. Every request is a new command, with an id of its own:
// an operator who redrives a message twice means it twice.
func RequestRedrive(ctx context.Context, p *Publisher, service, stream string, seq uint64, by string) (*jetstream.PubAck, error) {
	cmd := &opsv1.Redrive{
		Service:     service,
		Stream:      stream,
		Sequence:    seq,
		RequestedBy: by,
		RequestedAt: timestamppb.Now(),
	}
	id := fmt.Sprintf("redrive:%s:%s:%d:%d", service, stream, seq, time.Now().UnixNano())
	return p.Publish(ctx, RedriveSubject(service), id, cmd)
}

// ErrNoRoute is returned when a redrive names a message no handler of the
// service consumes.
var ErrNoRoute = errors.New("bus: no handler of this service consumes that message")

// Reason codes of a redrive command that cannot be carried out.
const (
	CodeRedriveNotFound = "redrive.not_found"
	CodeRedriveNoRoute  = "redrive.no_route"
)

// redriveHandler fetches the named message and runs the handler of the
// consumer that owns it again, inside that consumer's chain. Nothing is
// republished, so no other consumer sees the message twice. A success is
// announced on ops.redrive.done.<service>.
func (r *Runner) redriveHandler(ctx context.Context, cmdMsg *Message) error {
	var cmd opsv1.Redrive
	if err := proto.Unmarshal(cmdMsg.Data, &cmd); err != nil {
		return Undecodable("decode redrive command: %w", err)
	}
	raw, err := r.js.Stream(ctx, cmd.GetStream())
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return WithCode(CodeRedriveNotFound, Permanentf("redrive %s/%d: %w", cmd.GetStream(), cmd.GetSequence(), err))
		}
		return fmt.Errorf("redrive: stream %s: %w", cmd.GetStream(), err)
	}
	sm, err := raw.GetMsg(ctx, cmd.GetSequence())
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return WithCode(CodeRedriveNotFound, Permanentf("redrive %s/%d: %w", cmd.GetStream(), cmd.GetSequence(), err))
		}
		return fmt.Errorf("redrive: get %s/%d: %w", cmd.GetStream(), cmd.GetSequence(), err)
	}
	rt, ok := r.routeFor(cmd.GetStream(), sm.Subject)
	if !ok {
		return WithCode(CodeRedriveNoRoute, Permanentf("redrive %s/%d (%s): %w", cmd.GetStream(), cmd.GetSequence(), sm.Subject, ErrNoRoute))
	}
	m := &Message{
		Subject:     sm.Subject,
		Header:      sm.Header,
		Data:        sm.Data,
		Stream:      cmd.GetStream(),
		Sequence:    sm.Sequence,
		Time:        sm.Time,
		Attempt:     1,
		LastAttempt: cmdMsg.LastAttempt,
		Redrive:     true,
		inProgress:  cmdMsg.InProgress,
		stop:        cmdMsg.stop,
	}
	logging.FromContext(ctx).Info("redriving message", "target_stream", m.Stream, "target_seq", m.Sequence, "requested_by", cmd.GetRequestedBy())
	s := r.settled(m, rt.wrapped(ctx, m))
	switch s.act {
	case actAck:
		return r.redriveDone(ctx, rt.spec, m, &cmd, cmdMsg.Sequence)
	case actFail:
		// Record the failure against the redriven message, not the command.
		if err := r.recordFailure(ctx, r.failure(rt.spec, m, s), fmt.Sprintf("redrive-%d", cmdMsg.Sequence)); err != nil {
			// s.err is deliberately not wrapped (%v): the command is retried because the record
			// failed, so its class must come from err, not from the handler's error.
			return fmt.Errorf("redrive failed (%v) and its failure record too: %w", s.err, err) //nolint:errorlint // s.err must not be classified
		}
		return nil
	default:
		// A transient failure, a stop or a crash: the command itself is
		// retried, redelivered or handed back, as any message is.
		return s
	}
}

// redriveDone announces that the redriven message was handled.
func (r *Runner) redriveDone(ctx context.Context, spec ConsumerSpec, m *Message, cmd *opsv1.Redrive, cmdSeq uint64) error {
	done := &opsv1.RedriveDone{
		Service:         r.service,
		Consumer:        spec.Durable,
		Message:         &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject},
		RequestedBy:     cmd.GetRequestedBy(),
		DoneAt:          timestamppb.Now(),
		CommandSequence: cmdSeq,
	}
	id := fmt.Sprintf("redrive-done:%s:%s:%d:%d", r.service, m.Stream, m.Sequence, cmdSeq)
	if _, err := r.publisher.Publish(ctx, RedriveDoneSubject(r.service), id, done); err != nil {
		return fmt.Errorf("announce redrive of %s/%d: %w", m.Stream, m.Sequence, err)
	}
	return nil
}

func (r *Runner) routeFor(stream, subject string) (route, bool) {
	for _, name := range r.order {
		rt := r.handlers[name]
		if rt.spec.Stream != stream {
			continue
		}
		for _, f := range rt.spec.FilterSubjects {
			if subjectMatches(f, subject) {
				return rt, true
			}
		}
	}
	return route{}, false
}

// subjectMatches reports whether subject matches the NATS filter (with * and >).
func subjectMatches(filter, subject string) bool {
	ft := strings.Split(filter, ".")
	st := strings.Split(subject, ".")
	for i, t := range ft {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) {
			return false
		}
		if t != "*" && t != st[i] {
			return false
		}
	}
	return len(ft) == len(st)
}

// ResolveFailure announces on ops.resolved.<service> that a person resolved
// the failure of msg by hand, with a note saying how.
func ResolveFailure(ctx context.Context, p *Publisher, service string, msg *commonv1.MessageRef, note, by string) (*jetstream.PubAck, error) {
	ev := &opsv1.FailureResolved{
		Service:    service,
		Message:    msg,
		Note:       note,
		ResolvedBy: by,
		ResolvedAt: timestamppb.Now(),
	}
	id := fmt.Sprintf("resolved:%s:%s:%d:%d", service, msg.GetStream(), msg.GetSequence(), time.Now().UnixNano())
	return p.Publish(ctx, ResolvedSubject(service), id, ev)
}
