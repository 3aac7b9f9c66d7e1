package tmssync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/money"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/pkg/tms/skyslope"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	tmsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// soldRecord is the first sight of a transaction marked sold without its
// financials, under tms-sync.sold.<tms>.<id>.
type soldRecord struct {
	First time.Time `json:"first"`
}

// HandleWebhook handles one TMS delivery: a Dotloop webhook, or a SkySlope
// sale the poller stored (poll.go). A transaction that is now sold (closed)
// with its financials becomes tms.transaction.closed.
func (s *Syncer) HandleWebhook(ctx context.Context, m *bus.Message) error {
	var wr webhookv1.WebhookReceived
	if err := proto.Unmarshal(m.Data, &wr); err != nil {
		return bus.Undecodable("decode WebhookReceived at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	log := logging.FromContext(ctx)
	if wr.GetSource() != s.tms.Name() {
		log.Info("TMS webhook ignored: not from the configured TMS", "source", wr.GetSource(), "tms", s.tms.Name())
		return nil
	}
	var tx tms.Transaction
	var details tms.Details
	switch s.tms.Name() {
	case skyslope.Name:
		sale, err := skyslope.ParseSale(wr.GetBody())
		if err != nil {
			return bus.WithCode("tms.bad_webhook", bus.Permanentf("parse %s delivery %s: %w", wr.GetSource(), wr.GetDeliveryId(), err))
		}
		c := sale.Change()
		tx, details = c.Transaction, c.Details
		if !s.sold(tx) {
			log.Info("sale changed, not closed", "transaction_id", tx.ID, "status", tx.Status)
			return nil
		}
	default:
		n, err := dotloop.ParseWebhook(wr.GetBody())
		if err != nil {
			return bus.WithCode("tms.bad_webhook", bus.Permanentf("parse %s webhook %s: %w", wr.GetSource(), wr.GetDeliveryId(), err))
		}
		if n.Transaction == "" {
			log.Info("TMS webhook ignored: not about a transaction", "event", n.Event, "event_id", n.EventID)
			return nil
		}
		tx, err = s.tms.Transaction(ctx, n.Profile, n.Transaction)
		if errors.Is(err, tms.ErrNotFound) {
			// Recorded, never dropped: a failure record an operator can redrive.
			return bus.WithCode("tms.unknown_transaction", bus.Permanentf("%s webhook %s names transaction %s in profile %s, which the TMS does not show", s.tms.Name(), n.EventID, n.Transaction, n.Profile))
		}
		if err != nil {
			return fmt.Errorf("read transaction %s: %w", n.Transaction, err)
		}
		if !s.sold(tx) {
			log.Info("transaction updated, not sold", "transaction_id", tx.ID, "status", tx.Status)
			return nil
		}
		if details, err = s.tms.Details(ctx, tx.Profile, tx.ID); err != nil {
			return fmt.Errorf("read details of transaction %s: %w", tx.ID, err)
		}
	}
	return s.closeTransaction(ctx, tx, details, m)
}

func (s *Syncer) sold(tx tms.Transaction) bool { return strings.EqualFold(tx.Status, s.cfg.SoldStatus) }

// closedRecord is the facts hash last announced of a transaction, under
// tms-sync.closed.<tms>.<id>: the same closing read again after the
// duplicate window is not announced twice.
type closedRecord struct {
	FactsHash string `json:"facts_hash"`
}

// closeTransaction announces the closing of tx, sold, from its details.
func (s *Syncer) closeTransaction(ctx context.Context, tx tms.Transaction, details tms.Details, m *bus.Message) error {
	log := logging.FromContext(ctx)
	f, missing := s.facts(details)
	if len(missing) > 0 {
		return s.incomplete(ctx, tx, missing)
	}
	var rec txRecord
	if _, err := s.load(ctx, txKey(s.tms.Name(), tx.ID), &rec); err != nil {
		return err
	}
	ev := s.closedEvent(tx, f, rec, m)
	key := closedKey(s.tms.Name(), tx.ID)
	var last closedRecord
	rev, err := s.load(ctx, key, &last)
	if err != nil {
		return err
	}
	if last.FactsHash == ev.GetFactsHash() {
		log.Info("closing announced already", "transaction_id", tx.ID, "facts_hash", ev.GetFactsHash())
	} else {
		if _, err := s.w.Publisher().Publish(ctx, SubjectClosed, SubjectClosed+":"+s.tms.Name()+":"+tx.ID+":"+ev.GetFactsHash(), ev); err != nil {
			return err
		}
		if _, err := s.store(ctx, key, closedRecord{FactsHash: ev.GetFactsHash()}, rev); err != nil && !errors.Is(err, errConflict) {
			return err
		}
		log.Info("transaction closed", "transaction_id", tx.ID, "facts_hash", ev.GetFactsHash(), "contact_id", rec.ContactID)
	}
	if rec.EpisodeKey != "" {
		return s.endEpisode(ctx, rec.CRM, rec.ContactID, rec.EpisodeN, "transaction "+tx.ID+" closed")
	}
	return nil
}

// facts reads the closing from the details with the configured mapping;
// missing names the required facts absent or unreadable. A TMS whose API
// gives no commission (SkySlope) closes with the commission marked
// unavailable rather than missing.
func (s *Syncer) facts(d tms.Details) (tms.Closing, []string) {
	f := tms.ClosingFields{
		Price: s.cfg.PriceField, Commission: s.cfg.CommissionField, CloseDate: s.cfg.CloseDateField,
		Referral: s.cfg.ReferralField, ReferralSource: s.cfg.ReferralSourceField,
	}
	if !s.tms.Capabilities().Commission {
		f.Commission = ""
	}
	c, missing := f.ReadClosing(d)
	if f.Commission == "" {
		c.Unavailable = "gross commission: " + s.tms.Name() + "'s public API does not expose commission fields"
	}
	return c, missing
}

// incomplete waits TMSSYNC_SOLD_WAIT from the first sight of a sale
// without its financials, then fails for good, naming what is missing.
func (s *Syncer) incomplete(ctx context.Context, tx tms.Transaction, missing []string) error {
	key := soldKey(s.tms.Name(), tx.ID)
	var rec soldRecord
	rev, err := s.load(ctx, key, &rec)
	if err != nil {
		return err
	}
	if rev == 0 {
		rec.First = s.now().UTC()
		if _, err := s.store(ctx, key, rec, 0); err != nil && !errors.Is(err, errConflict) {
			return err
		}
	}
	what := strings.Join(missing, ", ")
	if left := rec.First.Add(s.cfg.SoldWait).Sub(s.now()); left > 0 {
		return bus.RetryAfter(fmt.Errorf("transaction %s is sold without %s; waiting %s for them", tx.ID, what, left.Round(time.Second)), min(left, time.Hour))
	}
	return bus.WithCode("tms.closing_incomplete", bus.Permanentf("transaction %s was marked sold %s ago without %s: fill them in the TMS (its next update closes it) or redrive this message", tx.ID, s.cfg.SoldWait, what))
}

func (s *Syncer) closedEvent(tx tms.Transaction, f tms.Closing, rec txRecord, m *bus.Message) *tmsv1.TransactionClosed {
	if tx.Type == "" {
		tx.Type = rec.Type // SkySlope's sales do not say; the file tms-sync opened did
	}
	money := func(v int64) *commonv1.Money {
		if v <= 0 {
			return nil
		}
		return &commonv1.Money{AmountMinor: v, CurrencyCode: s.cfg.Currency}
	}
	agentID := rec.AgentID
	if agentID == "" && tx.Profile != "" { // SkySlope's sales name no profile
		if a, ok := s.cfg.Agents.ForDotloopProfile(tx.Profile); ok {
			agentID = a.ID
		}
	}
	side := ""
	if r, ok := roles[tx.Type]; ok {
		side = r.side
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s|%d|%d|%s|%d|%s|%s|%s", s.cfg.Currency, f.PriceMinor, f.CommissionMinor, f.CloseDate, f.ReferralMinor, f.ReferralSource, agentID, side)
	if f.Unavailable != "" {
		fmt.Fprintf(h, "|%s", f.Unavailable) // absent before the field existed: Dotloop's hashes are unchanged
	}
	hash := hex.EncodeToString(h.Sum(nil))[:16]
	return &tmsv1.TransactionClosed{
		TransactionId: tx.ID, Tms: s.tms.Name(), ProfileId: tx.Profile, Status: tx.Status, SalePrice: money(f.PriceMinor),
		CloseDate: f.CloseDate, FactsHash: hash, ClosedAt: timestamppb.New(s.now()), TransactionType: tx.Type, Name: tx.Name,
		Commission:  &tmsv1.Commission{Gross: money(f.CommissionMinor), AgentId: agentID, Side: side, Referral: money(f.ReferralMinor), ReferralSource: f.ReferralSource, Unavailable: f.Unavailable},
		Correlation: &commonv1.Correlation{LeadId: rec.LeadID, ContactId: rec.ContactID, TransactionId: tx.ID},
		Webhook:     &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject},
	}
}

// ParseMoney reads an amount as an agent types it ("$525,000.00",
// "525000", "1,250.5") into minor units (cents).
func ParseMoney(s string) (int64, error) { return money.ParseMinor(s) }
