// Package normalizer turns each verified lead webhook into canonical leads
// on lead.normalized.<source>, or into lead.rejected.<source> with a reason.
package normalizer

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/service"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// Deps is what the caller owns.
type Deps = service.Deps

// Mapper turns one webhook body into the leads it carries, not yet
// canonicalised. A *MappingError means the body will never map.
type Mapper func(body []byte) ([]*leadv1.Lead, error)

// Mappers are the payload mappings by source name.
var builtinMappers = map[string]Mapper{
	"idx": MapIDX,
}

// Normalizer consumes webhook.received.lead.>.
type Normalizer struct {
	*service.Worker
	mappers map[string]Mapper
	region  string
}

// New returns a Normalizer.
func New(cfg Config, deps Deps) (*Normalizer, error) {
	w, err := service.NewWorker(service.WorkerConfig{
		Service:         bus.ServiceNormalizer,
		Bus:             cfg.Bus,
		Concurrency:     cfg.Concurrency,
		OpsAddr:         cfg.OpsAddr,
		ShutdownTimeout: cfg.ShutdownTimeout,
	}, deps)
	if err != nil {
		return nil, err
	}
	n := &Normalizer{Worker: w, mappers: builtinMappers, region: strings.ToUpper(cfg.DefaultRegion)}
	for _, spec := range bus.ConsumersOf(bus.ServiceNormalizer) {
		w.Runner.Handle(spec, n.Handle)
	}
	return n, nil
}

// Run applies the declarations and consumes until ctx is done, then drains.
func (n *Normalizer) Run(ctx context.Context) error { return n.Worker.Run(ctx, nil) }

// Handle normalizes one WebhookReceived. It publishes with ids derived from
// the lead id, so running it twice for one webhook stores each lead once.
func (n *Normalizer) Handle(ctx context.Context, m *bus.Message) error {
	var wh webhookv1.WebhookReceived
	if err := proto.Unmarshal(m.Data, &wh); err != nil {
		return bus.Permanentf("decode WebhookReceived at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	ref := &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject}
	source := wh.GetSource()

	mapper, ok := n.mappers[source]
	if !ok {
		return n.reject(ctx, &wh, ref, 0, fmt.Sprintf("no mapping is configured for source %q", source), nil)
	}
	leads, err := mapper(wh.GetBody())
	var merr *MappingError
	switch {
	case errors.As(err, &merr):
		return n.reject(ctx, &wh, ref, 0, merr.Reason, nil)
	case err != nil:
		return fmt.Errorf("map %s delivery %s: %w", source, wh.GetDeliveryId(), err)
	case len(leads) == 0:
		return n.reject(ctx, &wh, ref, 0, "the webhook carries no lead", nil)
	}
	for i, l := range leads {
		l.LeadId = LeadID(source, wh.GetDeliveryId(), i)
		l.LeadSource = source
		l.DeliveryId = wh.GetDeliveryId()
		l.ItemIndex = uint32(i)
		l.ReceivedAt = wh.GetReceivedAt()
		l.Webhook = ref
		l.Correlation = &commonv1.Correlation{LeadId: l.GetLeadId(), Source: source}
		if reason := Canonicalize(l, n.region); reason != "" {
			if err := n.reject(ctx, &wh, ref, i, reason, l); err != nil {
				return err
			}
			continue
		}
		subject := "lead.normalized." + source
		if _, err := n.Runner.Publisher().Publish(ctx, subject, "lead.normalized:"+l.GetLeadId(), l); err != nil {
			return err
		}
		logging.FromContext(ctx).Info("lead normalized", "lead_id", l.GetLeadId(), "source", source)
	}
	return nil
}

func (n *Normalizer) reject(ctx context.Context, wh *webhookv1.WebhookReceived, ref *commonv1.MessageRef, index int, reason string, partial *leadv1.Lead) error {
	id := LeadID(wh.GetSource(), wh.GetDeliveryId(), index)
	ev := &leadv1.LeadRejected{
		LeadId:      id,
		LeadSource:  wh.GetSource(),
		DeliveryId:  wh.GetDeliveryId(),
		ItemIndex:   uint32(index),
		Reason:      reason,
		Partial:     partial,
		Webhook:     ref,
		Correlation: &commonv1.Correlation{LeadId: id, Source: wh.GetSource()},
	}
	if _, err := n.Runner.Publisher().Publish(ctx, "lead.rejected."+wh.GetSource(), "lead.rejected:"+id, ev); err != nil {
		return err
	}
	logging.FromContext(ctx).Warn("lead rejected", "lead_id", id, "source", wh.GetSource(), "reason", reason)
	return nil
}
