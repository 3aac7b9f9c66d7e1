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
	"github.com/brokerflow/brokerflow/pkg/sources"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// Deps is what the caller owns.
type Deps = service.Deps

// Normalizer consumes webhook.received.lead.>.
type Normalizer struct {
	w       *service.Worker
	mappers map[string]*sources.Mapper
	leads   LeadReader
	region  string
}

// Option configures a Normalizer beyond its Config.
type Option func(*Normalizer)

// WithLeadReader sets what reads Facebook leads, instead of the Graph API
// client New builds from Config.Graph.
func WithLeadReader(r LeadReader) Option {
	return func(n *Normalizer) { n.leads = r }
}

// New returns a Normalizer. The sources (NORMALIZER_SOURCES_FILE, or the
// built-in idx and first_party) are compiled here: a bad expression is an
// error at start that names the source and the field. When a source sends
// Facebook leadgen ids, the Graph API settings are required too.
func New(cfg Config, deps Deps, opts ...Option) (*Normalizer, error) {
	mappers, err := loadMappers(cfg.SourcesFile)
	if err != nil {
		return nil, err
	}
	n := &Normalizer{mappers: mappers, region: strings.ToUpper(cfg.DefaultRegion)}
	for _, o := range opts {
		o(n)
	}
	if n.leads == nil && readsFacebook(mappers) {
		if err := cfg.Graph.Validate(); err != nil {
			return nil, err
		}
		n.leads = NewGraphClient(cfg.Graph)
	}
	n.w, err = service.NewWorker(service.WorkerConfig{
		Service:         bus.ServiceNormalizer,
		Consume:         cfg.Bus,
		Concurrency:     cfg.Concurrency,
		OpsAddr:         cfg.OpsAddr,
		ShutdownTimeout: cfg.ShutdownTimeout,
	}, deps)
	if err != nil {
		return nil, err
	}
	// No PauseOnThrottle: the one consumer serves every lead source, and
	// a Graph rate limit must not stop the IDX website's leads.
	n.w.Handle(bus.NormalizerWebhooks, n.Handle)
	return n, nil
}

// readsFacebook says whether a source sends Facebook leadgen ids, whose
// leads the normalizer reads from the Graph API.
func readsFacebook(mappers map[string]*sources.Mapper) bool {
	for _, m := range mappers {
		if m.Spec().Format == sources.FormatFacebookLeadgen {
			return true
		}
	}
	return false
}

// Run consumes until ctx is done, then drains.
func (n *Normalizer) Run(ctx context.Context) error { return n.w.Run(ctx) }

// Ready reports whether the normalizer can reach NATS.
func (n *Normalizer) Ready(ctx context.Context) error { return n.w.Ready(ctx) }

// Handle normalizes one WebhookReceived. It publishes with ids derived from
// the lead id, so running it twice for one webhook stores each lead once.
func (n *Normalizer) Handle(ctx context.Context, m *bus.Message) error {
	var wh webhookv1.WebhookReceived
	if err := proto.Unmarshal(m.Data, &wh); err != nil {
		return bus.Undecodable("decode WebhookReceived at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	ref := &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject}
	source := wh.GetSource()

	mapper, ok := n.mappers[source]
	if !ok {
		return n.reject(ctx, &wh, ref, wh.GetDeliveryId(), 0, fmt.Sprintf("no mapping is configured for source %q", source), nil)
	}
	items, err := n.mapDelivery(ctx, mapper, wh.GetBody(), wh.GetContentType())
	var merr *MappingError
	switch {
	case errors.As(err, &merr):
		return n.reject(ctx, &wh, ref, wh.GetDeliveryId(), 0, merr.Reason, nil)
	case err != nil:
		return fmt.Errorf("map %s delivery %s: %w", source, wh.GetDeliveryId(), err)
	case len(items) == 0:
		return n.reject(ctx, &wh, ref, wh.GetDeliveryId(), 0, "the webhook carries no lead", nil)
	}
	for i, it := range items {
		// A mapped delivery_id (the vendor's own lead id) keeps a lead's id
		// stable across the vendor's retries; else the webhook's is used.
		delivery := wh.GetDeliveryId()
		if d := it.fields["delivery_id"]; d != "" {
			delivery = d
		}
		if it.reason != "" {
			if err := n.reject(ctx, &wh, ref, delivery, i, it.reason, nil); err != nil {
				return err
			}
			continue
		}
		l, err := leadFromFields(it.fields)
		if err != nil {
			return bus.AsPermanent(fmt.Errorf("map %s delivery %s item %d: %w", source, wh.GetDeliveryId(), i, err))
		}
		l.LeadId = LeadID(source, delivery, i)
		l.LeadSource = source
		l.CrmSource = CRMSource(mapper.Spec().CRMSource, l.GetCrmSource(), source)
		l.DeliveryId = delivery
		l.ItemIndex = uint32(i)
		l.ReceivedAt = wh.GetReceivedAt()
		l.Webhook = ref
		l.Correlation = &commonv1.Correlation{LeadId: l.GetLeadId(), Source: source}
		if reason := Canonicalize(l, n.region); reason != "" {
			if err := n.reject(ctx, &wh, ref, delivery, i, reason, l); err != nil {
				return err
			}
			continue
		}
		subject := "lead.normalized." + source
		if _, err := n.w.Publisher().Publish(ctx, subject, "lead.normalized:"+l.GetLeadId(), l); err != nil {
			return err
		}
		logging.FromContext(ctx).Info("lead normalized", "lead_id", l.GetLeadId(), "source", source)
	}
	return nil
}

func (n *Normalizer) reject(ctx context.Context, wh *webhookv1.WebhookReceived, ref *commonv1.MessageRef, delivery string, index int, reason string, partial *leadv1.Lead) error {
	id := LeadID(wh.GetSource(), delivery, index)
	ev := &leadv1.LeadRejected{
		LeadId:      id,
		LeadSource:  wh.GetSource(),
		DeliveryId:  delivery,
		ItemIndex:   uint32(index),
		Reason:      reason,
		Partial:     partial,
		Webhook:     ref,
		Correlation: &commonv1.Correlation{LeadId: id, Source: wh.GetSource()},
	}
	if _, err := n.w.Publisher().Publish(ctx, "lead.rejected."+wh.GetSource(), "lead.rejected:"+id, ev); err != nil {
		return err
	}
	logging.FromContext(ctx).Warn("lead rejected", "lead_id", id, "source", wh.GetSource(), "reason", reason)
	return nil
}
