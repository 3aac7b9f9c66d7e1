package sandbox

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

var errNotFound = errors.New("not found")

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("url %q is not an absolute http(s) URL", raw)
	}
	return nil
}

const dotloopAPI = "/public/v2"

func (d *Dotloop) routes() {
	d.oauth.mount(d.Kit, "/oauth/authorize", "/oauth/token", nil)
	d.HandleFunc("GET "+dotloopAPI+"/profile", d.listProfiles)
	d.HandleFunc("POST "+dotloopAPI+"/loop-it", d.loopIt)
	d.HandleFunc("GET "+dotloopAPI+"/profile/{pid}/loop", d.listLoops)
	d.HandleFunc("GET "+dotloopAPI+"/profile/{pid}/loop/{lid}", d.getLoop)
	d.HandleFunc("GET "+dotloopAPI+"/profile/{pid}/loop/{lid}/detail", d.getDetail)
	d.HandleFunc("PATCH "+dotloopAPI+"/profile/{pid}/loop/{lid}/detail", d.patchDetail)
	d.HandleFunc("GET "+dotloopAPI+"/profile/{pid}/loop/{lid}/participant", d.listParticipants)
	d.HandleFunc("PATCH "+dotloopAPI+"/profile/{pid}/loop/{lid}/participant/{partid}", d.patchParticipant)
	d.HandleFunc("POST "+dotloopAPI+"/subscription", d.postSubscription)
	d.HandleFunc("GET "+dotloopAPI+"/subscription", d.listSubscriptions)
	d.HandleFunc("DELETE "+dotloopAPI+"/subscription/{id}", d.deleteSubscription)
	d.HandleKnob("POST /loops/{id}/status", d.postStatusForm)
}

// auth: the OAuth endpoints authenticate the client themselves; the API wants a valid,
// unexpired access token.
func (d *Dotloop) auth(w http.ResponseWriter, r *http.Request) (string, bool) {
	if strings.HasPrefix(r.URL.Path, "/oauth/") {
		return "oauth", true
	}
	tok := BearerToken(r)
	_, known, ok := d.oauth.valid(tok)
	switch {
	case !known:
		d.Unauthorized(w, `Bearer error="invalid_token"`, "Unauthorized: send a valid access token as Authorization: Bearer <token>")
		return "", false
	case !ok:
		d.Unauthorized(w, `Bearer error="invalid_token", error_description="expired"`, "Unauthorized: the access token has expired")
		return "", false
	}
	return tok, true
}

// bucket: the OAuth endpoints are not counted.
func (d *Dotloop) bucket(r *http.Request, _ string) Bucket {
	return Bucket{Unlimited: strings.HasPrefix(r.URL.Path, "/oauth/")}
}

type dotloopData[T any] struct {
	Data T `json:"data"`
}

func (d *Dotloop) listProfiles(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, dotloopData[[]DotloopProfile]{d.opts.Profiles})
}

func (d *Dotloop) profile(id int64) bool {
	return slices.ContainsFunc(d.opts.Profiles, func(p DotloopProfile) bool { return p.ID == id })
}

// dotloopLoopIt is the Loop-It request body.
type dotloopLoopIt struct {
	Name            string `json:"name"`
	TransactionType string `json:"transactionType"`
	Status          string `json:"status"`
	StreetName      string `json:"streetName"`
	StreetNumber    string `json:"streetNumber"`
	Unit            string `json:"unit"`
	City            string `json:"city"`
	ZipCode         string `json:"zipCode"`
	State           string `json:"state"`
	Country         string `json:"country"`
	MLSPropertyID   string `json:"mlsPropertyId"`
	MLSID           string `json:"mlsId"`
	MLSAgentID      string `json:"mlsAgentId"`
	NRDSID          string `json:"nrdsId"`
	TemplateID      int64  `json:"templateId"`
	Participants    []struct {
		FullName string `json:"fullName"`
		Email    string `json:"email"`
		Role     string `json:"role"`
		Phone    string `json:"Phone"`
	} `json:"participants"`
}

var dotloopTypes = []string{"PURCHASE_OFFER", "LISTING_FOR_SALE", "LISTING_FOR_LEASE", "LEASE_OFFER", "REAL_ESTATE_OTHER", "OTHER"}

func (d *Dotloop) loopIt(w http.ResponseWriter, r *http.Request) {
	pid := int64(DefaultDotloopProfileID)
	if len(d.opts.Profiles) > 0 {
		pid = d.opts.Profiles[0].ID
	}
	if s := r.URL.Query().Get("profile_id"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || !d.profile(n) {
			d.WriteError(w, http.StatusBadRequest, "profile_id "+s+" is not one of the user's profiles")
			return
		}
		pid = n
	} else if len(d.opts.Profiles) > 1 {
		d.WriteError(w, http.StatusBadRequest, "profile_id is required: the user has more than one profile")
		return
	}
	var in dotloopLoopIt
	if err := decodeJSON(r, &in); err != nil {
		d.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case strings.TrimSpace(in.Name) == "":
		d.WriteError(w, http.StatusBadRequest, "name is required")
		return
	case !slices.Contains(dotloopTypes, in.TransactionType):
		d.WriteError(w, http.StatusBadRequest, fmt.Sprintf("transactionType %q is not one of %v", in.TransactionType, dotloopTypes))
		return
	case in.Status == "":
		d.WriteError(w, http.StatusBadRequest, "status is required")
		return
	}
	now := stamp(d.now())
	d.mu.Lock()
	d.lastID.loop++
	l := &DotloopLoopState{
		DotloopLoop: DotloopLoop{
			ID: d.lastID.loop, ProfileID: pid, Name: in.Name, TransactionType: in.TransactionType, Status: in.Status,
			Created: now, Updated: now, LoopURL: "https://www.dotloop.com/m/loop?viewId=" + strconv.FormatInt(d.lastID.loop, 10),
		},
		TemplateID: in.TemplateID,
	}
	addr := l.section("Property Address")
	for k, v := range map[string]string{
		"Street Number": in.StreetNumber, "Street Name": in.StreetName, "Unit Number": in.Unit, "City": in.City,
		"State/Prov": in.State, "Postal Code": in.ZipCode, "Country": in.Country, "MLS Number": in.MLSPropertyID,
	} {
		if v != "" {
			addr[k] = v
		}
	}
	for _, p := range in.Participants {
		d.lastID.participant++
		l.Participants = append(l.Participants, DotloopParticipant{ID: d.lastID.participant, FullName: p.FullName, Email: p.Email, Role: p.Role, Phone: p.Phone})
	}
	d.loops = append(d.loops, l)
	out := l.DotloopLoop
	hooks := slices.Clone(d.hooks)
	d.mu.Unlock()
	for _, fn := range hooks {
		fn(out)
	}
	writeJSON(w, http.StatusCreated, dotloopData[DotloopLoop]{out})
}

// pathLoop finds the loop of {pid}/{lid}, or answers 404.
func (d *Dotloop) pathLoop(w http.ResponseWriter, r *http.Request) *DotloopLoopState {
	pid, err1 := strconv.ParseInt(r.PathValue("pid"), 10, 64)
	lid, err2 := strconv.ParseInt(r.PathValue("lid"), 10, 64)
	var l *DotloopLoopState
	if err1 == nil && err2 == nil {
		l = d.findLocked(pid, lid)
	}
	if l == nil {
		d.WriteError(w, http.StatusNotFound, "loop not found")
	}
	return l
}

func (d *Dotloop) listLoops(w http.ResponseWriter, r *http.Request) {
	pid, err := strconv.ParseInt(r.PathValue("pid"), 10, 64)
	if err != nil || !d.profile(pid) {
		d.WriteError(w, http.StatusNotFound, "profile not found")
		return
	}
	size, number := 20, 1
	if s := r.URL.Query().Get("batch_size"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 1 && n <= 100 {
			size = n
		} else {
			d.WriteError(w, http.StatusBadRequest, "batch_size must be 1 to 100")
			return
		}
	}
	if s := r.URL.Query().Get("batch_number"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 1 {
			number = n
		} else {
			d.WriteError(w, http.StatusBadRequest, "batch_number must be at least 1")
			return
		}
	}
	d.mu.Lock()
	var all []DotloopLoop
	for _, l := range slices.Backward(d.loops) {
		if l.ProfileID == pid {
			all = append(all, l.DotloopLoop)
		}
	}
	d.mu.Unlock()
	from := min((number-1)*size, len(all))
	to := min(from+size, len(all))
	writeJSON(w, http.StatusOK, struct {
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
		Data []DotloopLoop `json:"data"`
	}{Meta: struct {
		Total int `json:"total"`
	}{len(all)}, Data: nonNil(all[from:to])})
}

func (d *Dotloop) getLoop(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.pathLoop(w, r); l != nil {
		writeJSON(w, http.StatusOK, dotloopData[DotloopLoop]{l.DotloopLoop})
	}
}

func (d *Dotloop) getDetail(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.pathLoop(w, r); l != nil {
		writeJSON(w, http.StatusOK, dotloopData[DotloopDetail]{l.clone().Detail})
	}
}

func (d *Dotloop) patchDetail(w http.ResponseWriter, r *http.Request) {
	var in DotloopDetail
	if err := decodeJSON(r, &in); err != nil {
		d.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.pathLoop(w, r)
	if l == nil {
		return
	}
	for name, sec := range in {
		for f, v := range sec {
			l.section(name)[f] = v
		}
	}
	l.Updated = stamp(d.now())
	l.DetailUpdates++
	writeJSON(w, http.StatusOK, dotloopData[DotloopDetail]{l.clone().Detail})
}

func (d *Dotloop) listParticipants(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if l := d.pathLoop(w, r); l != nil {
		writeJSON(w, http.StatusOK, dotloopData[[]DotloopParticipant]{nonNil(slices.Clone(l.Participants))})
	}
}

func (d *Dotloop) patchParticipant(w http.ResponseWriter, r *http.Request) {
	var in struct {
		FullName *string `json:"fullName"`
		Email    *string `json:"email"`
		Role     *string `json:"role"`
		Phone    *string `json:"Phone"`
	}
	if err := decodeJSON(r, &in); err != nil {
		d.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	d.mu.Lock()
	l := d.pathLoop(w, r)
	if l == nil {
		d.mu.Unlock()
		return
	}
	id, _ := strconv.ParseInt(r.PathValue("partid"), 10, 64)
	i := slices.IndexFunc(l.Participants, func(p DotloopParticipant) bool { return p.ID == id })
	if i < 0 {
		d.mu.Unlock()
		d.WriteError(w, http.StatusNotFound, "participant not found")
		return
	}
	p := &l.Participants[i]
	for _, f := range []struct{ dst, v *string }{{&p.FullName, in.FullName}, {&p.Email, in.Email}, {&p.Role, in.Role}, {&p.Phone, in.Phone}} {
		if f.v != nil {
			*f.dst = *f.v
		}
	}
	l.Updated = stamp(d.now())
	out := *p
	d.mu.Unlock()
	writeJSON(w, http.StatusOK, dotloopData[DotloopParticipant]{out})
}

func (d *Dotloop) postSubscription(w http.ResponseWriter, r *http.Request) {
	var in DotloopSubscription
	if err := decodeJSON(r, &in); err != nil {
		d.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	s, err := d.Subscribe(in)
	if err != nil {
		d.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.SigningKey = ""
	writeJSON(w, http.StatusCreated, dotloopData[DotloopSubscription]{s})
}

func (d *Dotloop) listSubscriptions(w http.ResponseWriter, _ *http.Request) {
	subs := d.Subscriptions()
	for i := range subs {
		subs[i].SigningKey = ""
	}
	writeJSON(w, http.StatusOK, dotloopData[[]DotloopSubscription]{nonNil(subs)})
}

func (d *Dotloop) deleteSubscription(w http.ResponseWriter, r *http.Request) {
	id, _ := strconv.ParseInt(r.PathValue("id"), 10, 64)
	d.mu.Lock()
	i := slices.IndexFunc(d.subs, func(s DotloopSubscription) bool { return s.ID == id })
	if i >= 0 {
		d.subs = slices.Delete(d.subs, i, i+1)
	}
	d.mu.Unlock()
	if i < 0 {
		d.WriteError(w, http.StatusNotFound, "subscription not found")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// postStatusForm is the page's button: status, and for SOLD price, commission (whole dollars)
// and close_date. It answers 204 to a JSON caller and returns a browser to the page.
func (d *Dotloop) postStatusForm(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		writeJSON(w, http.StatusNotFound, knobError{"no such loop"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	status := strings.TrimSpace(r.PostFormValue("status"))
	if status != DotloopUnderContract && status != DotloopSold {
		writeJSON(w, http.StatusBadRequest, knobError{"status must be UNDER_CONTRACT or SOLD"})
		return
	}
	num := func(name string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSpace(r.PostFormValue(name)), 10, 64)
		return n
	}
	f := DotloopFinancials{Price: num("price"), Commission: num("commission"), CloseDate: r.PostFormValue("close_date")}
	if err := d.SetLoopStatus(id, status, f); err != nil {
		writeJSON(w, http.StatusNotFound, knobError{err.Error()})
		return
	}
	knobDone(w, r)
}

// tables show the loops, newest first, with their buttons, and the deliveries.
func (d *Dotloop) tables() []PageTable {
	loops := PageTable{Title: "Loops", Columns: []string{"id", "profile", "name", "type", "status", "participants", "property", "financials", "updated"}, ActionsColumn: "move to"}
	subs := PageTable{Title: "Subscriptions", Columns: []string{"id", "url", "events", "enabled"}}
	delivs := PageTable{Title: "Webhook deliveries", Columns: []string{"subscription", "event", "loop", "state", "attempts", "last status", "last error"}}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, l := range slices.Backward(d.loops) {
		var parts []string
		for _, p := range l.Participants {
			parts = append(parts, fmt.Sprintf("%s (%s) %s %s", p.FullName, p.Role, p.Email, p.Phone))
		}
		a := l.Detail["Property Address"]
		fin := l.Detail["Financials"]
		loops.Rows = append(loops.Rows, []string{
			strconv.FormatInt(l.ID, 10), strconv.FormatInt(l.ProfileID, 10), l.Name, l.TransactionType, l.Status,
			strings.Join(parts, "; "), strings.TrimSpace(a["Street Number"] + " " + a["Street Name"] + ", " + a["City"]),
			strings.TrimSpace(fin["Purchase/Sale Price"] + " " + fin["Sale Commission Total"]), l.Updated.Format(time.RFC3339),
		})
		act := "/_sandbox/dotloop/loops/" + strconv.FormatInt(l.ID, 10) + "/status"
		loops.RowActions = append(loops.RowActions, []PageAction{
			{Action: act, Fields: map[string]string{"status": DotloopUnderContract}, Label: "Under contract"},
			{Action: act, Fields: map[string]string{"status": DotloopSold, "price": "525000", "commission": "15750"}, Label: "Sold ($525,000, $15,750 commission)"},
			{Action: act, Fields: map[string]string{"status": DotloopSold}, Label: "Sold, no financials"},
		})
	}
	for _, s := range slices.Backward(d.subs) {
		subs.Rows = append(subs.Rows, []string{strconv.FormatInt(s.ID, 10), s.URL, strings.Join(s.EventTypes, ", "), strconv.FormatBool(s.Enabled)})
	}
	for _, x := range slices.Backward(d.delivs) {
		delivs.Rows = append(delivs.Rows, []string{
			strconv.FormatInt(x.SubscriptionID, 10), x.Payload.EventType, strconv.FormatInt(x.Payload.Event.LoopID, 10),
			x.State, strconv.Itoa(x.Attempts), strconv.Itoa(x.LastStatus), x.LastError,
		})
	}
	return []PageTable{loops, subs, delivs}
}
