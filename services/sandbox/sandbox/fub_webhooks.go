package sandbox

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Follow Up Boss webhooks (FUB's "Webhooks" documentation): registered with POST /v1/webhooks,
// listed and deleted; fired by the people changes the sandbox emulates (a person created by
// POST /v1/events, PUT /v1/people/{id}, the page's stage buttons and FUB.SetStage). The
// payload is thin, {"eventId","eventCreated","event","resourceIds","uri"}, and signed with
// FUB-Signature = hex(HMAC-SHA256(key = the system key, message = base64(raw body))).
// Deliveries are asynchronous and retried, and never hold up the API call that caused them.

// DefaultFUBWebhookBaseURL is the base of a webhook's "uri" when neither
// FUBWebhookOptions.BaseURL nor a request's host says otherwise: the standalone sandbox.
const DefaultFUBWebhookBaseURL = "http://127.0.0.1:8099/fub"

// FUB webhook event names. A change of stage fires both peopleStageUpdated and peopleUpdated,
// as FUB documents that peopleUpdated covers the stage too.
const (
	FUBPeopleCreated      = "peopleCreated"
	FUBPeopleUpdated      = "peopleUpdated"
	FUBPeopleStageUpdated = "peopleStageUpdated"
)

// fubWebhookEvents are the events a webhook may be registered for: the people events FUB
// lists [O], and the <resource>Created/Updated/Deleted events of the other resources it names
// (the exact names of those are a sandbox choice). Only the three people events above fire.
var fubWebhookEvents = func() map[string]bool {
	m := map[string]bool{
		"peopleCreated": true, "peopleUpdated": true, "peopleDeleted": true, "peopleTagsCreated": true,
		"peopleStageUpdated": true, "peopleRelationshipCreated": true, "peopleRelationshipUpdated": true,
		"peopleRelationshipDeleted": true,
	}
	for _, r := range []string{"notes", "emails", "tasks", "appointments", "textMessages", "calls", "deals"} {
		for _, op := range []string{"Created", "Updated", "Deleted"} {
			m[r+op] = true
		}
	}
	return m
}()

// fubMaxWebhooksPerEvent is FUB's documented limit per event and system [S].
const fubMaxWebhooksPerEvent = 2

// FUBWebhookOptions configures webhook delivery. Zero fields take the defaults.
type FUBWebhookOptions struct {
	// BaseURL is the base of each payload's "uri" (uri = BaseURL + "/v1/people?id=<id>").
	// Default: the base URL the causing request was sent to (http://<its host>/fub), or
	// DefaultFUBWebhookBaseURL for changes made from Go.
	BaseURL string
	// Retries is how many times a delivery that did not get a 2xx is tried again. Default 5,
	// as FUB documents [S].
	Retries int
	// Backoff is the wait before the first retry; it doubles before each next one. Default
	// 1s (FUB spreads its retries over 8 hours; the sandbox compresses that).
	Backoff time.Duration
	// Timeout bounds each delivery; FUB expects a 2xx within 10 s [S]. Default 10s.
	Timeout time.Duration
	// Client sends the deliveries. Default: an http.Client with Timeout.
	Client *http.Client
}

// setDefaults normalizes BaseURL; the delivery fields take their defaults in
// the shared webhook sender (newWebhookSender).
func (o *FUBWebhookOptions) setDefaults() {
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
}

// FUBWebhook is one registered webhook.
type FUBWebhook struct {
	ID      int64     `json:"id"`
	Event   string    `json:"event"`
	URL     string    `json:"url"`
	Status  string    `json:"status"`
	System  string    `json:"system"`
	Created time.Time `json:"created"`
}

// FUBWebhookPayload is the body FUB posts: ids only; the receiver fetches the resource.
type FUBWebhookPayload struct {
	EventID      string  `json:"eventId"`
	EventCreated string  `json:"eventCreated"`
	Event        string  `json:"event"`
	ResourceIDs  []int64 `json:"resourceIds"`
	URI          string  `json:"uri"`
}

// Delivery states of a FUBWebhookDelivery.
const (
	FUBDeliveryPending   = DeliveryPending
	FUBDeliveryDelivered = DeliveryDelivered
	FUBDeliveryFailed    = DeliveryFailed
)

// FUBWebhookDelivery is the record of one payload sent to one registered webhook: its
// Delivery's Signature is the FUB-Signature.
type FUBWebhookDelivery struct {
	WebhookID int64             `json:"webhookId"`
	Payload   FUBWebhookPayload `json:"payload"`
	Delivery
}

// fubWebhooks is the webhook registry and delivery log of one FUB. Its own lock is taken after
// FUB.mu, never before.
type fubWebhooks struct {
	opts   FUBWebhookOptions
	system string
	now    func() time.Time
	kit    *Kit

	mu         sync.Mutex
	hooks      []FUBWebhook
	lastID     int64
	baseURL    string
	deliveries []*FUBWebhookDelivery
}

func newFUBWebhooks(o FUBOptions, now func() time.Time, kit *Kit) *fubWebhooks {
	wo := o.Webhooks
	wo.setDefaults()
	return &fubWebhooks{opts: wo, system: o.SystemName, now: now, baseURL: wo.BaseURL, kit: kit}
}

// fubWebhookOptions signs FUB's deliveries with the system key and retries them as the options
// say.
func fubWebhookOptions(o FUBOptions) WebhookOptions {
	wo := o.Webhooks
	return WebhookOptions{
		SignatureHeader: "FUB-Signature",
		Sign:            func(body []byte) string { return SignFUBWebhook(o.SystemKey, body) },
		Header: func([]byte) map[string]string {
			return map[string]string{"User-Agent": "Follow Up Boss sandbox webhooks"}
		},
		Delivery: DeliveryOptions{Retries: wo.Retries, Backoff: wo.Backoff, Timeout: wo.Timeout, Client: wo.Client},
	}
}

// reset forgets the registrations and the delivery log; deliveries in flight finish.
func (w *fubWebhooks) reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.hooks, w.lastID, w.deliveries, w.baseURL = nil, 0, nil, w.opts.BaseURL
}

// SignFUBWebhook returns the FUB-Signature of body under systemKey:
// hex(HMAC-SHA256(key = systemKey, message = base64(body))).
func SignFUBWebhook(systemKey string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(systemKey))
	_, _ = mac.Write([]byte(base64.StdEncoding.EncodeToString(body)))
	return hex.EncodeToString(mac.Sum(nil))
}

// Webhooks returns the registered webhooks, in id order.
func (f *FUB) Webhooks() []FUBWebhook {
	f.wh.mu.Lock()
	defer f.wh.mu.Unlock()
	return slices.Clone(f.wh.hooks)
}

// WebhookDeliveries returns a copy of every delivery so far, oldest first.
func (f *FUB) WebhookDeliveries() []FUBWebhookDelivery {
	f.wh.mu.Lock()
	defer f.wh.mu.Unlock()
	out := make([]FUBWebhookDelivery, len(f.wh.deliveries))
	for i, d := range f.wh.deliveries {
		out[i] = *d
		out[i].Payload.ResourceIDs = slices.Clone(d.Payload.ResourceIDs)
	}
	return out
}

// RegisterWebhook registers url for event, as POST /v1/webhooks does.
func (f *FUB) RegisterWebhook(event, rawURL string) (FUBWebhook, error) {
	return f.wh.register(event, rawURL)
}

// SetWebhookBaseURL sets the base of each payload's "uri" from now on; empty restores the
// default (the causing request's host).
func (f *FUB) SetWebhookBaseURL(base string) {
	f.wh.mu.Lock()
	defer f.wh.mu.Unlock()
	f.wh.baseURL = strings.TrimRight(base, "/")
}

// FUBPersonUpdate is the body of PUT /v1/people/{id}: only the fields present change.
// Emails and phones replace the person's lists.
type FUBPersonUpdate struct {
	FirstName *string     `json:"firstName,omitempty"`
	LastName  *string     `json:"lastName,omitempty"`
	Stage     *string     `json:"stage,omitempty"`
	Emails    *[]FUBValue `json:"emails,omitempty"`
	Phones    *[]FUBValue `json:"phones,omitempty"`
}

// ErrFUBPersonNotFound is returned for an unknown person, or one hidden by the assignment delay.
var ErrFUBPersonNotFound = errors.New("person not found")

// errFUBInvalid marks an update the API refuses with 400.
var errFUBInvalid = errors.New("invalid update")

// SetStage moves person id to stage, as PUT /v1/people/{id} {"stage":…} does, and fires the
// webhooks.
func (f *FUB) SetStage(id int64, stage string) (FUBPerson, error) {
	return f.UpdatePerson(id, FUBPersonUpdate{Stage: &stage})
}

// UpdatePerson applies u to person id, as PUT /v1/people/{id} does, and fires the webhooks:
// peopleStageUpdated when the stage changed, and peopleUpdated when anything changed.
func (f *FUB) UpdatePerson(id int64, u FUBPersonUpdate) (FUBPerson, error) {
	return f.updatePerson(id, u, "")
}

func (f *FUB) updatePerson(id int64, u FUBPersonUpdate, requestBase string) (FUBPerson, error) {
	if u.Stage != nil && strings.TrimSpace(*u.Stage) == "" {
		return FUBPerson{}, fmt.Errorf("%w: stage must not be empty", errFUBInvalid)
	}
	now := f.now()
	f.mu.Lock()
	p := f.findLocked(id)
	if p == nil || !p.visible(now) {
		f.mu.Unlock()
		return FUBPerson{}, fmt.Errorf("person %d: %w", id, ErrFUBPersonNotFound)
	}
	stageChanged, changed := p.apply(u)
	if changed {
		p.Updated = stamp(now)
	}
	person := p.clone()
	f.mu.Unlock()

	var events []string
	if stageChanged {
		events = append(events, FUBPeopleStageUpdated)
	}
	if changed {
		events = append(events, FUBPeopleUpdated)
	}
	f.wh.fire(requestBase, id, events...)
	return person, nil
}

// apply changes p with u and reports what changed.
func (p *fubPerson) apply(u FUBPersonUpdate) (stageChanged, changed bool) {
	set := func(dst *string, v *string) {
		if v != nil && strings.TrimSpace(*v) != *dst {
			*dst, changed = strings.TrimSpace(*v), true
		}
	}
	set(&p.FirstName, u.FirstName)
	set(&p.LastName, u.LastName)
	if u.Stage != nil && strings.TrimSpace(*u.Stage) != p.Stage {
		p.Stage, stageChanged, changed = strings.TrimSpace(*u.Stage), true, true
	}
	replace := func(dst *[]FUBValue, v *[]FUBValue, key func(string) string) {
		if v == nil {
			return
		}
		next := addValues([]FUBValue{}, *v, key)
		if !slices.Equal(next, *dst) {
			*dst, changed = next, true
		}
	}
	replace(&p.Emails, u.Emails, emailKey)
	replace(&p.Phones, u.Phones, phoneKey)
	p.Name = strings.TrimSpace(p.FirstName + " " + p.LastName)
	return stageChanged, changed
}

func (w *fubWebhooks) register(event, rawURL string) (FUBWebhook, error) {
	if !fubWebhookEvents[event] {
		return FUBWebhook{}, fmt.Errorf("%w: unknown webhook event %q", errFUBInvalid, event)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return FUBWebhook{}, fmt.Errorf("%w: url %q is not an absolute http(s) URL", errFUBInvalid, rawURL)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, h := range w.hooks {
		if h.Event == event {
			n++
		}
	}
	if n >= fubMaxWebhooksPerEvent {
		return FUBWebhook{}, fmt.Errorf("%w: at most %d webhooks per event and system; %q has %d", errFUBInvalid, fubMaxWebhooksPerEvent, event, n)
	}
	w.lastID++
	h := FUBWebhook{ID: w.lastID, Event: event, URL: rawURL, Status: "Active", System: w.system, Created: stamp(w.now())}
	w.hooks = append(w.hooks, h)
	return h, nil
}

func (w *fubWebhooks) remove(id int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	i := slices.IndexFunc(w.hooks, func(h FUBWebhook) bool { return h.ID == id })
	if i < 0 {
		return false
	}
	w.hooks = slices.Delete(w.hooks, i, i+1)
	return true
}

// fire sends each event about person id to every webhook registered for it, in the
// background. requestBase is the base URL of the causing request, if any.
func (w *fubWebhooks) fire(requestBase string, id int64, events ...string) {
	if len(events) == 0 {
		return
	}
	if w.kit.Closed() {
		return // changes made after Close fire no webhooks
	}
	var sends []*FUBWebhookDelivery
	w.mu.Lock()
	base := cmpOr(w.baseURL, requestBase, DefaultFUBWebhookBaseURL)
	for _, event := range events {
		var payload *FUBWebhookPayload
		var body []byte
		for _, h := range w.hooks {
			if h.Event != event {
				continue
			}
			if payload == nil {
				// One event id per event, shared by every webhook and every retry.
				payload = &FUBWebhookPayload{
					EventID:      newEventID(),
					EventCreated: stamp(w.now()).Format(time.RFC3339),
					Event:        event,
					ResourceIDs:  []int64{id},
					URI:          base + "/v1/people?id=" + strconv.FormatInt(id, 10),
				}
				body, _ = json.Marshal(payload)
			}
			d := &FUBWebhookDelivery{WebhookID: h.ID, Payload: *payload, Delivery: w.kit.NewDelivery(h.URL, body)}
			w.deliveries = append(w.deliveries, d)
			sends = append(sends, d)
		}
	}
	w.mu.Unlock()
	for _, d := range sends {
		w.kit.Send(&d.Delivery, &w.mu)
	}
}

// newEventID returns a random UUID-shaped id.
func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func cmpOr(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// requestBaseURL is the FUB base URL as the client of r sees it.
func requestBaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + fubPrefix
}

// webhookRoutes adds the webhook and people-update API, the stage knob and the webhook view.
func (f *FUB) webhookRoutes() {
	f.HandleFunc("PUT /v1/people/{id}", f.putPerson)
	f.HandleFunc("POST /v1/webhooks", f.requireSystem(f.postWebhook))
	f.HandleFunc("GET /v1/webhooks", f.requireSystem(f.listWebhooks))
	f.HandleFunc("DELETE /v1/webhooks/{id}", f.requireSystem(f.deleteWebhook))
	f.HandleKnob("POST /people/{id}/stage", f.postStageForm)
	f.HandleKnob("GET /webhooks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, struct {
			Webhooks   []FUBWebhook         `json:"webhooks"`
			Deliveries []FUBWebhookDelivery `json:"deliveries"`
		}{nonNil(f.Webhooks()), nonNil(f.WebhookDeliveries())})
	})
}

// requireSystem refuses a webhook call without the registered system's headers: webhooks
// belong to a system, and are signed with its key (a sandbox choice; FUB also restricts them
// to the account owner, whom the sandbox does not model).
func (f *FUB) requireSystem(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-System") != f.opts.SystemName || r.Header.Get("X-System-Key") != f.opts.SystemKey {
			writeFUBError(w, http.StatusForbidden, "Webhooks require a registered system: send X-System and X-System-Key")
			return
		}
		next(w, r)
	}
}

func (f *FUB) putPerson(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeFUBError(w, http.StatusNotFound, "Person %s not found", r.PathValue("id"))
		return
	}
	var u FUBPersonUpdate
	if err := decodeJSON(r, &u); err != nil {
		writeFUBError(w, http.StatusBadRequest, "Invalid request body: %v", err)
		return
	}
	p, err := f.updatePerson(id, u, requestBaseURL(r))
	switch {
	case errors.Is(err, ErrFUBPersonNotFound):
		writeFUBError(w, http.StatusNotFound, "Person %d not found", id)
	case err != nil:
		writeFUBError(w, http.StatusBadRequest, "%v", err)
	default:
		writeJSON(w, http.StatusOK, p)
	}
}

func (f *FUB) postWebhook(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Event string `json:"event"`
		URL   string `json:"url"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeFUBError(w, http.StatusBadRequest, "Invalid request body: %v", err)
		return
	}
	h, err := f.wh.register(req.Event, req.URL)
	if err != nil {
		writeFUBError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, http.StatusCreated, h)
}

func (f *FUB) listWebhooks(w http.ResponseWriter, _ *http.Request) {
	hooks := f.Webhooks()
	writeJSON(w, http.StatusOK, struct {
		Metadata fubMetadata  `json:"_metadata"`
		Webhooks []FUBWebhook `json:"webhooks"`
	}{
		Metadata: fubMetadata{Collection: "webhooks", Limit: len(hooks), Total: len(hooks)},
		Webhooks: nonNil(hooks),
	})
}

func (f *FUB) deleteWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || !f.wh.remove(id) {
		writeFUBError(w, http.StatusNotFound, "Webhook %s not found", r.PathValue("id"))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// postStageForm is the page's stage button: an HTML form post that does what
// PUT /v1/people/{id} {"stage":…} does, then returns to the page.
func (f *FUB) postStageForm(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeJSON(w, http.StatusNotFound, knobError{"no such person"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	stage := strings.TrimSpace(r.PostFormValue("stage"))
	if _, err := f.updatePerson(id, FUBPersonUpdate{Stage: &stage}, requestBaseURL(r)); err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, ErrFUBPersonNotFound) {
			status = http.StatusNotFound
		}
		writeJSON(w, status, knobError{err.Error()})
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// fubPageStages are the stage buttons on the page: FUB's usual default stages (a sandbox
// choice; any stage name is accepted over the API).
var fubPageStages = []string{"Lead", "Prospect", "Active Client", "Under Contract", "Closed", "Past Client", "Trash"}

// fubStageActions returns the stage buttons of person id, whose stage is current.
func fubStageActions(id int64, current string) []PageAction {
	var out []PageAction
	for _, s := range fubPageStages {
		if s == current {
			continue
		}
		out = append(out, PageAction{
			Action: "/_sandbox/fub/people/" + strconv.FormatInt(id, 10) + "/stage",
			Fields: map[string]string{"stage": s},
			Label:  s,
		})
	}
	return out
}

// webhookTables are the page's view of the registrations and the deliveries, newest first.
func (w *fubWebhooks) webhookTables() []PageTable {
	hooks := PageTable{Title: "Webhooks", Columns: []string{"id", "event", "url", "status", "created"}}
	deliveries := PageTable{Title: "Webhook deliveries", Columns: []string{"webhook", "event", "eventId", "resourceIds", "state", "attempts", "last status", "last error"}}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, h := range slices.Backward(w.hooks) {
		hooks.Rows = append(hooks.Rows, []string{strconv.FormatInt(h.ID, 10), h.Event, h.URL, h.Status, h.Created.Format(time.RFC3339)})
	}
	for _, d := range slices.Backward(w.deliveries) {
		ids := make([]string, len(d.Payload.ResourceIDs))
		for i, id := range d.Payload.ResourceIDs {
			ids[i] = strconv.FormatInt(id, 10)
		}
		deliveries.Rows = append(deliveries.Rows, []string{
			strconv.FormatInt(d.WebhookID, 10), d.Payload.Event, d.Payload.EventID, strings.Join(ids, ", "),
			d.State, strconv.Itoa(d.Attempts), strconv.Itoa(d.LastStatus), d.LastError,
		})
	}
	return []PageTable{hooks, deliveries}
}
