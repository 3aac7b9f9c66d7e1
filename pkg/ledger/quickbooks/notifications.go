package quickbooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/jsonscalar"
	"github.com/brokerflow/brokerflow/pkg/ledger"
)

// ErrNotification is wrapped by every error of ParseNotifications: a body
// that is neither of Intuit's webhook payloads.
var ErrNotification = errors.New("quickbooks: not a webhook notification")

// ParseNotifications reads a QuickBooks Online webhook body in either of
// Intuit's formats
// (https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks):
//
//   - the legacy object, {"eventNotifications":[{"realmId", "dataChangeEvent":
//     {"entities":[{"name","id","operation","lastUpdated"}]}}]};
//   - the CloudEvents array, [{"specversion":"1.0","id","type":
//     "qbo.payment.created.v1","time","intuitentityid","intuitaccountid"}].
//
// One body may name several companies and entities; every one is returned,
// in order. The signature is the gateway's business, not this function's.
func ParseNotifications(body []byte) ([]ledger.Change, error) {
	b := bytes.TrimSpace(body)
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty body", ErrNotification)
	}
	switch b[0] {
	case '{':
		return parseLegacy(b)
	case '[':
		return parseCloudEvents(b)
	}
	return nil, fmt.Errorf("%w: neither a JSON object nor an array", ErrNotification)
}

func parseLegacy(b []byte) ([]ledger.Change, error) {
	var p struct {
		EventNotifications []struct {
			RealmID         string `json:"realmId"`
			DataChangeEvent struct {
				Entities []struct {
					Name        string          `json:"name"`
					ID          json.RawMessage `json:"id"`
					Operation   string          `json:"operation"`
					LastUpdated string          `json:"lastUpdated"`
				} `json:"entities"`
			} `json:"dataChangeEvent"`
		} `json:"eventNotifications"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotification, err)
	}
	if p.EventNotifications == nil {
		return nil, fmt.Errorf("%w: no eventNotifications", ErrNotification)
	}
	var out []ledger.Change
	for i, n := range p.EventNotifications {
		for j, e := range n.DataChangeEvent.Entities {
			c := ledger.Change{Company: n.RealmID, Entity: e.Name, ID: jsonscalar.String(e.ID), Operation: e.Operation}
			if e.LastUpdated != "" {
				at, err := time.Parse(time.RFC3339Nano, e.LastUpdated)
				if err != nil {
					return nil, fmt.Errorf("%w: eventNotifications[%d].entities[%d].lastUpdated: %w", ErrNotification, i, j, err)
				}
				c.At = at
			}
			if err := complete(c); err != nil {
				return nil, fmt.Errorf("%w: eventNotifications[%d].entities[%d]: %w", ErrNotification, i, j, err)
			}
			out = append(out, c)
		}
	}
	return out, nil
}

func parseCloudEvents(b []byte) ([]ledger.Change, error) {
	var p []struct {
		SpecVersion string `json:"specversion"`
		ID          string `json:"id"`
		Type        string `json:"type"`
		Time        string `json:"time"`
		EntityID    string `json:"intuitentityid"`
		AccountID   string `json:"intuitaccountid"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotification, err)
	}
	out := make([]ledger.Change, 0, len(p))
	for i, e := range p {
		if e.SpecVersion != "1.0" {
			return nil, fmt.Errorf("%w: [%d]: specversion %q is not 1.0", ErrNotification, i, e.SpecVersion)
		}
		entity, op, err := cloudEventType(e.Type)
		if err != nil {
			return nil, fmt.Errorf("%w: [%d]: %w", ErrNotification, i, err)
		}
		c := ledger.Change{Company: e.AccountID, Entity: entity, ID: e.EntityID, Operation: op, EventID: e.ID}
		if e.Time != "" {
			at, err := time.Parse(time.RFC3339Nano, e.Time)
			if err != nil {
				return nil, fmt.Errorf("%w: [%d].time: %w", ErrNotification, i, err)
			}
			c.At = at
		}
		if err := complete(c); err != nil {
			return nil, fmt.Errorf("%w: [%d]: %w", ErrNotification, i, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func complete(c ledger.Change) error {
	switch {
	case c.Company == "":
		return errors.New("no company (realm) id")
	case c.Entity == "":
		return errors.New("no entity name")
	case c.ID == "":
		return errors.New("no entity id")
	}
	return nil
}

// Intuit's entity names, keyed by their lower case in a CloudEvent's type.
var entityNames = map[string]string{}

func init() {
	for _, n := range []string{
		"Account", "Bill", "BillPayment", "Budget", "Class", "CreditMemo", "Currency", "Customer",
		"Department", "Deposit", "Employee", "Estimate", "Invoice", "Item", "JournalCode",
		"JournalEntry", "Payment", "PaymentMethod", "Preferences", "Purchase", "PurchaseOrder",
		"RefundReceipt", "SalesReceipt", "TaxAgency", "Term", "TimeActivity", "Transfer",
		"Vendor", "VendorCredit",
	} {
		entityNames[strings.ToLower(n)] = n
	}
}

// The legacy payload's operation for each CloudEvent verb.
var operations = map[string]string{
	"created": "Create", "updated": "Update", "deleted": "Delete",
	"merged": "Merge", "voided": "Void", "emailed": "Emailed",
}

// cloudEventType reads "qbo.<entity>.<verb>.v<n>" into the legacy payload's
// entity name and operation, so that both formats read the same.
func cloudEventType(t string) (entity, op string, err error) {
	parts := strings.Split(t, ".")
	if len(parts) != 4 || parts[0] != "qbo" || !strings.HasPrefix(parts[3], "v") {
		return "", "", fmt.Errorf("type %q is not qbo.<entity>.<verb>.v<n>", t)
	}
	entity, ok := entityNames[parts[1]]
	if !ok {
		// An entity this version does not know keeps its name as sent: the
		// caller follows the entities it cares about and passes the rest by.
		entity = parts[1]
	}
	op, ok = operations[parts[2]]
	if !ok {
		return "", "", fmt.Errorf("type %q has an unknown verb %q", t, parts[2])
	}
	return entity, op, nil
}
