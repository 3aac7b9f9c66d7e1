package ledgersync

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/service"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// CDCCursorKey is the Change Data Capture poller's cursor in the cursors
// bucket.
const CDCCursorKey = bus.ServiceLedgerSync + ".quickbooks.cdc"

// cdcEntities are the entities the poller asks Change Data Capture for.
var cdcEntities = []string{"Payment", "Invoice"}

// pollChanges polls QuickBooks' Change Data Capture every
// LEDGERSYNC_QUICKBOOKS_CDC_INTERVAL from the cursor, for a company whose
// webhooks are not set up.
func (s *Syncer) pollChanges(ctx context.Context) error {
	cur, err := service.BindCursor(ctx, s.w.JetStream(), CDCCursorKey)
	if err != nil {
		return err
	}
	return service.PollEvery(ctx, cur, s.cfg.CDCInterval, "QuickBooks Change Data Capture", func(ctx context.Context) error {
		return s.pollOnce(ctx, cur)
	})
}

// pollOnce reads the payments and invoices changed since the cursor and
// stores each change in WEBHOOKS as webhook.received.ledger.quickbooks, in
// the legacy webhook's format, as if QuickBooks had sent it: the payments
// consumer then handles it as a webhook, with the same reads, records,
// retries and failure records. The delivery id is the change (entity, id,
// time), so replicas polling at once, and a change read again (the query
// includes the cursor's second), store it once within JetStream's duplicate
// window, and the document's record covers the rest. The cursor moves to
// the newest change stored. A cursor older than Change Data Capture looks
// back (30 days), or none, starts as far back as it goes.
func (s *Syncer) pollOnce(ctx context.Context, cur *service.Cursor) error {
	since, err := cur.Load(ctx)
	if err != nil {
		return err
	}
	if floor := s.now().Add(-quickbooks.CDCLookBack + time.Hour); since.Before(floor) {
		since = floor
	}
	company, err := s.payments.Company(ctx)
	if err != nil {
		return s.ledgerError("read the connected company", err)
	}
	changes, err := s.payments.ChangedSince(ctx, company, cdcEntities, since)
	if err != nil {
		return s.ledgerError("read the changes since "+since.Format(time.RFC3339), err)
	}
	name := s.ledger.Name()
	next := since
	for _, c := range changes {
		body, err := json.Marshal(map[string]any{"eventNotifications": []any{map[string]any{
			"realmId": c.Company, "dataChangeEvent": map[string]any{"entities": []any{map[string]any{
				"name": c.Entity, "id": c.ID, "operation": c.Operation, "lastUpdated": c.At.UTC().Format(time.RFC3339Nano),
			}}},
		}}})
		if err != nil {
			return err
		}
		delivery := "cdc:" + c.Company + ":" + c.Entity + ":" + c.ID + ":" + strconv.FormatInt(c.At.UnixNano(), 10)
		wr := &webhookv1.WebhookReceived{
			Source: name, Kind: webhookv1.Kind_KIND_LEDGER, DeliveryId: delivery, Body: body,
			ReceivedAt: timestamppb.New(s.now()), ContentType: "application/json",
		}
		if _, err := s.w.Publisher().Publish(ctx, "webhook.received.ledger."+name, "webhook:"+name+":"+delivery, wr); err != nil {
			return fmt.Errorf("store the change of %s %s: %w", c.Entity, c.ID, err)
		}
		if c.At.After(next) {
			next = c.At
		}
	}
	if next.After(since) {
		return cur.Save(ctx, next)
	}
	return nil
}
