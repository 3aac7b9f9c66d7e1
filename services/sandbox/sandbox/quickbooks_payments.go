package sandbox

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// QuickBooks Online's payments, webhooks and Change Data Capture.
//
// What it takes from Intuit's documentation
// (https://developer.intuit.com/app/developer/qbo/docs/api/accounting/all-entities/payment,
// https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks,
// https://developer.intuit.com/app/developer/qbo/docs/learn/explore-the-quickbooks-online-api/change-data-capture):
//   - A Payment needs CustomerRef and TotalAmt; each Line applies Amount to the transactions in
//     its LinkedTxn ([{TxnId, TxnType: "Invoice"}]). The invoice's Balance falls by it.
//   - Webhooks carry ids only and may batch several entities: the legacy
//     {"eventNotifications":[{"realmId","dataChangeEvent":{"entities":[{"name","id","operation",
//     "lastUpdated"}]}}]}, or the CloudEvents array [{"specversion":"1.0","id","source","type":
//     "qbo.payment.created.v1","time","intuitentityid","intuitaccountid","data":{}}]. Each is
//     signed in intuit-signature: base64 HMAC-SHA256 of the raw body, keyed by the app's
//     verifier token.
//   - GET …/cdc?entities=<list>&changedSince=<date-time> answers {"CDCResponse":[{"QueryResponse":
//     [{"<Entity>":[…],"startPosition","maxResults"}, …]}],"time"}, with the entities changed at
//     or after changedSince; it looks back 30 days at most and answers 1,000 objects at most.
//
// What it assumes:
//   - A payment applies to Invoices only (a SalesReceipt is paid when it is made); a line may not
//     apply more than the invoice's balance, nor a payment's lines more than its TotalAmt. A
//     payment is never updated or deleted here.
//   - One payment sends one webhook body naming both the Payment (Create) and each Invoice it
//     paid (Update): the batching Intuit describes.
//   - A changedSince older than 30 days is a 400 ValidationFault (code 4001).

// QBPayment is the Payment entity.
const QBPayment = "Payment"

// Webhook formats of QuickBooksOptions.WebhookFormat.
const (
	QBWebhookLegacy      = "legacy"
	QBWebhookCloudEvents = "cloudevents"
)

// DefaultQuickBooksVerifierToken is the verifier token of the sandbox's app.
const DefaultQuickBooksVerifierToken = "sandbox-quickbooks-verifier-token"

// qbCDCLookBack is how far back Change Data Capture looks, qbCDCMax how many objects it answers.
const (
	qbCDCLookBack = 30 * 24 * time.Hour
	qbCDCMax      = 1000
)

// QBWebhooks is where and how the emulation sends its webhooks: the app's webhook endpoint, its
// verifier token, the payload format, and whether it sends at all (off, a brokerage polls
// Change Data Capture instead).
type QBWebhooks struct {
	URL           string `json:"url"`
	VerifierToken string `json:"verifierToken"`
	Format        string `json:"format"`
	Enabled       bool   `json:"enabled"`
}

// SignQuickBooks returns intuit-signature for body: base64 HMAC-SHA256 keyed by the verifier
// token.
func SignQuickBooks(verifierToken string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(verifierToken))
	_, _ = mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// qbDelivery is one webhook the emulation sent.
type qbDelivery struct {
	Delivery
	Format   string   `json:"format"`
	Entities []string `json:"entities"`
}

// qbChange is one entity changed, as a webhook names it.
type qbChange struct {
	entity, id, op string
	at             time.Time
}

// SetWebhooks sets where and how webhooks are sent; a format other than legacy or cloudevents is
// refused.
func (q *QuickBooks) SetWebhooks(h QBWebhooks) error {
	if h.Format != QBWebhookLegacy && h.Format != QBWebhookCloudEvents {
		return fmt.Errorf("webhook format %q is not %s or %s", h.Format, QBWebhookLegacy, QBWebhookCloudEvents)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.hooks = h
	return nil
}

// Webhooks returns the webhook settings in force.
func (q *QuickBooks) Webhooks() QBWebhooks {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.hooks
}

// Deliveries returns a copy of every webhook sent, oldest first.
func (q *QuickBooks) Deliveries() []qbDelivery {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]qbDelivery, len(q.delivs))
	for i, d := range q.delivs {
		out[i] = *d
	}
	return out
}

// RecordPayment records a payment of amountCents against an invoice, as a person in QuickBooks
// receiving the customer's money does; amountCents 0 pays the whole balance. date is the
// payment's TxnDate (YYYY-MM-DD; today when empty). It sends the webhook.
func (q *QuickBooks) RecordPayment(realm, invoiceID string, amountCents int64, date string) (QBObject, error) {
	q.mu.Lock()
	r := q.realms[realm]
	if r == nil {
		q.mu.Unlock()
		return nil, fmt.Errorf("realm %q: %w", realm, errNotFound)
	}
	inv := r.find(QBInvoice, invoiceID)
	if inv == nil {
		q.mu.Unlock()
		return nil, fmt.Errorf("invoice %s: %w", invoiceID, errNotFound)
	}
	if amountCents == 0 {
		amountCents = inv.Cents("Balance")
	}
	amount := json.Number(fmt.Sprintf("%.2f", float64(amountCents)/100))
	p := QBObject{
		"CustomerRef": map[string]any{"value": inv.Ref("CustomerRef")}, "TotalAmt": amount,
		"Line": []any{map[string]any{"Amount": amount, "LinkedTxn": []any{map[string]any{"TxnId": invoiceID, "TxnType": QBInvoice}}}},
	}
	if date != "" {
		p["TxnDate"] = date
	}
	out, f := q.saveLocked(r, QBPayment, p)
	if f != nil {
		q.mu.Unlock()
		return nil, f
	}
	out = out.clone()
	d := q.notifyLocked(r, q.paymentChangesLocked(r, out))
	q.mu.Unlock()
	q.send(d)
	return out, nil
}

// checkPaymentLocked validates a new payment: its customer, its TotalAmt, and each line's
// invoice and amount.
func (q *QuickBooks) checkPaymentLocked(r *qbRealm, o QBObject) *qbFault {
	if o.Ref("CustomerRef") == "" {
		return faultRequired("CustomerRef")
	}
	if f := q.refLocked(r, QBCustomer, o.Ref("CustomerRef"), "CustomerRef"); f != nil {
		return f
	}
	if _, ok := o["TotalAmt"]; !ok {
		return faultRequired("TotalAmt")
	}
	total := o.Cents("TotalAmt")
	if total <= 0 {
		return faultInvalid("TotalAmt must be more than zero")
	}
	var applied int64
	perInvoice := map[string]int64{}
	for i, l := range o.Lines() {
		amount := qbCents(l["Amount"])
		links, _ := l["LinkedTxn"].([]any)
		if amount <= 0 || len(links) != 1 {
			return faultInvalid(fmt.Sprintf("Line[%d] needs an Amount above zero and one LinkedTxn", i))
		}
		link, _ := links[0].(map[string]any)
		id, _ := link["TxnId"].(string)
		if typ, _ := link["TxnType"].(string); typ != QBInvoice {
			return faultInvalid(fmt.Sprintf("Line[%d].LinkedTxn[0].TxnType %q: the sandbox applies payments to an Invoice only", i, typ))
		}
		inv := r.find(QBInvoice, id)
		if inv == nil {
			return faultInvalidRef(fmt.Sprintf("Line[%d].LinkedTxn[0].TxnId", i))
		}
		if inv.Ref("CustomerRef") != o.Ref("CustomerRef") {
			return faultInvalid(fmt.Sprintf("invoice %s is not the customer's %s", id, o.Ref("CustomerRef")))
		}
		perInvoice[id] += amount
		if perInvoice[id] > inv.Cents("Balance") {
			return faultInvalid(fmt.Sprintf("Line[%d] applies %s to invoice %s, whose balance is %s", i, money(perInvoice[id]), id, money(inv.Cents("Balance"))))
		}
		applied += amount
	}
	if applied > total {
		return faultInvalid(fmt.Sprintf("the lines apply %s, more than TotalAmt %s", money(applied), money(total)))
	}
	return nil
}

// applyPaymentLocked lowers the balance of each invoice the payment pays.
func (q *QuickBooks) applyPaymentLocked(r *qbRealm, p QBObject) {
	applied := p.Cents("TotalAmt")
	for _, l := range p.Lines() {
		links, _ := l["LinkedTxn"].([]any)
		link, _ := links[0].(map[string]any)
		id, _ := link["TxnId"].(string)
		inv := r.find(QBInvoice, id)
		amount := qbCents(l["Amount"])
		applied -= amount
		inv["Balance"] = json.Number(fmt.Sprintf("%.2f", float64(inv.Cents("Balance")-amount)/100))
		linked, _ := inv["LinkedTxn"].([]any)
		inv["LinkedTxn"] = append(linked, map[string]any{"TxnId": p.String("Id"), "TxnType": QBPayment})
		bumpSyncToken(inv, q.now())
	}
	p["UnappliedAmt"] = json.Number(fmt.Sprintf("%.2f", float64(applied)/100))
}

// paymentChangesLocked is what a new payment changed: the payment, and each invoice it paid.
func (q *QuickBooks) paymentChangesLocked(r *qbRealm, p QBObject) []qbChange {
	now := q.now()
	out := []qbChange{{QBPayment, p.String("Id"), "Create", now}}
	for _, l := range p.Lines() {
		links, _ := l["LinkedTxn"].([]any)
		link, _ := links[0].(map[string]any)
		if id, _ := link["TxnId"].(string); r.find(QBInvoice, id) != nil {
			out = append(out, qbChange{QBInvoice, id, "Update", now})
		}
	}
	return out
}

// notifyLocked builds the webhook of changes in the configured format, records it, and returns
// it for send (nil when webhooks are off).
func (q *QuickBooks) notifyLocked(r *qbRealm, changes []qbChange) *qbDelivery {
	h := q.hooks
	if !h.Enabled || h.URL == "" || len(changes) == 0 {
		return nil
	}
	var body []byte
	if h.Format == QBWebhookCloudEvents {
		events := make([]map[string]any, len(changes))
		for i, c := range changes {
			events[i] = map[string]any{
				"specversion": "1.0", "id": newEventID(), "source": "intuit.sandbox",
				"type":            "qbo." + strings.ToLower(c.entity) + "." + cloudEventVerb(c.op) + ".v1",
				"datacontenttype": "application/json", "time": c.at.UTC().Format(time.RFC3339Nano),
				"intuitentityid": c.id, "intuitaccountid": r.id, "data": map[string]any{},
			}
		}
		body, _ = json.Marshal(events)
	} else {
		entities := make([]map[string]any, len(changes))
		for i, c := range changes {
			entities[i] = map[string]any{"name": c.entity, "id": c.id, "operation": c.op, "lastUpdated": c.at.UTC().Format("2006-01-02T15:04:05.000Z")}
		}
		body, _ = json.Marshal(map[string]any{"eventNotifications": []any{map[string]any{
			"realmId": r.id, "dataChangeEvent": map[string]any{"entities": entities},
		}}})
	}
	d := &qbDelivery{Delivery: Delivery{URL: h.URL, Body: string(body), Signature: SignQuickBooks(h.VerifierToken, body), State: DeliveryPending}, Format: h.Format}
	for _, c := range changes {
		d.Entities = append(d.Entities, c.entity+" "+c.id+" "+c.op)
	}
	q.delivs = append(q.delivs, d)
	return d
}

// send posts d in the background; the caller must not hold mu.
func (q *QuickBooks) send(d *qbDelivery) {
	if d != nil {
		q.Send(&d.Delivery, &q.mu)
	}
}

func cloudEventVerb(op string) string {
	switch op {
	case "Create":
		return "created"
	case "Update":
		return "updated"
	case "Delete":
		return "deleted"
	case "Void":
		return "voided"
	case "Merge":
		return "merged"
	}
	return strings.ToLower(op)
}

// cdc is GET …/cdc?entities=<list>&changedSince=<date-time>.
func (q *QuickBooks) cdc(w http.ResponseWriter, r *http.Request) {
	realm := q.company(r)
	if realm == nil {
		q.writeFault(w, faultNotFound())
		return
	}
	since, err := time.Parse(time.RFC3339Nano, r.URL.Query().Get("changedSince"))
	if err != nil {
		q.writeFault(w, &qbFault{http.StatusBadRequest, "ValidationFault", "2020", "Required param missing, need to supply the required value for the API",
			"changedSince must be an ISO 8601 date-time: " + r.URL.Query().Get("changedSince"), "changedSince"})
		return
	}
	if since.Before(q.now().Add(-qbCDCLookBack)) {
		q.writeFault(w, &qbFault{http.StatusBadRequest, "ValidationFault", "4001", "Invalid query",
			"changedSince may look back 30 days at most", "changedSince"})
		return
	}
	var entities []string
	for _, e := range strings.Split(r.URL.Query().Get("entities"), ",") {
		i := slices.IndexFunc(qbEntities, func(n string) bool { return strings.EqualFold(n, strings.TrimSpace(e)) })
		if i < 0 {
			q.writeFault(w, faultInvalid(fmt.Sprintf("entities: %q is not an entity the sandbox keeps", e)))
			return
		}
		entities = append(entities, qbEntities[i])
	}
	q.mu.Lock()
	var responses []map[string]any
	count := 0
	for _, e := range entities {
		var found []QBObject
		for _, o := range realm.objects[e] {
			m, _ := o["MetaData"].(map[string]any)
			at, _ := time.Parse(time.RFC3339, fmt.Sprint(m["LastUpdatedTime"]))
			if !at.Before(since.Truncate(time.Second)) && count < qbCDCMax {
				found = append(found, o.clone())
				count++
			}
		}
		resp := map[string]any{}
		if len(found) > 0 {
			resp[e], resp["startPosition"], resp["maxResults"] = found, 1, len(found)
		}
		responses = append(responses, resp)
	}
	q.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"CDCResponse": []any{map[string]any{"QueryResponse": responses}}, "time": q.stamp()})
}

// paymentKnob is the page's button and the tests' call: POST amount (dollars, e.g. "1200.50";
// empty for the whole balance) and date to /_sandbox/quickbooks/realms/{realm}/invoices/{id}/payments.
func (q *QuickBooks) paymentKnob(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	var cents int64
	if s := strings.TrimSpace(r.PostFormValue("amount")); s != "" {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f <= 0 {
			writeJSON(w, http.StatusBadRequest, knobError{"amount must be a positive number of dollars, or empty for the whole balance"})
			return
		}
		cents = int64(f*100 + 0.5)
	}
	p, err := q.RecordPayment(r.PathValue("realm"), r.PathValue("id"), cents, strings.TrimSpace(r.PostFormValue("date")))
	var f *qbFault
	switch {
	case errors.As(err, &f):
		writeJSON(w, http.StatusBadRequest, knobError{f.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusNotFound, knobError{err.Error()})
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{QBPayment: p})
}

// webhooksKnob sets the webhooks: POST url, verifier_token, format (legacy or cloudevents) and
// enabled (true or false) to /_sandbox/quickbooks/webhooks; a field left out keeps its value.
func (q *QuickBooks) webhooksKnob(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
		return
	}
	h := q.Webhooks()
	if v, ok := r.PostForm["url"]; ok {
		h.URL = strings.TrimSpace(v[0])
	}
	if v, ok := r.PostForm["verifier_token"]; ok {
		h.VerifierToken = v[0]
	}
	if v, ok := r.PostForm["format"]; ok {
		h.Format = strings.TrimSpace(v[0])
	}
	if v, ok := r.PostForm["enabled"]; ok {
		b, err := strconv.ParseBool(strings.TrimSpace(v[0]))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, knobError{"enabled must be true or false"})
			return
		}
		h.Enabled = b
	}
	if err := q.SetWebhooks(h); err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	writeJSON(w, http.StatusOK, h)
}
