package tmssync

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms/skyslope"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// ChangePoller is a TMS that sends no webhooks for its sales: tms-sync asks
// it for the sales changed since a cursor. The SkySlope adapter is one.
type ChangePoller interface {
	Name() string
	// Sales returns the sales modified at or after since, oldest change
	// first.
	Sales(ctx context.Context, since time.Time) ([]skyslope.Sale, error)
}

// poller stores each changed sale in the WEBHOOKS stream, as
// webhook.received.tms.<tms>: the raw inbound log, as if the TMS had sent
// it. tms-sync's webhook consumer then handles it like a Dotloop webhook:
// a closed sale with its price becomes tms.transaction.closed, and what
// fails is retried, then recorded, and can be redriven. The delivery id is
// the sale and its modification time, so replicas polling at once, and a
// sale read again, store it once (within the duplicate window; the closing's
// own record covers the rest).
type poller struct {
	tms      ChangePoller
	js       jetstream.JetStream
	pub      *bus.Publisher
	interval time.Duration
	cursor   *service.Cursor // bound by run
}

func (p *poller) key() string { return bus.ServiceTMSSync + "." + p.tms.Name() }

// run polls every interval until ctx is done, from the cursor.
func (p *poller) run(ctx context.Context) error {
	c, err := service.BindCursor(ctx, p.js, p.key())
	if err != nil {
		return err
	}
	p.cursor = c
	return service.PollEvery(ctx, c, p.interval, "TMS "+p.tms.Name(), p.poll)
}

// poll reads the sales changed since the cursor, stores each, and moves the
// cursor to the newest change seen. The query includes the cursor's second,
// so a sale changed twice in it is read again; its delivery id is the same
// when nothing changed.
func (p *poller) poll(ctx context.Context) error {
	since, err := p.cursor.Load(ctx)
	if err != nil {
		return err
	}
	sales, err := p.tms.Sales(ctx, since)
	if err != nil {
		return fmt.Errorf("list sales changed since %s: %w", since.Format(time.RFC3339), err)
	}
	next := since
	subject := "webhook.received.tms." + p.tms.Name()
	for _, sale := range sales {
		body := []byte(sale.Raw)
		if len(body) == 0 {
			if body, err = json.Marshal(sale); err != nil {
				return err
			}
		}
		delivery := "poll:" + sale.SaleGUID + ":" + strconv.FormatInt(sale.ModifiedOn.UnixNano(), 10)
		wr := &webhookv1.WebhookReceived{
			Source: p.tms.Name(), Kind: webhookv1.Kind_KIND_TMS, DeliveryId: delivery, Body: body, ReceivedAt: timestamppb.Now(),
		}
		if _, err := p.pub.Publish(ctx, subject, "webhook:"+p.tms.Name()+":"+delivery, wr); err != nil {
			return fmt.Errorf("store sale %s: %w", sale.SaleGUID, err)
		}
		if sale.ModifiedOn.After(next) {
			next = sale.ModifiedOn
		}
	}
	if next.After(since) {
		return p.cursor.Save(ctx, next)
	}
	return nil
}
