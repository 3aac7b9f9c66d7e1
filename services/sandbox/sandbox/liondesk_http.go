package sandbox

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// liondeskName is the LionDesk emulation's path segment: an adapter's base URL is
// http://host:port/liondesk (in place of https://api-v2.liondesk.com).
const liondeskName = "liondesk"

// What the emulation takes from LionDesk's documentation [O]: the v2 base, the
// Bearer access token, POST /contacts with its field list (none strictly required),
// PATCH /contacts/{id}, and contact sources ({"name":"Zillow"}). What it assumes, because the
// documentation is silent or was not found (each is written down in docs/sandbox.md):
//   - GET /contacts/{id} answers the contact; the shape of every answer (the contact with id,
//     created_at, updated_at; lists as {"data":[…],"total":N}; errors as
//     {"code":N,"message":"…"}).
//   - Search: GET /contacts?email=… (exact, case-insensitive) and ?phone=… (last 10 digits of
//     mobile_phone, home_phone or office_phone); ?updated_since=<RFC 3339> (inclusive), ordered
//     by updated_at, then id, for polling changes; limit (default 50, at most 100) and offset.
//   - Notes: POST /contacts/{id}/notes {"content":"…"} → 201, GET /contacts/{id}/notes.
//   - tags: a comma-separated string (an array of strings is accepted and joined).
//   - Rate limits: a sliding window per token (LionDeskOptions), with X-RateLimit-* headers and
//     429 + Retry-After like Follow Up Boss's.

// liondeskError is the sandbox's choice of LionDesk's error body (not documented).
type liondeskError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func writeLionDeskError(w http.ResponseWriter, status int, format string, args ...any) {
	writeJSON(w, status, liondeskError{Code: status, Message: fmt.Sprintf(format, args...)})
}

// liondeskList is the sandbox's choice of LionDesk's list envelope.
type liondeskList[T any] struct {
	Data  []T `json:"data"`
	Total int `json:"total"`
}

// routes adds the API to the kit.
func (l *LionDesk) routes() {
	l.HandleFunc("GET /contacts", l.listContacts)
	l.HandleFunc("POST /contacts", l.postContact)
	l.HandleFunc("GET /contacts/{id}", l.getContact)
	l.HandleFunc("PATCH /contacts/{id}", l.patchContact)
	l.HandleFunc("GET /contacts/{id}/notes", l.listNotes)
	l.HandleFunc("POST /contacts/{id}/notes", l.postNote)
	l.HandleFunc("GET /contact-sources", l.listSources)
	l.HandleFunc("POST /contact-sources", l.postSource)
}

// auth accepts Authorization: Bearer with a configured token; the kit then applies injected
// faults and enforces the assumed rate limit.
func (l *LionDesk) auth(w http.ResponseWriter, r *http.Request) (string, bool) {
	token := BearerToken(r)
	if !slices.Contains(l.opts.Tokens, token) {
		l.Unauthorized(w, `Bearer realm="LionDesk sandbox", error="invalid_token"`, "Unauthorized: send a valid access token as Authorization: Bearer <token>")
		return "", false
	}
	return token, true
}

// contactFields decodes a POST or PATCH /contacts body: only the documented fields, each of its
// type; null clears a field. Unknown fields are refused (a sandbox choice, so that a misspelled
// field fails loudly instead of vanishing).
type contactFields map[string]json.RawMessage

func decodeContactFields(r *http.Request) (contactFields, error) {
	var raw map[string]json.RawMessage
	if err := decodeJSON(r, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return nil, fmt.Errorf("the body must be a JSON object")
	}
	probe := &LionDeskContact{}
	for k := range raw {
		if _, ok := probe.textFields()[k]; ok {
			continue
		}
		if _, ok := probe.idFields()[k]; ok || k == "tags" {
			continue
		}
		return nil, fmt.Errorf("unknown field %q", k)
	}
	return raw, nil
}

// textFields are the documented text fields of a contact, by JSON name.
func (c *LionDeskContact) textFields() map[string]*string {
	return map[string]*string{
		"first_name": &c.FirstName, "last_name": &c.LastName, "email": &c.Email,
		"mobile_phone": &c.MobilePhone, "home_phone": &c.HomePhone, "office_phone": &c.OfficePhone,
		"fax": &c.Fax, "company": &c.Company, "birthday": &c.Birthday, "anniversary": &c.Anniversary,
		"spouse_name": &c.SpouseName, "spouse_email": &c.SpouseEmail, "spouse_phone": &c.SpousePhone,
		"spouse_birthday": &c.SpouseBirthday,
	}
}

// idFields are the documented id fields of a contact, by JSON name.
func (c *LionDeskContact) idFields() map[string]**int64 {
	return map[string]**int64{"assigned_user_id": &c.AssignedUserID, "hotness_id": &c.HotnessID, "source_id": &c.SourceID}
}

// apply sets the fields on c.
func (f contactFields) apply(c *LionDeskContact) error {
	texts, ids := c.textFields(), c.idFields()
	for k, v := range f {
		switch {
		case texts[k] != nil:
			var s *string
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("%s must be a string", k)
			}
			*texts[k] = ""
			if s != nil {
				*texts[k] = strings.TrimSpace(*s)
			}
		case ids[k] != nil:
			var id *int64
			if err := json.Unmarshal(v, &id); err != nil || (id != nil && *id <= 0) {
				return fmt.Errorf("%s must be a positive integer id", k)
			}
			*ids[k] = id
		case k == "tags":
			tags, err := decodeTags(v)
			if err != nil {
				return err
			}
			c.Tags = tags
		}
	}
	return nil
}

// decodeTags takes tags as a comma-separated string or an array of strings, and returns them as
// a comma-separated string without blanks.
func decodeTags(v json.RawMessage) (string, error) {
	var list []string
	var s *string
	if err := json.Unmarshal(v, &s); err == nil {
		if s != nil {
			list = strings.Split(*s, ",")
		}
	} else if err := json.Unmarshal(v, &list); err != nil {
		return "", fmt.Errorf("tags must be a comma-separated string or an array of strings")
	}
	out := make([]string, 0, len(list))
	for _, t := range list {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return strings.Join(out, ","), nil
}

func (l *LionDesk) postContact(w http.ResponseWriter, r *http.Request) {
	fields, err := decodeContactFields(r)
	if err != nil {
		writeLionDeskError(w, http.StatusBadRequest, "Invalid request body: %v", err)
		return
	}
	c := &LionDeskContact{}
	if err := fields.apply(c); err != nil {
		writeLionDeskError(w, http.StatusBadRequest, "%v", err)
		return
	}
	now := stamp(l.now())
	l.mu.Lock()
	if c.SourceID != nil && !l.sourceExistsLocked(*c.SourceID) {
		l.mu.Unlock()
		writeLionDeskError(w, http.StatusBadRequest, "source_id %d is not a contact source", *c.SourceID)
		return
	}
	l.lastID.contact++
	c.ID, c.CreatedAt, c.UpdatedAt = l.lastID.contact, now, now
	l.contacts = append(l.contacts, c)
	out := c.clone()
	l.mu.Unlock()
	writeJSON(w, http.StatusCreated, out)
}

func (l *LionDesk) patchContact(w http.ResponseWriter, r *http.Request) {
	fields, err := decodeContactFields(r)
	if err != nil {
		writeLionDeskError(w, http.StatusBadRequest, "Invalid request body: %v", err)
		return
	}
	now := stamp(l.now())
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.contactLocked(r)
	if c == nil {
		writeLionDeskError(w, http.StatusNotFound, "Contact %s not found", r.PathValue("id"))
		return
	}
	next := c.clone()
	if err := fields.apply(&next); err != nil {
		writeLionDeskError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if next.SourceID != nil && !l.sourceExistsLocked(*next.SourceID) {
		writeLionDeskError(w, http.StatusBadRequest, "source_id %d is not a contact source", *next.SourceID)
		return
	}
	next.UpdatedAt = now
	*c = next
	writeJSON(w, http.StatusOK, c.clone())
}

// contactLocked returns the contact named by the {id} path value, or nil.
func (l *LionDesk) contactLocked(r *http.Request) *LionDeskContact {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		return nil
	}
	return l.findContactLocked(id)
}

func (l *LionDesk) getContact(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.contactLocked(r)
	if c == nil {
		writeLionDeskError(w, http.StatusNotFound, "Contact %s not found", r.PathValue("id"))
		return
	}
	writeJSON(w, http.StatusOK, c.clone())
}

// liondeskContactQuery is the query GET /contacts accepts; anything else is 400 rather than an
// unfiltered list.
var liondeskContactQuery = []string{"email", "phone", "updated_since", "limit", "offset"}

func (l *LionDesk) listContacts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if !slices.Contains(liondeskContactQuery, k) {
			writeLionDeskError(w, http.StatusBadRequest, "sandbox: the contacts filter %q is not emulated", k)
			return
		}
	}
	limit, offset, err := pageParams(q, 50, 100)
	if err != nil {
		writeLionDeskError(w, http.StatusBadRequest, "%v", err)
		return
	}
	var since time.Time
	if v := q.Get("updated_since"); v != "" {
		if since, err = time.Parse(time.RFC3339, v); err != nil {
			writeLionDeskError(w, http.StatusBadRequest, "Invalid updated_since %q: want an RFC 3339 time", v)
			return
		}
	}
	email, phone := emailKey(q.Get("email")), phoneKey(q.Get("phone"))
	if q.Has("phone") && phone == "" {
		writeLionDeskError(w, http.StatusBadRequest, "Invalid phone %q", q.Get("phone"))
		return
	}

	var hits []LionDeskContact
	l.mu.Lock()
	for _, c := range l.contacts {
		switch {
		case q.Has("email") && emailKey(c.Email) != email:
		case q.Has("phone") && !slices.ContainsFunc(c.phones(), func(p string) bool { return p != "" && phoneKey(p) == phone }):
		case !since.IsZero() && c.UpdatedAt.Before(since):
		default:
			hits = append(hits, c.clone())
		}
	}
	l.mu.Unlock()
	if !since.IsZero() {
		slices.SortFunc(hits, func(a, b LionDeskContact) int {
			return cmp.Or(a.UpdatedAt.Compare(b.UpdatedAt), cmp.Compare(a.ID, b.ID))
		})
	}
	writeJSON(w, http.StatusOK, page(hits, limit, offset))
}

// pageParams reads limit (default def, capped at maxLimit) and offset.
func pageParams(q url.Values, def, maxLimit int) (limit, offset int, err error) {
	limit = def
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, 0, fmt.Errorf("invalid limit %q", v)
		}
		limit = min(n, maxLimit)
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, 0, fmt.Errorf("invalid offset %q", v)
		}
		offset = n
	}
	return limit, offset, nil
}

func page[T any](all []T, limit, offset int) liondeskList[T] {
	out := liondeskList[T]{Data: []T{}, Total: len(all)}
	if offset < len(all) {
		out.Data = all[offset:min(offset+limit, len(all))]
	}
	return out
}

type liondeskNoteRequest struct {
	Content string `json:"content"`
}

// postNote records a note on a contact. A note does not change the contact's updated_at (a
// sandbox choice: polling by updated_since sees contact changes, not activity).
func (l *LionDesk) postNote(w http.ResponseWriter, r *http.Request) {
	var req liondeskNoteRequest
	if err := decodeJSON(r, &req); err != nil {
		writeLionDeskError(w, http.StatusBadRequest, "Invalid request body: %v", err)
		return
	}
	if strings.TrimSpace(req.Content) == "" {
		writeLionDeskError(w, http.StatusBadRequest, "Missing required field: content")
		return
	}
	now := stamp(l.now())
	l.mu.Lock()
	c := l.contactLocked(r)
	if c == nil {
		l.mu.Unlock()
		writeLionDeskError(w, http.StatusNotFound, "Contact %s not found", r.PathValue("id"))
		return
	}
	l.lastID.note++
	n := LionDeskNote{ID: l.lastID.note, ContactID: c.ID, Content: req.Content, CreatedAt: now, UpdatedAt: now}
	l.notes = append(l.notes, n)
	l.mu.Unlock()
	writeJSON(w, http.StatusCreated, n)
}

func (l *LionDesk) listNotes(w http.ResponseWriter, r *http.Request) {
	limit, offset, err := pageParams(r.URL.Query(), 50, 100)
	if err != nil {
		writeLionDeskError(w, http.StatusBadRequest, "%v", err)
		return
	}
	l.mu.Lock()
	c := l.contactLocked(r)
	if c == nil {
		l.mu.Unlock()
		writeLionDeskError(w, http.StatusNotFound, "Contact %s not found", r.PathValue("id"))
		return
	}
	var notes []LionDeskNote
	for _, n := range l.notes {
		if n.ContactID == c.ID {
			notes = append(notes, n)
		}
	}
	l.mu.Unlock()
	writeJSON(w, http.StatusOK, page(notes, limit, offset))
}

func (l *LionDesk) listSources(w http.ResponseWriter, r *http.Request) {
	limit, offset, err := pageParams(r.URL.Query(), 50, 100)
	if err != nil {
		writeLionDeskError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, page(l.Sources(), limit, offset))
}

// postSource creates a contact source. Names are not unique: like contacts, nothing in the
// documentation says LionDesk deduplicates them.
func (l *LionDesk) postSource(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeLionDeskError(w, http.StatusBadRequest, "Invalid request body: %v", err)
		return
	}
	name := strings.TrimSpace(req.Name)
	if name == "" {
		writeLionDeskError(w, http.StatusBadRequest, "Missing required field: name")
		return
	}
	l.mu.Lock()
	l.lastID.source++
	s := LionDeskSource{ID: l.lastID.source, Name: name}
	l.sources = append(l.sources, s)
	l.mu.Unlock()
	writeJSON(w, http.StatusCreated, s)
}

// liondeskState is the read-only view at GET /_sandbox/liondesk/state.
type liondeskState struct {
	Contacts []LionDeskContact `json:"contacts"`
	Notes    []LionDeskNote    `json:"notes"`
	Sources  []LionDeskSource  `json:"sources"`
}

func (l *LionDesk) state() any {
	return liondeskState{Contacts: nonNil(l.Contacts()), Notes: nonNil(l.Notes()), Sources: nonNil(l.Sources())}
}
