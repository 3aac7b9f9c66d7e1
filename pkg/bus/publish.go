package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/telemetry"
)

// Header names every event carries (docs/events.md).
const (
	HeaderMsgID         = jetstream.MsgIDHeader // Nats-Msg-Id
	HeaderContentType   = "Content-Type"
	HeaderSpecVersion   = "ce-specversion"
	HeaderID            = "ce-id"
	HeaderSource        = "ce-source"
	HeaderType          = "ce-type"
	HeaderTime          = "ce-time"
	ContentTypeProtobuf = "application/protobuf"
	SpecVersion         = "1.0"
)

// ErrEmptyID is returned when an event is published without a deterministic id.
var ErrEmptyID = errors.New("bus: event id is empty")

// Publisher publishes protobuf events with the contract's headers.
type Publisher struct {
	js     jetstream.JetStream
	source string
	tracer trace.Tracer
	now    func() time.Time
}

// NewPublisher returns a Publisher whose ce-source is service.
func NewPublisher(js jetstream.JetStream, service string, tp trace.TracerProvider) *Publisher {
	return &Publisher{
		js:     js,
		source: service,
		tracer: telemetry.TracerProvider(tp).Tracer("github.com/brokerflow/brokerflow/pkg/bus"),
		now:    time.Now,
	}
}

// Publish stores event on subject. id must be derived from what caused the
// event, so that a retry publishes the same id and JetStream drops the
// duplicate; the returned PubAck says Duplicate then.
func (p *Publisher) Publish(ctx context.Context, subject, id string, event proto.Message) (*jetstream.PubAck, error) {
	out, err := p.Prepare(ctx, subject, id, event)
	if err != nil {
		return nil, err
	}
	ack, err := p.js.PublishMsg(ctx, out.Msg)
	if err != nil {
		err = fmt.Errorf("publish %s to %s: %w", id, subject, err)
		out.Done(false, err)
		return nil, err
	}
	out.Done(ack.Duplicate, nil)
	return ack, nil
}

// Outgoing is an event made ready to store, inside its producer span.
// Publish sends one at once; a caller that stores several together (the
// gateway's group commit, as one atomic batch) sends Msg itself and reports
// each one's outcome with Done.
type Outgoing struct {
	Msg  *nats.Msg
	span trace.Span
}

// Prepare marshals event into a message on subject with exactly the
// contract's headers, id as its Nats-Msg-Id, and starts its producer span,
// whose context the traceparent header carries. The caller must call Done.
func (p *Publisher) Prepare(ctx context.Context, subject, id string, event proto.Message) (*Outgoing, error) {
	if id == "" {
		return nil, ErrEmptyID
	}
	data, err := proto.Marshal(event)
	if err != nil {
		return nil, fmt.Errorf("marshal %s: %w", event.ProtoReflect().Descriptor().FullName(), err)
	}
	ctx, span := p.tracer.Start(ctx, "publish "+subject,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", subject),
			attribute.String("messaging.message.id", id),
		))
	return &Outgoing{Msg: &nats.Msg{Subject: subject, Data: data, Header: p.headers(ctx, id, event)}, span: span}, nil
}

// Done ends the message's span with its outcome: stored, already stored
// (duplicate), or not stored (err).
func (o *Outgoing) Done(duplicate bool, err error) {
	if err != nil {
		o.span.RecordError(err)
		o.span.SetStatus(codes.Error, "publish failed")
	} else {
		o.span.SetAttributes(attribute.Bool("messaging.nats.duplicate", duplicate))
	}
	o.span.End()
}

// headers returns exactly the contract's headers: Nats-Msg-Id, Content-Type,
// the CloudEvents attributes and lower-case traceparent / tracestate.
func (p *Publisher) headers(ctx context.Context, id string, event proto.Message) nats.Header {
	h := nats.Header{}
	h.Set(HeaderMsgID, id)
	h.Set(HeaderContentType, ContentTypeProtobuf)
	h[HeaderSpecVersion] = []string{SpecVersion}
	h[HeaderID] = []string{id}
	h[HeaderSource] = []string{p.source}
	h[HeaderType] = []string{string(event.ProtoReflect().Descriptor().FullName())}
	h[HeaderTime] = []string{p.now().UTC().Format(time.RFC3339Nano)}
	h[telemetry.HeaderTracestate] = []string{""}
	telemetry.Inject(ctx, h)
	return h
}
