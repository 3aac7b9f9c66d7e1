package ledgersync

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/logging"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	ledgerv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ledger/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// SubjectPaid is where ledger-sync announces a payment of a booked
// document.
const SubjectPaid = "ledger.commission.paid"

// Why a change is passed by, the label of the passed-by metric.
const (
	passedOtherCompany = "other_company"
	passedNotBooked    = "not_booked"
	passedEntity       = "entity"
	passedDeleted      = "deleted"
)

// docRecord is a booked document's record under
// ledger-sync.doc.<company>.<document>.<id>, written when it is booked: the
// transaction it books, and each payment applied to it with the
// CommissionPaid announced for it. It is how a payment's document leads back
// to the transaction, and what makes each (document, payment) announced once.
type docRecord struct {
	TxKey          string `json:"tx_key"`
	Tms            string `json:"tms"`
	TransactionID  string `json:"transaction_id"`
	Company        string `json:"company"`
	Document       string `json:"document"`
	DocumentID     string `json:"document_id"`
	DocumentNumber string `json:"document_number"`
	TotalMinor     int64  `json:"total_minor"`
	Currency       string `json:"currency"`
	LeadID         string `json:"lead_id,omitempty"`
	ContactID      string `json:"contact_id,omitempty"`
	// Paid holds each payment applied, by the ledger's payment id.
	Paid map[string]paidEntry `json:"paid,omitempty"`
}

type paidEntry struct {
	AmountMinor int64  `json:"amount_minor"`
	Event       []byte `json:"event"`
	Announced   bool   `json:"announced"`
}

// DocKey is the KV key of a booked document's record.
func DocKey(company, document, id string) string {
	return "ledger-sync.doc." + bus.KeyPart(company) + "." + bus.KeyPart(document) + "." + bus.KeyPart(id)
}

// indexDocument writes the booked document's record, once: a payment of
// the document finds the transaction through it.
func (s *Syncer) indexDocument(ctx context.Context, rec txRecord) error {
	var ev ledgerv1.CommissionBooked
	if err := proto.Unmarshal(rec.Event, &ev); err != nil {
		return bus.Permanentf("decode the kept CommissionBooked of %s: %w", rec.Booked.DocumentID, err)
	}
	b := rec.Booked
	key := DocKey(b.CompanyID, b.Document, b.DocumentID)
	var have docRecord
	rev, err := s.recs.Load(ctx, key, &have)
	if err != nil || rev > 0 {
		return err
	}
	d := docRecord{
		TxKey: TxKey(ev.GetTms(), ev.GetTransactionId()), Tms: ev.GetTms(), TransactionID: ev.GetTransactionId(),
		Company: b.CompanyID, Document: b.Document, DocumentID: b.DocumentID, DocumentNumber: b.DocumentNumber,
		TotalMinor: b.TotalMinor, Currency: ev.GetGross().GetCurrencyCode(),
		LeadID: ev.GetCorrelation().GetLeadId(), ContactID: ev.GetCorrelation().GetContactId(),
	}
	if _, err := s.recs.Store(ctx, key, d, 0); err != nil && !errors.Is(err, bus.ErrConflict) {
		return fmt.Errorf("record the booked document %s: %w", key, err)
	}
	return nil
}

// HandleLedgerWebhook follows one ledger notification
// (webhook.received.ledger.<ledger>): a QuickBooks webhook in either of
// Intuit's formats, or a change ledger-sync's Change Data Capture poller
// stored. For each Payment of the connected company it reads the payment,
// and for each changed Invoice or SalesReceipt the payments the document
// links; each payment applied to a document ledger-sync booked is announced
// once per (document, payment) as ledger.commission.paid. Other companies,
// other entities and documents Brokerflow did not book are passed by.
func (s *Syncer) HandleLedgerWebhook(ctx context.Context, m *bus.Message) error {
	var wr webhookv1.WebhookReceived
	if err := proto.Unmarshal(m.Data, &wr); err != nil {
		return bus.Undecodable("decode WebhookReceived at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	if wr.GetSource() != s.ledger.Name() {
		return bus.WithCode("ledger.unknown_ledger", bus.Permanentf("a webhook of %q at %s/%d, and ledger-sync follows %q (LEDGERSYNC_LEDGER): nothing done", wr.GetSource(), m.Stream, m.Sequence, s.ledger.Name()))
	}
	changes, err := quickbooks.ParseNotifications(wr.GetBody())
	if err != nil {
		return bus.Undecodable("the QuickBooks notification at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	company, err := s.payments.Company(ctx)
	if err != nil {
		return s.ledgerError("read the connected company", err)
	}
	log := logging.FromContext(ctx)
	cause := &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject}
	for _, c := range changes {
		switch {
		case c.Company != company:
			s.passBy(ctx, passedOtherCompany, c, "a company Brokerflow is not connected to")
		case c.Operation == "Delete" || c.Operation == "Void" || c.Operation == "Merge":
			s.passBy(ctx, passedDeleted, c, "a payment deleted or voided is not followed")
		case c.Entity == "Payment":
			if err := s.followPayment(ctx, company, c.ID, cause); err != nil {
				return err
			}
		case c.Entity == "Invoice" || c.Entity == "SalesReceipt":
			doc := ledger.DocumentInvoice
			if c.Entity == "SalesReceipt" {
				doc = ledger.DocumentSalesReceipt
			}
			if err := s.followDocument(ctx, company, doc, c, cause); err != nil {
				return err
			}
		default:
			s.passBy(ctx, passedEntity, c, "not a payment or a document")
		}
	}
	log.Debug("ledger notification followed", "changes", len(changes))
	return nil
}

// adopt writes the record of a document ledger-sync booked whose record is
// missing, and reports whether the document is ledger-sync's. The document
// names its booking (ledger.DocumentState.BookingKey), and the booking's
// transaction record says what was booked: a record not written (a crash
// between the booking's record and the document's, or a booking by a
// version before document records) is written from it now. A booking whose
// ledger call was made and whose answer is not recorded yet (a crash, the
// closing not yet redelivered) makes the payment wait: it is retried on the
// schedule, and becomes a failure record if the booking is never recorded.
// A document that names no booking of this installation is passed by.
func (s *Syncer) adopt(ctx context.Context, company string, st ledger.DocumentState) (bool, error) {
	c := ledger.Change{Company: company, Entity: st.Document, ID: st.DocumentID}
	tmsName, txID, ok := strings.Cut(st.BookingKey, ":")
	if !ok {
		s.passBy(ctx, passedNotBooked, c, "a document ledger-sync did not book")
		return false, nil
	}
	var rec txRecord
	rev, err := s.recs.Load(ctx, TxKey(tmsName, txID), &rec)
	if err != nil {
		return false, err
	}
	switch {
	case rev == 0:
		s.passBy(ctx, passedNotBooked, c, "a document naming a booking this installation has no record of")
		return false, nil
	case rec.State != stateBooked:
		return false, bus.WithCode("ledger.booking_unrecorded", fmt.Errorf(
			"a payment of %s %s, which transaction %s's booking made: that booking is not recorded yet (its closing is being booked again); retrying",
			st.Document, st.DocumentID, txID))
	case rec.Booked.CompanyID != company || rec.Booked.Document != st.Document || rec.Booked.DocumentID != st.DocumentID:
		s.passBy(ctx, passedNotBooked, c, "a document naming a booking recorded with another document")
		return false, nil
	}
	logging.FromContext(ctx).Info("the record of a booked document was missing; written from its booking", "document_id", st.DocumentID, "transaction_id", txID)
	return true, s.indexDocument(ctx, rec)
}

// followDocument follows a changed document Brokerflow booked through the
// payments it links.
func (s *Syncer) followDocument(ctx context.Context, company, doc string, c ledger.Change, cause *commonv1.MessageRef) error {
	var rec docRecord
	rev, err := s.recs.Load(ctx, DocKey(company, doc, c.ID), &rec)
	if err != nil {
		return err
	}
	st, err := s.payments.Document(ctx, company, doc, c.ID)
	if errors.Is(err, ledger.ErrNotFound) {
		s.passBy(ctx, passedDeleted, c, "the document is gone from the ledger")
		return nil
	}
	if err != nil {
		return s.ledgerError("read "+doc+" "+c.ID, err)
	}
	if rev == 0 {
		if ours, err := s.adopt(ctx, company, st); err != nil || !ours {
			return err
		}
	}
	for _, p := range st.Payments {
		if e, seen := rec.Paid[p]; seen && e.Announced {
			continue // announced already: nothing to read
		}
		if err := s.followPayment(ctx, company, p, cause); err != nil {
			return err
		}
	}
	return nil
}

// followPayment reads a payment and announces its part of each booked
// document it pays.
func (s *Syncer) followPayment(ctx context.Context, company, id string, cause *commonv1.MessageRef) error {
	p, err := s.payments.Payment(ctx, company, id)
	if errors.Is(err, ledger.ErrNotFound) {
		s.passBy(ctx, passedDeleted, ledger.Change{Company: company, Entity: "Payment", ID: id}, "the payment is gone from the ledger")
		return nil
	}
	if err != nil {
		return s.ledgerError("read payment "+id, err)
	}
	for _, a := range p.Applied {
		if err := s.announcePaid(ctx, p, a, cause); err != nil {
			return err
		}
	}
	return nil
}

// announcePaid records the payment on the document's record, once, with the
// CommissionPaid to announce, announces it (message id: the company, the
// document and the payment), and marks it announced. A payment announced
// already publishes nothing; one recorded and not marked (a crash between)
// is announced again, the same event with the same message id, which
// JetStream drops if the first went through.
func (s *Syncer) announcePaid(ctx context.Context, p ledger.Payment, a ledger.Applied, cause *commonv1.MessageRef) error {
	key := DocKey(p.Company, a.Document, a.DocumentID)
	for range casAttempts {
		var rec docRecord
		rev, err := s.recs.Load(ctx, key, &rec)
		if err != nil {
			return err
		}
		if rev == 0 {
			st, err := s.payments.Document(ctx, p.Company, a.Document, a.DocumentID)
			if errors.Is(err, ledger.ErrNotFound) {
				s.passBy(ctx, passedDeleted, ledger.Change{Company: p.Company, Entity: a.Document, ID: a.DocumentID}, "the document is gone from the ledger")
				return nil
			}
			if err != nil {
				return s.ledgerError("read "+a.Document+" "+a.DocumentID, err)
			}
			if ours, err := s.adopt(ctx, p.Company, st); err != nil || !ours {
				return err
			}
			continue // its record is written now: read it
		}
		if e, ok := rec.Paid[p.ID]; ok {
			if e.AmountMinor != a.AmountMinor {
				logging.FromContext(ctx).Warn("a payment announced before now applies another amount; not announced again (a changed payment is not followed)",
					"payment_id", p.ID, "document_id", a.DocumentID, "announced_minor", e.AmountMinor, "now_minor", a.AmountMinor)
			}
			if e.Announced {
				return nil
			}
			if err := s.publishPaid(ctx, e.Event); err != nil {
				return err
			}
			return s.markAnnounced(ctx, key, p.ID)
		}
		var paid int64
		for _, e := range rec.Paid {
			paid += e.AmountMinor
		}
		balance := max(rec.TotalMinor-paid-a.AmountMinor, 0)
		currency := rec.Currency
		if p.Currency != "" {
			currency = p.Currency
		}
		amount := func(v int64) *commonv1.Money { return &commonv1.Money{AmountMinor: v, CurrencyCode: currency} }
		ev := &ledgerv1.CommissionPaid{
			TransactionId: rec.TransactionID, Ledger: s.ledger.Name(), CompanyId: p.Company,
			DocumentType: a.Document, DocumentId: a.DocumentID, PaymentId: p.ID,
			Amount: amount(a.AmountMinor), PaidDate: p.Date, Balance: amount(balance), FullyPaid: balance == 0,
			ObservedAt:  timestamppb.New(s.now()),
			Correlation: &commonv1.Correlation{LeadId: rec.LeadID, ContactId: rec.ContactID, TransactionId: rec.TransactionID},
			Cause:       cause,
		}
		b, err := proto.Marshal(ev)
		if err != nil {
			return err
		}
		if rec.Paid == nil {
			rec.Paid = map[string]paidEntry{}
		}
		rec.Paid[p.ID] = paidEntry{AmountMinor: a.AmountMinor, Event: b}
		if _, err := s.recs.Store(ctx, key, rec, rev); errors.Is(err, bus.ErrConflict) {
			continue // another payment of the document, or this one on another replica
		} else if err != nil {
			return err
		}
		logging.FromContext(ctx).Info("commission paid", "transaction_id", rec.TransactionID, "document_id", a.DocumentID,
			"payment_id", p.ID, "amount_minor", a.AmountMinor, "balance_minor", balance)
		bus.Crash(ctx, CrashAfterPaidRecord)
		if err := s.publishPaid(ctx, b); err != nil {
			return err
		}
		bus.Crash(ctx, CrashAfterPaidAnnounced)
		return s.markAnnounced(ctx, key, p.ID)
	}
	return fmt.Errorf("the record %s changed concurrently %d times; will retry", key, casAttempts)
}

// markAnnounced marks a payment of the document's record announced.
func (s *Syncer) markAnnounced(ctx context.Context, key, paymentID string) error {
	for range casAttempts {
		var rec docRecord
		rev, err := s.recs.Load(ctx, key, &rec)
		if err != nil {
			return err
		}
		e, ok := rec.Paid[paymentID]
		if !ok || e.Announced {
			return nil
		}
		e.Announced = true
		rec.Paid[paymentID] = e
		if _, err := s.recs.Store(ctx, key, rec, rev); errors.Is(err, bus.ErrConflict) {
			continue
		} else if err != nil {
			return err
		}
		return nil
	}
	return fmt.Errorf("the record %s changed concurrently %d times; will retry", key, casAttempts)
}

// Crash points of a payment: after its record, before its announcement;
// after its announcement, before the record says so.
const (
	CrashAfterPaidRecord    bus.CrashPoint = "ledger-sync.after_paid_record"
	CrashAfterPaidAnnounced bus.CrashPoint = "ledger-sync.after_paid_announced"
)

// PaidMsgID is the message id of a (document, payment)'s CommissionPaid.
func PaidMsgID(company, document, documentID, paymentID string) string {
	return SubjectPaid + ":" + company + ":" + document + ":" + documentID + ":" + paymentID
}

func (s *Syncer) publishPaid(ctx context.Context, b []byte) error {
	var ev ledgerv1.CommissionPaid
	if err := proto.Unmarshal(b, &ev); err != nil {
		return bus.Permanentf("decode a kept CommissionPaid: %w", err)
	}
	_, err := s.w.Publisher().Publish(ctx, SubjectPaid, PaidMsgID(ev.GetCompanyId(), ev.GetDocumentType(), ev.GetDocumentId(), ev.GetPaymentId()), &ev)
	return err
}

// ledgerError makes a refused connection permanent with the command to
// run; anything else is retried.
func (s *Syncer) ledgerError(what string, err error) error {
	if errors.Is(err, ledger.ErrReconnect) {
		return bus.WithCode("ledger.reconnect", bus.Permanentf("%s in %s: %v: run `brokerflow connect %s` to connect the ledger again, then redrive this message (brokerflow failures redrive)", what, s.ledger.Name(), err, s.ledger.Name()))
	}
	return fmt.Errorf("%s in %s: %w", what, s.ledger.Name(), err)
}

// passBy counts and logs (at debug) a change ledger-sync does not follow.
func (s *Syncer) passBy(ctx context.Context, reason string, c ledger.Change, why string) {
	if s.passed != nil {
		s.passed.WithLabelValues(reason).Inc()
	}
	logging.FromContext(ctx).Debug("ledger change passed by: "+why, "reason", reason, "company", c.Company, "entity", c.Entity, "id", c.ID, "operation", c.Operation)
}
