package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// delivery is one authenticated delivery on its way to JetStream, from
// either transport: a webhook over HTTP, once its source's verifiers
// accepted it, or a SubmitLead over gRPC, once the interceptors accepted
// the caller and the request.
type delivery struct {
	src Source
	// id is the delivery id: MsgID(src.Name, id) makes a retry of the
	// delivery one message.
	id          string
	body        []byte
	received    time.Time
	headers     []*webhookv1.Header
	method      string
	path        string
	contentType string
	// logAttrs name the sender in the log line of a failure.
	logAttrs []any
}

// errNotPersisted is a delivery JetStream did not acknowledge within
// PublishTimeout: the sender is answered "retry later".
var errNotPersisted = errors.New("the delivery could not be persisted")

// accept is the gateway's one intake path: it persists d as a
// WebhookReceived on its source's subject, with MsgID as the Nats-Msg-Id,
// and returns after JetStream's ack whether the delivery was a duplicate
// (already stored within the dedup window). The error is errNotPersisted,
// logged here, or the caller's context error when the caller went away
// first; each transport turns the outcome into its answer.
func (g *Gateway) accept(ctx context.Context, d delivery) (duplicate bool, err error) {
	event := &webhookv1.WebhookReceived{
		Body:        d.body,
		Source:      d.src.Name,
		Kind:        d.src.Kind,
		DeliveryId:  d.id,
		ReceivedAt:  timestamppb.New(d.received),
		Headers:     d.headers,
		Method:      d.method,
		Path:        d.path,
		ContentType: d.contentType,
	}
	pctx, cancel := context.WithTimeout(ctx, g.cfg.PublishTimeout)
	defer cancel()
	duplicate, err = g.store(pctx, d.src.Subject(), MsgID(d.src.Name, d.id), event)
	if err != nil {
		if ctx.Err() != nil {
			g.log.WarnContext(ctx, "the sender went away before JetStream's ack; a retry with the same delivery id is stored once",
				append([]any{"source", d.src.Name, "delivery_id", d.id, "err", err}, d.logAttrs...)...)
			return false, ctx.Err()
		}
		attrs := append([]any{"source", d.src.Name, "delivery_id", d.id, "err", err}, d.logAttrs...)
		if bus.IsStreamFull(err) {
			g.log.ErrorContext(ctx, "WEBHOOKS is full and refuses the delivery; answering so that the sender retries (docs/operations.md, when a stream is full)", attrs...)
			return false, errNotPersisted
		}
		g.log.ErrorContext(ctx, "cannot persist the delivery; answering so that the sender retries", attrs...)
		return false, errNotPersisted
	}
	return duplicate, nil
}

// store publishes event with id: through the group commit when it is on,
// else alone. It returns after JetStream's ack whether it was a duplicate.
func (g *Gateway) store(ctx context.Context, subject, id string, event *webhookv1.WebhookReceived) (bool, error) {
	if g.commits == nil {
		ack, err := g.pub.Publish(ctx, subject, id, event)
		if err != nil {
			return false, err
		}
		return ack.Duplicate, nil
	}
	out, err := g.pub.Prepare(ctx, subject, id, event)
	if err != nil {
		return false, err
	}
	duplicate, err := g.commits.store(ctx, out.Msg)
	if err != nil {
		err = fmt.Errorf("publish %s to %s: %w", id, subject, err)
	}
	out.Done(duplicate, err)
	return duplicate, err
}
