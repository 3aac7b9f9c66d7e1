package sandbox

import (
	"cmp"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// fubPrefix is where the FUB API is served: an adapter's base URL is http://host:port/fub.
const fubPrefix = "/fub"

// fubEventTypes maps the accepted POST /v1/events types to the type recorded. The five types
// that trigger action plans and the "Inquiry" shorthand are in FUB's events-post page
// [O]. The others are the remaining event types FUB lists for events (its IDX
// integration page names Saved Property, Viewed Property and Property Search [O]; the full list
// is quoted by public client tool descriptions of GET /v1/events [S]). Matching is exact.
var fubEventTypes = map[string]bool{
	"Registration": true, "Seller Inquiry": true, "Property Inquiry": true,
	"General Inquiry": true, "Visited Open House": true, "Inquiry": true,
	"Viewed Property": true, "Saved Property": true, "Visited Website": true,
	"Incoming Call": true, "Unsubscribed": true, "Property Search": true,
	"Saved Property Search": true, "Viewed Page": true,
}

// fubEventRequest is the body of POST /v1/events.
type fubEventRequest struct {
	Source      string          `json:"source"`
	System      string          `json:"system"`
	Type        string          `json:"type"`
	Message     string          `json:"message"`
	Description string          `json:"description"`
	SourceURL   string          `json:"sourceUrl"`
	Person      *fubEventPerson `json:"person"`
	Property    json.RawMessage `json:"property"`
}

type fubEventPerson struct {
	ID        int64      `json:"id"`
	Name      string     `json:"name"`
	FirstName string     `json:"firstName"`
	LastName  string     `json:"lastName"`
	Emails    []FUBValue `json:"emails"`
	Phones    []FUBValue `json:"phones"`
	Tags      []string   `json:"tags"`
}

// names returns the first and last name, split from name when those are absent.
func (p *fubEventPerson) names() (first, last string) {
	first, last = strings.TrimSpace(p.FirstName), strings.TrimSpace(p.LastName)
	if first == "" && last == "" {
		first, last, _ = strings.Cut(strings.TrimSpace(p.Name), " ")
		last = strings.TrimSpace(last)
	}
	return first, last
}

type fubNoteRequest struct {
	PersonID int64  `json:"personId"`
	Subject  string `json:"subject"`
	Body     string `json:"body"`
	IsHTML   bool   `json:"isHtml"`
}

// fubError is FUB's error body.
type fubError struct {
	ErrorMessage string `json:"errorMessage"`
}

func writeFUBError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, fubError{ErrorMessage: fmt.Sprintf(format, args...)})
}

// routes adds the API and the FUB knobs to the kit.
func (f *FUB) routes() {
	f.HandleFunc("GET /v1/people", f.listPeople)
	f.HandleFunc("GET /v1/people/{id}", f.getPerson)
	f.HandleFunc("GET /v1/people/checkDuplicate", f.checkDuplicate)
	f.HandleFunc("POST /v1/events", f.postEvent)
	f.HandleFunc("GET /v1/events", f.listEvents)
	f.HandleFunc("POST /v1/notes", f.postNote)
	f.webhookRoutes()
	f.HandleKnob("PUT /assignment-delay", f.putAssignmentDelay)
	f.HandleKnob("POST /archived-sources", f.postArchivedSource)
}

// auth accepts HTTP Basic with a configured API key as the username and a blank password.
func (f *FUB) auth(w http.ResponseWriter, r *http.Request) (string, bool) {
	user, pass, ok := r.BasicAuth()
	if !ok || pass != "" || !slices.Contains(f.opts.APIKeys, user) {
		f.Unauthorized(w, `Basic realm="Follow Up Boss sandbox"`, "Unauthorized: send a valid API key as the HTTP Basic username with a blank password")
		return "", false
	}
	return user, true
}

// bucket is FUB's rate-limit context of a call: POST /v1/events is unlimited; GET /v1/events
// counts in "events" (20 per window for a registered system, half without); every other call
// counts in "global", whose limit is higher for a registered system (X-System, X-System-Key).
func (f *FUB) bucket(r *http.Request, _ string) Bucket {
	if r.Method == http.MethodPost && r.URL.Path == "/v1/events" {
		return Bucket{Name: "POST.events", Limit: fubUnlimited, Unlimited: true}
	}
	registered := r.Header.Get("X-System") == f.opts.SystemName && r.Header.Get("X-System-Key") == f.opts.SystemKey
	if r.Method == http.MethodGet && r.URL.Path == "/v1/events" {
		if registered {
			return Bucket{Name: "events", Limit: f.opts.EventsLimit}
		}
		return Bucket{Name: "events", Limit: max(1, f.opts.EventsLimit/2)}
	}
	if registered {
		return Bucket{Name: "global", Limit: f.opts.GlobalLimit}
	}
	return Bucket{Name: "global", Limit: f.opts.UnregisteredLimit}
}

func (f *FUB) postEvent(w http.ResponseWriter, r *http.Request) {
	var req fubEventRequest
	if err := decodeJSON(r, &req); err != nil {
		writeFUBError(w, http.StatusBadRequest, "Invalid request body: %v", err)
		return
	}
	switch {
	case req.Type == "":
		writeFUBError(w, http.StatusBadRequest, "Missing required field: type")
		return
	case !fubEventTypes[req.Type]:
		writeFUBError(w, http.StatusBadRequest, "Invalid event type %q", req.Type)
		return
	case req.Person == nil:
		writeFUBError(w, http.StatusBadRequest, "Missing required field: person")
		return
	}
	in := req.Person
	if first, last := in.names(); in.ID == 0 && first == "" && last == "" && len(in.Emails) == 0 && len(in.Phones) == 0 {
		writeFUBError(w, http.StatusBadRequest, "The person needs an id, a name, an email address or a phone number")
		return
	}
	property := req.Property
	if strings.TrimSpace(string(property)) == "null" {
		property = nil
	}
	typ := req.Type
	if typ == "Inquiry" {
		typ = "General Inquiry"
		if property != nil {
			typ = "Property Inquiry"
		}
	}
	system := req.System
	if system == "" {
		system = r.Header.Get("X-System")
	}

	now := f.now()
	f.mu.Lock()
	if f.archived[strings.ToLower(strings.TrimSpace(req.Source))] {
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var p *fubPerson
	status := http.StatusOK
	switch {
	case in.ID != 0:
		if p = f.findLocked(in.ID); p == nil {
			f.mu.Unlock()
			writeFUBError(w, http.StatusNotFound, "Person %d not found", in.ID)
			return
		}
		p.merge(in, now)
	default:
		if p = f.matchLocked(in); p != nil {
			p.merge(in, now)
		} else {
			p = f.createLocked(in, req.Source, req.SourceURL, now)
			status = http.StatusCreated
		}
	}
	f.lastID.event++
	f.events = append(f.events, FUBEvent{
		ID: f.lastID.event, PersonID: p.ID, Type: typ, Source: req.Source, System: system,
		Message: req.Message, Description: req.Description, Created: stamp(now), Property: property,
	})
	person := p.clone()
	var hooks []func(FUBPerson)
	if status == http.StatusCreated {
		hooks = slices.Clone(f.hooks)
	}
	f.mu.Unlock()

	for _, fn := range hooks {
		fn(person)
	}
	if status == http.StatusCreated {
		f.wh.fire(requestBaseURL(r), person.ID, FUBPeopleCreated)
	}
	writeJSON(w, status, person)
}

func (f *FUB) getPerson(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	now := f.now()
	f.mu.Lock()
	var p *fubPerson
	if err == nil {
		p = f.findLocked(id)
	}
	if p == nil || !p.visible(now) {
		f.mu.Unlock()
		writeFUBError(w, http.StatusNotFound, "Person %s not found", r.PathValue("id"))
		return
	}
	person := p.clone()
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, person)
}

// fubUnsupportedFilters are documented GET /v1/people filters that the sandbox does not
// emulate; it refuses them rather than silently returning unfiltered people.
var fubUnsupportedFilters = []string{
	"tags", "assignedTo", "assignedUserId", "listId", "smartListId", "createdAfter",
	"includeTrash", "contacted", "price",
}

// fubPeopleSorts are the sort values of GET /v1/people the sandbox emulates: a field, or the
// field with a leading "-" for descending, ties broken by id in the same direction. Without
// sort, people are listed newest id first, as FUB's pagination page says. Public clients send
// "created" and "-updated"; FUB's own list of sort values was not found, so any other value is
// refused rather than ignored.
var fubPeopleSorts = map[string]func(a, b FUBPerson) int{
	"id":      func(a, b FUBPerson) int { return cmp.Compare(a.ID, b.ID) },
	"created": func(a, b FUBPerson) int { return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID)) },
	"updated": func(a, b FUBPerson) int { return cmp.Or(a.Updated.Compare(b.Updated), cmp.Compare(a.ID, b.ID)) },
}

// fubPeopleSort is the order the sort parameter asks for; nil for the default order.
func fubPeopleSort(q url.Values) (func(a, b FUBPerson) int, error) {
	v := strings.TrimSpace(q.Get("sort"))
	if v == "" {
		return nil, nil
	}
	field, desc := strings.CutPrefix(v, "-")
	by, ok := fubPeopleSorts[field]
	if !ok {
		return nil, fmt.Errorf("sandbox: the people sort %q is not emulated (id, created, updated, each with - for descending)", v)
	}
	if desc {
		return func(a, b FUBPerson) int { return by(b, a) }, nil
	}
	return by, nil
}

type fubMetadata struct {
	Collection string  `json:"collection"`
	Offset     int     `json:"offset"`
	Limit      int     `json:"limit"`
	Total      int     `json:"total"`
	Next       *string `json:"next"`
	NextLink   *string `json:"nextLink"`
}

type fubPeoplePage struct {
	Metadata fubMetadata `json:"_metadata"`
	People   []FUBPerson `json:"people"`
}

func (f *FUB) listPeople(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for _, name := range fubUnsupportedFilters {
		if q.Has(name) {
			writeFUBError(w, http.StatusBadRequest, "sandbox: the people filter %q is not emulated", name)
			return
		}
	}
	limit, offset, err := fubPageParams(q)
	if err != nil {
		writeFUBError(w, http.StatusBadRequest, "%v", err)
		return
	}
	match, err := fubPeopleFilter(q)
	if err != nil {
		writeFUBError(w, http.StatusBadRequest, "%v", err)
		return
	}
	order, err := fubPeopleSort(q)
	if err != nil {
		writeFUBError(w, http.StatusBadRequest, "%v", err)
		return
	}

	now := f.now()
	var hits []FUBPerson
	f.mu.Lock()
	for _, p := range slices.Backward(f.people) {
		if p.visible(now) && match(&p.FUBPerson) {
			hits = append(hits, p.clone())
		}
	}
	f.mu.Unlock()
	if order != nil {
		slices.SortStableFunc(hits, order)
	}

	page := fubPeoplePage{Metadata: fubPageMetadata(r, "people", limit, offset, len(hits)), People: []FUBPerson{}}
	if offset < len(hits) {
		page.People = hits[offset:min(offset+limit, len(hits))]
	}
	writeJSON(w, http.StatusOK, page)
}

// checkDuplicate answers GET /v1/people/checkDuplicate?email=…&phone=…: whether a person
// has the email or the phone, people still hidden by the assignment delay included (FUB
// checks the whole account, people the key cannot see included), and which matched
// (https://docs.followupboss.com/reference/peoplecheckduplicate; the fields found, matchedBy
// and assignedTo are as public clients read them). The answer names no person. With both
// parameters the sandbox checks the email, then the phone: what FUB does then is not
// documented. It counts in "global", as any call but the events'.
func (f *FUB) checkDuplicate(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	email, phone := q.Get("email"), q.Get("phone")
	if strings.TrimSpace(email) == "" && strings.TrimSpace(phone) == "" {
		writeFUBError(w, http.StatusBadRequest, "Missing required parameter: email or phone")
		return
	}
	answer := struct {
		Found      bool   `json:"found"`
		MatchedBy  string `json:"matchedBy,omitempty"`
		AssignedTo string `json:"assignedTo,omitempty"`
	}{}
	f.mu.Lock()
	for _, by := range []string{"email", "phone"} {
		v := q.Get(by)
		if strings.TrimSpace(v) == "" || answer.Found {
			continue
		}
		for _, p := range f.people {
			if by == "email" && hasValue(p.Emails, emailKey, emailKey(v)) || by == "phone" && hasValue(p.Phones, phoneKey, phoneKey(v)) {
				answer.Found, answer.MatchedBy = true, by
				break
			}
		}
	}
	f.mu.Unlock()
	writeJSON(w, http.StatusOK, answer)
}

// fubPageParams reads FUB's paging: limit (default 10, at most 100), and offset or the next
// cursor.
func fubPageParams(q url.Values) (limit, offset int, err error) {
	limit = 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, 0, fmt.Errorf("invalid limit %q", v)
		}
		limit = min(n, 100)
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, fmt.Errorf("invalid offset %q", v)
		}
		offset = n
	}
	if v := q.Get("next"); v != "" {
		n, ok := decodeFUBCursor(v)
		if !ok {
			return 0, 0, fmt.Errorf("invalid next %q", v)
		}
		offset = n
	}
	return limit, offset, nil
}

// fubPageMetadata is the _metadata of a page of total items of collection, with the next
// cursor and link when more follow.
func fubPageMetadata(r *http.Request, collection string, limit, offset, total int) fubMetadata {
	md := fubMetadata{Collection: collection, Offset: offset, Limit: limit, Total: total}
	if offset+limit < total {
		next := encodeFUBCursor(offset + limit)
		q := r.URL.Query()
		nq := url.Values{}
		for k, vs := range q {
			if k != "offset" && k != "next" {
				nq[k] = vs
			}
		}
		nq.Set("next", next)
		scheme := "http"
		if r.TLS != nil {
			scheme = "https"
		}
		link := (&url.URL{Scheme: scheme, Host: r.Host, Path: fubPrefix + "/v1/" + collection, RawQuery: nq.Encode()}).String()
		md.Next, md.NextLink = &next, &link
	}
	return md
}

// listEvents answers GET /v1/events, newest first, filtered by personId and type when given.
func (f *FUB) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, offset, err := fubPageParams(q)
	if err != nil {
		writeFUBError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var personID int64
	if v := q.Get("personId"); v != "" {
		if personID, err = strconv.ParseInt(v, 10, 64); err != nil || personID <= 0 {
			writeFUBError(w, http.StatusBadRequest, "Invalid personId %q", v)
			return
		}
	}
	typ := q.Get("type")
	var hits []FUBEvent
	for _, e := range slices.Backward(f.Events()) {
		if (personID == 0 || e.PersonID == personID) && (typ == "" || e.Type == typ) {
			hits = append(hits, e)
		}
	}
	page := struct {
		Metadata fubMetadata `json:"_metadata"`
		Events   []FUBEvent  `json:"events"`
	}{Metadata: fubPageMetadata(r, "events", limit, offset, len(hits)), Events: []FUBEvent{}}
	if offset < len(hits) {
		page.Events = hits[offset:min(offset+limit, len(hits))]
	}
	writeJSON(w, http.StatusOK, page)
}

// fubPeopleFilter builds the predicate of the emulated GET /v1/people filters: id, email
// (exact, case-insensitive), phone (last 10 digits), name, firstName, lastName, stage and
// source (case-insensitive).
func fubPeopleFilter(q url.Values) (func(*FUBPerson) bool, error) {
	var preds []func(*FUBPerson) bool
	if v := q.Get("id"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid id %q", v)
		}
		preds = append(preds, func(p *FUBPerson) bool { return p.ID == id })
	}
	if v := q.Get("updatedAfter"); v != "" {
		// FUB does not say whether the bound is inclusive: the sandbox takes the strict
		// reading, people updated after it, so a client that needs the bound itself must
		// ask from a second earlier (FUB's times are whole seconds).
		after, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, fmt.Errorf("invalid updatedAfter %q: an ISO 8601 time such as 2024-01-02T15:04:05Z", v)
		}
		preds = append(preds, func(p *FUBPerson) bool { return p.Updated.After(after) })
	}
	if v := q.Get("email"); v != "" {
		k := emailKey(v)
		preds = append(preds, func(p *FUBPerson) bool { return hasValue(p.Emails, emailKey, k) })
	}
	if v := q.Get("phone"); v != "" {
		k := phoneKey(v)
		preds = append(preds, func(p *FUBPerson) bool { return hasValue(p.Phones, phoneKey, k) })
	}
	for name, field := range map[string]func(*FUBPerson) string{
		"name":      func(p *FUBPerson) string { return p.Name },
		"firstName": func(p *FUBPerson) string { return p.FirstName },
		"lastName":  func(p *FUBPerson) string { return p.LastName },
		"stage":     func(p *FUBPerson) string { return p.Stage },
		"source":    func(p *FUBPerson) string { return p.Source },
	} {
		if v := strings.TrimSpace(q.Get(name)); v != "" {
			preds = append(preds, func(p *FUBPerson) bool { return strings.EqualFold(field(p), v) })
		}
	}
	return func(p *FUBPerson) bool {
		for _, ok := range preds {
			if !ok(p) {
				return false
			}
		}
		return true
	}, nil
}

// The next cursor is opaque to clients; the sandbox's is an encoded offset.
func encodeFUBCursor(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("offset:" + strconv.Itoa(offset)))
}

func decodeFUBCursor(s string) (int, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return 0, false
	}
	v, ok := strings.CutPrefix(string(b), "offset:")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	return n, err == nil && n >= 0
}

func (f *FUB) postNote(w http.ResponseWriter, r *http.Request) {
	var req fubNoteRequest
	if err := decodeJSON(r, &req); err != nil {
		writeFUBError(w, http.StatusBadRequest, "Invalid request body: %v", err)
		return
	}
	switch {
	case req.PersonID <= 0:
		writeFUBError(w, http.StatusBadRequest, "Missing required field: personId")
		return
	case strings.TrimSpace(req.Body) == "":
		writeFUBError(w, http.StatusBadRequest, "Missing required field: body")
		return
	}
	now := f.now()
	f.mu.Lock()
	if p := f.findLocked(req.PersonID); p == nil || !p.visible(now) {
		f.mu.Unlock()
		writeFUBError(w, http.StatusNotFound, "Person %d not found", req.PersonID)
		return
	}
	f.lastID.note++
	n := FUBNote{ID: f.lastID.note, PersonID: req.PersonID, Subject: req.Subject, Body: req.Body, IsHTML: req.IsHTML, Created: stamp(now)}
	f.notes = append(f.notes, n)
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, n)
}

// fubState is the read-only view at GET /_sandbox/fub/state.
type fubState struct {
	People []FUBPerson `json:"people"`
	Events []FUBEvent  `json:"events"`
	Notes  []FUBNote   `json:"notes"`
}

func (f *FUB) state() any {
	return fubState{People: f.People(), Events: f.Events(), Notes: f.Notes()}
}

func (f *FUB) putAssignmentDelay(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Delay string `json:"delay"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
		return
	}
	d, err := time.ParseDuration(req.Delay)
	if err != nil || d < 0 {
		writeJSON(w, http.StatusBadRequest, knobError{fmt.Sprintf("delay %q is not a non-negative Go duration such as \"2s\"", req.Delay)})
		return
	}
	f.SetAssignmentDelay(d)
	w.WriteHeader(http.StatusNoContent)
}

func (f *FUB) postArchivedSource(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Source string `json:"source"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
		return
	}
	if strings.TrimSpace(req.Source) == "" {
		writeJSON(w, http.StatusBadRequest, knobError{"source is required"})
		return
	}
	f.ArchiveSource(req.Source)
	w.WriteHeader(http.StatusNoContent)
}
