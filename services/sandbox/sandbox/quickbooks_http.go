package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

const qbCompany = "/v3/company/{realm}"

// qbPaths maps a resource's path segment to its entity.
var qbPaths = map[string]string{
	"customer": QBCustomer, "vendor": QBVendor, "employee": QBEmployee, "item": QBItem, "class": QBClass,
	"account": QBAccount, "invoice": QBInvoice, "salesreceipt": QBSalesReceipt, "bill": QBBill, "payment": QBPayment,
}

func (q *QuickBooks) routes() {
	q.oauth.mount(q.Kit, "/connect/oauth2", "/oauth2/v1/tokens/bearer", nil)
	q.HandleFunc("GET "+qbCompany+"/query", q.query)
	q.HandleFunc("POST "+qbCompany+"/query", q.query)
	q.HandleFunc("GET "+qbCompany+"/cdc", q.cdc)
	q.HandleFunc("POST "+qbCompany+"/{resource}", q.write)
	q.HandleFunc("GET "+qbCompany+"/{resource}/{id}", q.read)
	q.HandleKnob("POST /realms/{realm}/{resource}/{id}/active", q.activeKnob)
	q.HandleKnob("POST /realms/{realm}/invoices/{id}/payments", q.paymentKnob)
	q.HandleKnob("POST /webhooks", q.webhooksKnob)
}

// pathRealm is the company of a /v3/company/{realm}/… path, or "".
func pathRealm(path string) string {
	rest, ok := strings.CutPrefix(path, "/v3/company/")
	if !ok {
		return ""
	}
	realm, _, _ := strings.Cut(rest, "/")
	return realm
}

// auth: the OAuth endpoints authenticate the client themselves; the API wants a valid access
// token granted for the path's company.
func (q *QuickBooks) auth(w http.ResponseWriter, r *http.Request) (string, bool) {
	realm := pathRealm(r.URL.Path)
	if realm == "" {
		return "oauth", true
	}
	tok := BearerToken(r)
	subject, _, ok := q.oauth.valid(tok)
	switch {
	case !ok:
		q.writeXMLFault(w, http.StatusUnauthorized, "AUTHENTICATION", "3200", "message=AuthenticationFailed; errorCode=003200; statusCode=401", "Token expired or invalid")
		return "", false
	case subject != realm:
		q.writeXMLFault(w, http.StatusForbidden, "AUTHORIZATION", "3100", "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403", "The token is not for company "+realm)
		return "", false
	}
	return tok, true
}

// bucket: each company's calls count together, whatever token makes them; the OAuth endpoints
// are not counted.
func (q *QuickBooks) bucket(r *http.Request, _ string) Bucket {
	realm := pathRealm(r.URL.Path)
	if realm == "" {
		return Bucket{Unlimited: true}
	}
	return Bucket{Key: "realm:" + realm}
}

func (q *QuickBooks) writeFault(w http.ResponseWriter, f *qbFault) {
	writeJSON(w, f.status, q.qbFaultBody(f))
}

// company finds the path's company and notes the minorversion asked.
func (q *QuickBooks) company(r *http.Request) *qbRealm {
	asked := r.URL.Query().Get("minorversion")
	q.mu.Lock()
	defer q.mu.Unlock()
	q.minors[asked]++
	return q.realms[r.PathValue("realm")]
}

// minorVersion is the minor version a call is served with: below 75, absent or unreadable is 75.
func minorVersion(r *http.Request) int {
	n, err := strconv.Atoi(r.URL.Query().Get("minorversion"))
	if err != nil || n < QuickBooksMinorVersion {
		return QuickBooksMinorVersion
	}
	return n
}

// answer writes a 200 with the object under its entity's name.
func (q *QuickBooks) answerBody(entity string, o QBObject) []byte {
	b, _ := json.Marshal(map[string]any{entity: o, "time": q.stamp()})
	return b
}

func writeRaw(w http.ResponseWriter, a qbAnswer) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}

func decodeQB(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	return d.Decode(v)
}

// write is POST …/{resource}: a create, or with an Id an update, with requestid replay.
func (q *QuickBooks) write(w http.ResponseWriter, r *http.Request) {
	realm := q.company(r)
	entity, known := qbPaths[strings.ToLower(r.PathValue("resource"))]
	if realm == nil || !known {
		q.writeFault(w, &qbFault{http.StatusBadRequest, "ValidationFault", "500", "Unsupported Operation",
			fmt.Sprintf("Operation %s %s is not supported.", r.Method, r.URL.Path), ""})
		return
	}
	_ = minorVersion(r) // every version from 75 up is served alike
	reqID := r.URL.Query().Get("requestid")
	if len(reqID) > 50 {
		q.writeFault(w, faultInvalid("requestid is longer than 50 characters"))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		q.writeFault(w, faultInvalid("the request body could not be read, or is over 1 MiB"))
		return
	}
	// A payment's webhook is sent once mu is released: this defer runs after the unlock's.
	var hook *qbDelivery
	defer func() { q.send(hook) }()
	q.mu.Lock()
	defer q.mu.Unlock()
	if reqID != "" {
		if a, ok := realm.replays[reqID]; ok {
			q.replayed++
			writeRaw(w, a)
			return
		}
	}
	var a qbAnswer
	var in QBObject
	if err := decodeQB(body, &in); err != nil || in == nil {
		a = q.faultAnswer(faultInvalid("the body is not a JSON object"))
	} else if o, f := q.saveLocked(realm, entity, in); f != nil {
		a = q.faultAnswer(f)
	} else {
		a = qbAnswer{http.StatusOK, q.answerBody(entity, o.clone())}
		if entity == QBPayment { // a new one: payments are not updated
			hook = q.notifyLocked(realm, q.paymentChangesLocked(realm, o))
		}
	}
	if reqID != "" {
		realm.replays[reqID] = a
	}
	writeRaw(w, a)
}

func (q *QuickBooks) faultAnswer(f *qbFault) qbAnswer {
	b, _ := json.Marshal(q.qbFaultBody(f))
	return qbAnswer{f.status, b}
}

// saveLocked checks and stores a create or an update. The caller holds mu.
func (q *QuickBooks) saveLocked(r *qbRealm, entity string, in QBObject) (QBObject, *qbFault) {
	if id := in.String("Id"); id != "" {
		if entity == QBPayment {
			return nil, faultInvalid("the sandbox does not update payments")
		}
		return q.updateLocked(r, entity, id, in)
	}
	for _, f := range []string{"Id", "SyncToken", "MetaData", "TotalAmt", "DocNumber", "Balance", "LinkedTxn", "UnappliedAmt"} {
		if (f != "DocNumber" || entity == QBBill) && (f != "TotalAmt" || entity != QBPayment) {
			delete(in, f)
		}
	}
	if entity == QBPayment {
		if f := q.checkPaymentLocked(r, in); f != nil {
			return nil, f
		}
		if in.String("TxnDate") == "" {
			in["TxnDate"] = q.now().UTC().Format("2006-01-02")
		}
		p := r.add(entity, in, q.now())
		q.applyPaymentLocked(r, p)
		return p, nil
	}
	if _, ok := in["Active"]; !ok && isNameList(entity) {
		in["Active"] = true
	}
	if f := q.checkLocked(r, entity, in, ""); f != nil {
		return nil, f
	}
	if isTransaction(entity) {
		in["TotalAmt"] = json.Number(fmt.Sprintf("%.2f", float64(total(in))/100))
		if entity != QBBill && in.String("DocNumber") == "" {
			r.docNum++
			in["DocNumber"] = strconv.Itoa(r.docNum)
		}
		if in.String("TxnDate") == "" {
			in["TxnDate"] = q.now().UTC().Format("2006-01-02")
		}
		if entity == QBInvoice {
			in["Balance"] = in["TotalAmt"]
		}
	}
	return r.add(entity, in, q.now()), nil
}

func isNameList(entity string) bool {
	return slices.Contains([]string{QBCustomer, QBVendor, QBEmployee, QBItem, QBClass, QBAccount}, entity)
}

func isTransaction(entity string) bool {
	return entity == QBInvoice || entity == QBSalesReceipt || entity == QBBill
}

func total(o QBObject) int64 {
	var sum int64
	for _, l := range o.Lines() {
		if l["DetailType"] != "SubTotalLineDetail" {
			sum += qbCents(l["Amount"])
		}
	}
	return sum
}

// updateLocked is a full or sparse update with the current SyncToken.
func (q *QuickBooks) updateLocked(r *qbRealm, entity, id string, in QBObject) (QBObject, *qbFault) {
	cur := r.find(entity, id)
	if cur == nil {
		return nil, faultNotFound()
	}
	if in.String("SyncToken") != cur.String("SyncToken") {
		return nil, faultStale()
	}
	next := cur.clone()
	if sparse, _ := in["sparse"].(bool); !sparse {
		next = QBObject{"Id": id, "SyncToken": cur["SyncToken"], "MetaData": cur["MetaData"]}
	}
	for k, v := range in {
		if k != "Id" && k != "SyncToken" && k != "MetaData" && k != "sparse" {
			next[k] = v
		}
	}
	if f := q.checkLocked(r, entity, next, id); f != nil {
		return nil, f
	}
	if isTransaction(entity) {
		next["TotalAmt"] = json.Number(fmt.Sprintf("%.2f", float64(total(next))/100))
	}
	if entity == QBInvoice {
		// What was paid stays paid: the balance moves with the total.
		paid := cur.Cents("TotalAmt") - cur.Cents("Balance")
		next["Balance"] = json.Number(fmt.Sprintf("%.2f", float64(total(next)-paid)/100))
		next["LinkedTxn"] = cur["LinkedTxn"]
	}
	for k := range cur {
		delete(cur, k)
	}
	for k, v := range next {
		cur[k] = v
	}
	bumpSyncToken(cur, q.now())
	return cur, nil
}

// checkLocked validates an object about to be stored as id ("" for a new one).
func (q *QuickBooks) checkLocked(r *qbRealm, entity string, o QBObject, id string) *qbFault {
	switch entity {
	case QBCustomer, QBVendor, QBEmployee:
		name := strings.TrimSpace(o.String("DisplayName"))
		if name == "" {
			name = strings.TrimSpace(strings.Join(strings.Fields(o.String("GivenName")+" "+o.String("FamilyName")), " "))
			if name == "" {
				name = o.String("CompanyName")
			}
			if name == "" {
				return faultRequired("DisplayName")
			}
			o["DisplayName"] = name
		}
		for _, e := range []string{QBCustomer, QBVendor, QBEmployee} {
			for _, other := range r.objects[e] {
				if (e != entity || other.String("Id") != id) && strings.EqualFold(other.String("DisplayName"), name) {
					return faultDuplicateName()
				}
			}
		}
	case QBItem, QBClass, QBAccount:
		name := strings.TrimSpace(o.String("Name"))
		if name == "" {
			return faultRequired("Name")
		}
		for _, other := range r.objects[entity] {
			if other.String("Id") != id && strings.EqualFold(other.String("Name"), name) {
				f := faultDuplicateName()
				f.detail, f.element = "The name supplied already exists. : Another "+strings.ToLower(entity)+" is already using this name.", "Name"
				return f
			}
		}
		if entity == QBItem {
			if o.String("Type") == "" {
				o["Type"] = "Service"
			}
			if o.String("Type") == "Service" || o.String("Type") == "NonInventory" {
				if o.Ref("IncomeAccountRef") == "" {
					return faultRequired("IncomeAccountRef")
				}
				if f := q.refLocked(r, QBAccount, o.Ref("IncomeAccountRef"), "IncomeAccountRef"); f != nil {
					return f
				}
			}
		}
	case QBInvoice, QBSalesReceipt, QBBill:
		party, ref := QBCustomer, "CustomerRef"
		if entity == QBBill {
			party, ref = QBVendor, "VendorRef"
		}
		if o.Ref(ref) == "" && entity != QBSalesReceipt {
			return faultRequired(ref)
		}
		if o.Ref(ref) != "" {
			if f := q.refLocked(r, party, o.Ref(ref), ref); f != nil {
				return f
			}
		}
		if o.Ref("ClassRef") != "" {
			if f := q.refLocked(r, QBClass, o.Ref("ClassRef"), "ClassRef"); f != nil {
				return f
			}
		}
		lines := o.Lines()
		if len(lines) == 0 {
			return faultRequired("Line")
		}
		for i, l := range lines {
			if f := q.lineLocked(r, entity, i, l); f != nil {
				return f
			}
		}
	}
	return nil
}

// lineLocked checks one line: its amount, its detail type, and what it refers to.
func (q *QuickBooks) lineLocked(r *qbRealm, entity string, i int, l map[string]any) *qbFault {
	el := fmt.Sprintf("Line[%d]", i)
	if _, ok := l["Amount"]; !ok && l["DetailType"] != "DescriptionOnly" {
		return faultRequired(el + ".Amount")
	}
	detailType, _ := l["DetailType"].(string)
	detail, _ := l[detailType].(map[string]any)
	refOf := func(field string) string {
		if m, ok := detail[field].(map[string]any); ok {
			s, _ := m["value"].(string)
			return s
		}
		return ""
	}
	switch {
	case detailType == "DescriptionOnly":
		return nil
	case entity != QBBill && detailType == "SalesItemLineDetail":
		if detail == nil || refOf("ItemRef") == "" {
			return faultRequired(el + ".SalesItemLineDetail.ItemRef")
		}
		if f := q.refLocked(r, QBItem, refOf("ItemRef"), el+".ItemRef"); f != nil {
			return f
		}
		if c := refOf("ClassRef"); c != "" {
			return q.refLocked(r, QBClass, c, el+".ClassRef")
		}
		return nil
	case entity == QBBill && detailType == "AccountBasedExpenseLineDetail":
		if detail == nil || refOf("AccountRef") == "" {
			return faultRequired(el + ".AccountBasedExpenseLineDetail.AccountRef")
		}
		if f := q.refLocked(r, QBAccount, refOf("AccountRef"), el+".AccountRef"); f != nil {
			return f
		}
		if c := refOf("ClassRef"); c != "" {
			return q.refLocked(r, QBClass, c, el+".ClassRef")
		}
		return nil
	case entity == QBBill && detailType == "ItemBasedExpenseLineDetail":
		if detail == nil || refOf("ItemRef") == "" {
			return faultRequired(el + ".ItemBasedExpenseLineDetail.ItemRef")
		}
		return q.refLocked(r, QBItem, refOf("ItemRef"), el+".ItemRef")
	}
	return faultInvalid(fmt.Sprintf("%s.DetailType %q is not supported on a %s", el, detailType, entity))
}

// refLocked checks a reference: an id that names nothing is 2500, an inactive object 610.
func (q *QuickBooks) refLocked(r *qbRealm, entity, id, element string) *qbFault {
	o := r.find(entity, id)
	if o == nil {
		return faultInvalidRef(element)
	}
	if !o.Active() {
		f := faultNotFound()
		f.element = element
		return f
	}
	return nil
}

// read is GET …/{resource}/{id}; an object that does not exist is 610.
func (q *QuickBooks) read(w http.ResponseWriter, r *http.Request) {
	realm := q.company(r)
	entity, known := qbPaths[strings.ToLower(r.PathValue("resource"))]
	if realm == nil || !known {
		q.writeFault(w, &qbFault{http.StatusBadRequest, "ValidationFault", "500", "Unsupported Operation",
			fmt.Sprintf("Operation %s %s is not supported.", r.Method, r.URL.Path), ""})
		return
	}
	q.mu.Lock()
	o := realm.find(entity, r.PathValue("id"))
	if o != nil {
		o = o.clone()
	}
	q.mu.Unlock()
	if o == nil {
		q.writeFault(w, faultNotFound())
		return
	}
	writeRaw(w, qbAnswer{http.StatusOK, q.answerBody(entity, o)})
}

// qbQuery is a parsed query.
type qbQuery struct {
	entity     string
	where      []qbCond
	start, max int
	count      bool
}

type qbCond struct{ field, value string }

// query is GET …/query?query= (or POST with the query as the body).
func (q *QuickBooks) query(w http.ResponseWriter, r *http.Request) {
	realm := q.company(r)
	if realm == nil {
		q.writeFault(w, faultNotFound())
		return
	}
	text := r.URL.Query().Get("query")
	if r.Method == http.MethodPost {
		b, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
		text = string(b)
	}
	pq, err := parseQBQuery(text)
	if err != nil {
		q.writeFault(w, &qbFault{http.StatusBadRequest, "ValidationFault", "4000", "Error parsing query", "QueryParserError: " + err.Error(), ""})
		return
	}
	q.mu.Lock()
	var found []QBObject
	for _, o := range realm.objects[pq.entity] {
		if pq.matches(o) {
			found = append(found, o.clone())
		}
	}
	q.mu.Unlock()
	resp := map[string]any{}
	if pq.count {
		resp["totalCount"] = len(found)
	} else {
		from := min(pq.start-1, len(found))
		to := min(from+pq.max, len(found))
		page := found[from:to]
		if len(page) > 0 {
			resp[pq.entity] = page
			resp["startPosition"] = pq.start
			resp["maxResults"] = len(page)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"QueryResponse": resp, "time": q.stamp()})
}

func (pq qbQuery) matches(o QBObject) bool {
	activeAsked := false
	for _, c := range pq.where {
		var v string
		switch c.field {
		case "primaryemailaddr":
			m, _ := o["PrimaryEmailAddr"].(map[string]any)
			v, _ = m["Address"].(string)
		case "active":
			activeAsked = true
			v = strconv.FormatBool(o.Active())
		default:
			for k := range o {
				if strings.EqualFold(k, c.field) {
					v = o.String(k)
				}
			}
		}
		if !strings.EqualFold(v, c.value) {
			return false
		}
	}
	return activeAsked || o.Active()
}

// parseQBQuery reads `select * from <Entity> [where <Field> = '<value>' [and …]]
// [startposition n] [maxresults m]`, or `select count(*) from …`. Keywords are
// case-insensitive; \' is a quote inside a value.
func parseQBQuery(s string) (qbQuery, error) {
	toks, err := qbTokens(s)
	if err != nil {
		return qbQuery{}, err
	}
	pq := qbQuery{start: 1, max: 100}
	i := 0
	next := func() string {
		if i >= len(toks) {
			return ""
		}
		i++
		return toks[i-1]
	}
	expect := func(word string) error {
		if t := next(); !strings.EqualFold(t, word) {
			return fmt.Errorf("expected %q, found %q", word, t)
		}
		return nil
	}
	if err := expect("select"); err != nil {
		return pq, err
	}
	switch t := next(); {
	case t == "*":
	case strings.EqualFold(t, "count(*)"):
		pq.count = true
	default:
		return pq, fmt.Errorf("only select * and select count(*) are supported, not %q", t)
	}
	if err := expect("from"); err != nil {
		return pq, err
	}
	ent := next()
	for _, e := range qbEntities {
		if strings.EqualFold(e, ent) {
			pq.entity = e
		}
	}
	if pq.entity == "" {
		return pq, fmt.Errorf("entity %q is not supported", ent)
	}
	for i < len(toks) {
		switch kw := strings.ToLower(next()); kw {
		case "where", "and":
			field := next()
			if field == "" || !isIdent(field) {
				return pq, fmt.Errorf("expected a field after %s", kw)
			}
			if err := expect("="); err != nil {
				return pq, err
			}
			v := next()
			if !strings.HasPrefix(v, "'") {
				if v != "true" && v != "false" {
					return pq, fmt.Errorf("expected a quoted value after %s =", field)
				}
			} else {
				v = v[1:]
			}
			pq.where = append(pq.where, qbCond{strings.ToLower(field), v})
		case "startposition", "maxresults":
			n, err := strconv.Atoi(next())
			if err != nil || n < 1 || (kw == "maxresults" && n > 1000) {
				return pq, fmt.Errorf("%s needs a number from 1 (maxresults up to 1000)", kw)
			}
			if kw == "startposition" {
				pq.start = n
			} else {
				pq.max = n
			}
		default:
			return pq, fmt.Errorf("unexpected %q", kw)
		}
	}
	return pq, nil
}

func isIdent(s string) bool {
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '.' {
			return false
		}
	}
	return s != ""
}

// qbTokens splits a query into words, "=", and quoted values (kept with a leading quote).
func qbTokens(s string) ([]string, error) {
	var toks []string
	rs := []rune(s)
	for i := 0; i < len(rs); {
		switch c := rs[i]; {
		case unicode.IsSpace(c):
			i++
		case c == '=':
			toks = append(toks, "=")
			i++
		case c == '\'':
			var b strings.Builder
			b.WriteRune('\'')
			i++
			closed := false
			for i < len(rs) {
				if rs[i] == '\\' && i+1 < len(rs) {
					b.WriteRune(rs[i+1])
					i += 2
					continue
				}
				if rs[i] == '\'' {
					closed = true
					i++
					break
				}
				b.WriteRune(rs[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("a quoted value is not closed")
			}
			toks = append(toks, b.String())
		default:
			j := i
			for j < len(rs) && !unicode.IsSpace(rs[j]) && rs[j] != '=' && rs[j] != '\'' {
				j++
			}
			toks = append(toks, string(rs[i:j]))
			i = j
		}
	}
	return toks, nil
}

// activeKnob makes an object active or inactive: a form or JSON field "active" ("true" or
// "false").
func (q *QuickBooks) activeKnob(w http.ResponseWriter, r *http.Request) {
	entity, known := qbPaths[strings.ToLower(r.PathValue("resource"))]
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	active, err := strconv.ParseBool(strings.TrimSpace(r.PostFormValue("active")))
	if !known || err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{"POST active=true or active=false to /_sandbox/quickbooks/realms/{realm}/{customer|vendor|item|class|account}/{id}/active"})
		return
	}
	if err := q.SetActive(r.PathValue("realm"), entity, r.PathValue("id"), active); err != nil {
		writeJSON(w, http.StatusNotFound, knobError{err.Error()})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
