package quickbooks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
)

// CDCLookBack is how far back Intuit's Change Data Capture looks.
const CDCLookBack = 30 * 24 * time.Hour

var _ ledger.Payments = (*QuickBooks)(nil)

// Company is the connected company's realm id.
func (q *QuickBooks) Company(ctx context.Context) (string, error) { return q.realm(ctx) }

type linkedTxn struct {
	TxnID   string `json:"TxnId"`
	TxnType string `json:"TxnType"`
}

type payment struct {
	ID          string  `json:"Id"`
	TxnDate     string  `json:"TxnDate"`
	TotalAmt    float64 `json:"TotalAmt"`
	CurrencyRef *ref    `json:"CurrencyRef,omitempty"`
	Line        []struct {
		Amount    float64     `json:"Amount"`
		LinkedTxn []linkedTxn `json:"LinkedTxn"`
	} `json:"Line"`
}

type salesDoc struct {
	ID          string      `json:"Id"`
	TotalAmt    float64     `json:"TotalAmt"`
	Balance     float64     `json:"Balance"`
	LinkedTxn   []linkedTxn `json:"LinkedTxn"`
	PrivateMemo string      `json:"PrivateMemo"`
}

// The document type of a LinkedTxn's TxnType.
var documentOf = map[string]string{"Invoice": ledger.DocumentInvoice, "SalesReceipt": ledger.DocumentSalesReceipt}

// read GETs entity id of realm into out, under its entity's name; a 610
// (Object Not Found) or a 404 wraps ledger.ErrNotFound.
func (q *QuickBooks) read(ctx context.Context, realm, entity, id string, out any) error {
	var wrap map[string]any
	_, err := q.api.Do(ctx, "read "+strings.ToLower(entity), http.MethodGet, path(realm, strings.ToLower(entity)+"/"+url.PathEscape(id), nil), nil, &wrap)
	var ve *vendorapi.Error
	if errors.As(err, &ve) && (ve.Code == "610" || ve.Status == http.StatusNotFound) {
		return fmt.Errorf("quickbooks: %s %s of company %s: %w: %w", entity, id, realm, ledger.ErrNotFound, err)
	}
	if err != nil {
		return reconnect(err)
	}
	return remarshal(wrap[entity], out)
}

// Payment reads a Payment: the part of each line applied to an Invoice or a
// SalesReceipt (LinkedTxn), summed per document.
func (q *QuickBooks) Payment(ctx context.Context, company, id string) (ledger.Payment, error) {
	var p payment
	if err := q.read(ctx, company, "Payment", id, &p); err != nil {
		return ledger.Payment{}, err
	}
	out := ledger.Payment{Company: company, ID: p.ID, Date: p.TxnDate, TotalMinor: cents(p.TotalAmt)}
	if p.CurrencyRef != nil {
		out.Currency = p.CurrencyRef.Value
	}
	for _, l := range p.Line {
		for _, t := range l.LinkedTxn {
			doc, ok := documentOf[t.TxnType]
			if !ok || t.TxnID == "" {
				continue // a credit memo, a journal entry: not a document Brokerflow books
			}
			i := slices.IndexFunc(out.Applied, func(a ledger.Applied) bool { return a.Document == doc && a.DocumentID == t.TxnID })
			if i < 0 {
				out.Applied = append(out.Applied, ledger.Applied{Document: doc, DocumentID: t.TxnID})
				i = len(out.Applied) - 1
			}
			out.Applied[i].AmountMinor += cents(l.Amount)
			break // a line's amount is applied to its first document
		}
	}
	return out, nil
}

// Document reads an Invoice or a SalesReceipt: its total, its balance, and
// the payments it links.
func (q *QuickBooks) Document(ctx context.Context, company, document, id string) (ledger.DocumentState, error) {
	entity := "Invoice"
	if document == ledger.DocumentSalesReceipt {
		entity = "SalesReceipt"
	}
	var d salesDoc
	if err := q.read(ctx, company, entity, id, &d); err != nil {
		return ledger.DocumentState{}, err
	}
	out := ledger.DocumentState{Document: document, DocumentID: d.ID, TotalMinor: cents(d.TotalAmt), BalanceMinor: cents(d.Balance), BookingKey: bookingKeyOf(d.PrivateMemo)}
	for _, t := range d.LinkedTxn {
		if t.TxnType == "Payment" {
			out.Payments = append(out.Payments, t.TxnID)
		}
	}
	return out, nil
}

// ChangedSince reads Change Data Capture
// (https://developer.intuit.com/app/developer/qbo/docs/learn/explore-the-quickbooks-online-api/change-data-capture):
// GET /cdc?entities=…&changedSince=…, which looks back 30 days at most and
// answers 1,000 objects at most. Each changed object is a Change with its
// MetaData.LastUpdatedTime; a deleted one (status "Deleted") has the
// operation Delete, the others Update.
func (q *QuickBooks) ChangedSince(ctx context.Context, company string, entities []string, since time.Time) ([]ledger.Change, error) {
	var resp struct {
		CDCResponse []struct {
			QueryResponse []map[string]any `json:"QueryResponse"`
		} `json:"CDCResponse"`
	}
	v := url.Values{"entities": {strings.Join(entities, ",")}, "changedSince": {since.UTC().Format(time.RFC3339)}}
	if _, err := q.api.Do(ctx, "change data capture", http.MethodGet, path(company, "cdc", v), nil, &resp); err != nil {
		return nil, reconnect(err)
	}
	var out []ledger.Change
	for _, c := range resp.CDCResponse {
		for _, qr := range c.QueryResponse {
			for _, entity := range entities {
				var objs []struct {
					ID       string `json:"Id"`
					Status   string `json:"status"`
					MetaData struct {
						LastUpdatedTime string `json:"LastUpdatedTime"`
					} `json:"MetaData"`
				}
				if err := remarshal(qr[entity], &objs); err != nil {
					return nil, fmt.Errorf("quickbooks: change data capture's %s: %w", entity, err)
				}
				for _, o := range objs {
					ch := ledger.Change{Company: company, Entity: entity, ID: o.ID, Operation: "Update"}
					if o.Status == "Deleted" {
						ch.Operation = "Delete"
					}
					if at, err := time.Parse(time.RFC3339, o.MetaData.LastUpdatedTime); err == nil {
						ch.At = at
					}
					out = append(out, ch)
				}
			}
		}
	}
	slices.SortStableFunc(out, func(a, b ledger.Change) int { return a.At.Compare(b.At) })
	return out, nil
}
