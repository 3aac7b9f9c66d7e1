package sandbox

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
)

// graphName is the Graph emulation's path segment: an adapter's base URL is
// http://host:port/graph/v19.0 (in place of https://graph.facebook.com/v19.0).
const graphName = "graph"

// What the emulation takes from the documentation: the lead read
// GET /<version>/<leadgen_id>?access_token=… answering {"created_time","id","field_data":[{"name",
// "values":[…]}]} [S], ad_id and campaign_id as lead fields [O] ("Retrieving Leads"), the
// notification payload [S] and its X-Hub-Signature-256 [S]. What it assumes, because that text
// is silent (each is written down in docs/sandbox.md):
//   - Without ?fields the read answers id, created_time, ad_id, form_id and field_data; with
//     ?fields=a,b it answers those (and id). An organic lead has no ad fields: they are omitted.
//   - Errors are Graph's envelope {"error":{"message","type","code","error_subcode",
//     "fbtrace_id"}} with HTTP 400 for the client's mistakes (an unknown or unreadable id: code
//     100, subcode 33; a missing token: code 104; an invalid or expired token: code 190), as
//     Graph answers them, and a WWW-Authenticate: OAuth header.
//   - Only the lead read is served; Page subscriptions, forms, bulk export and Graph's
//     rate-limit accounting are not.

// graphVersion is the shape of a Graph API version path segment.
var graphVersion = regexp.MustCompile(`^v[0-9]+\.[0-9]+$`)

// graphDefaultFields are the fields a read without ?fields answers.
var graphDefaultFields = []string{"id", "created_time", "ad_id", "form_id", "field_data"}

// graphLeadFields are the fields the emulation can answer.
var graphLeadFields = map[string]bool{
	"id": true, "created_time": true, "ad_id": true, "adset_id": true, "campaign_id": true,
	"form_id": true, "field_data": true, "is_organic": true,
}

// graphTimeLayout is how Graph writes times: "2026-11-26T20:00:00+0000".
const graphTimeLayout = "2006-01-02T15:04:05-0700"

// graphErrorBody is Graph's error envelope.
type graphErrorBody struct {
	Error graphError `json:"error"`
}

type graphError struct {
	Message     string `json:"message"`
	Type        string `json:"type"`
	Code        int    `json:"code"`
	Subcode     int    `json:"error_subcode,omitempty"`
	IsTransient bool   `json:"is_transient,omitempty"`
	FBTraceID   string `json:"fbtrace_id"`
}

func newGraphError(typ string, code, subcode int, transient bool, format string, args ...any) graphErrorBody {
	return graphErrorBody{graphError{
		Message: fmt.Sprintf(format, args...), Type: typ, Code: code, Subcode: subcode,
		IsTransient: transient, FBTraceID: newFBTraceID(),
	}}
}

func writeGraphError(w http.ResponseWriter, status int, body graphErrorBody) {
	kind := "invalid_request"
	if body.Error.Type == "OAuthException" && (body.Error.Code == 190 || body.Error.Code == 104) {
		kind = "invalid_token"
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`OAuth "Facebook Platform" %q %q`, kind, body.Error.Message))
	writeJSON(w, status, body)
}

// graphErrorFor is Graph's error body for a status, as the kit asks for it (the default body of
// an injected fault): the transient code 4 for a 429, the transient code 2 for a 5xx, code 100
// with the message otherwise.
func graphErrorFor(status int, message string) any {
	switch {
	case status == http.StatusTooManyRequests:
		return newGraphError("OAuthException", 4, 0, true, "(#4) Application request limit reached")
	case status >= 500:
		return newGraphError("OAuthException", 2, 0, true, "An unexpected error has occurred. Please retry your request later.")
	default:
		return newGraphError("GraphMethodException", 100, 0, false, "%s", message)
	}
}

// graphExpiredToken is Graph's answer to an expired token.
func graphExpiredToken() graphErrorBody {
	return newGraphError("OAuthException", 190, 463, false,
		"Error validating access token: Session has expired. The sandbox expired this token.")
}

// newFBTraceID returns a random id shaped like Graph's fbtrace_id.
func newFBTraceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "A" + base64.RawURLEncoding.EncodeToString(b[:])
}

// routes adds the lead read and the Graph knobs to the kit.
func (g *Graph) routes() {
	g.HandleFunc("GET /{version}/{id}", g.readLead)
	g.HandleFunc("GET /{id}", g.readLead)
	g.HandleKnob("POST /leads", g.postLead)
	g.HandleKnob("POST /test-lead", g.postTestLeadForm)
	g.HandleKnob("GET /notification", g.getNotification)
	g.HandleKnob("PUT /callback", g.putCallback)
}

// notEmulated answers every other call, as Graph answers an unsupported one.
func (g *Graph) notEmulated(w http.ResponseWriter, r *http.Request) {
	writeGraphError(w, http.StatusBadRequest, newGraphError("GraphMethodException", 100, 0, false,
		"Unsupported %s request. The sandbox emulates only the lead read: GET /<version>/<leadgen_id>", strings.ToLower(r.Method)))
}

// state is the read-only view at GET /_sandbox/graph/state.
func (g *Graph) state() any {
	return struct {
		Leads       []GraphLead     `json:"leads"`
		Deliveries  []GraphDelivery `json:"deliveries"`
		CallbackURL string          `json:"callbackUrl"`
	}{nonNil(g.Leads()), nonNil(g.Deliveries()), g.CallbackURL()}
}

// accessToken returns the request's access token: ?access_token=…, or an Authorization header
// with the Bearer or OAuth scheme.
func accessToken(r *http.Request) string {
	if t := r.URL.Query().Get("access_token"); t != "" {
		return t
	}
	scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	if strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "OAuth") {
		return strings.TrimSpace(token)
	}
	return ""
}

// auth accepts a configured access token that has not expired, and a matching appsecret_proof
// when one is sent, in that order; the kit has waited out the latency before, and applies
// injected faults after.
func (g *Graph) auth(w http.ResponseWriter, r *http.Request) (string, bool) {
	token := accessToken(r)
	var refusal graphErrorBody
	switch {
	case token == "":
		refusal = newGraphError("OAuthException", 104, 0, false, "An access token is required to request this resource.")
	case !slices.Contains(g.opts.AccessTokens, token):
		refusal = newGraphError("OAuthException", 190, 0, false, "Invalid OAuth access token - Cannot parse access token")
	case g.TokenExpired(token):
		refusal = graphExpiredToken()
	case r.URL.Query().Get("appsecret_proof") != "" &&
		!hmac.Equal([]byte(r.URL.Query().Get("appsecret_proof")), []byte(appSecretProof(g.opts.AppSecret, token))):
		refusal = newGraphError("GraphMethodException", 100, 0, false, "Invalid appsecret_proof provided in the API argument")
	default:
		return token, true
	}
	writeGraphError(w, http.StatusBadRequest, refusal)
	return "", false
}

// readLead answers GET /<version>/<id>.
func (g *Graph) readLead(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if v := r.PathValue("version"); v != "" && !graphVersion.MatchString(v) {
		writeGraphError(w, http.StatusBadRequest, newGraphError("OAuthException", 2500, 0, false,
			"Unknown path components: /%s", id))
		return
	}
	fields := graphDefaultFields
	if f := r.URL.Query().Get("fields"); f != "" {
		fields = []string{"id"}
		for name := range strings.SplitSeq(f, ",") {
			name = strings.TrimSpace(name)
			if !graphLeadFields[name] {
				writeGraphError(w, http.StatusBadRequest, newGraphError("GraphMethodException", 100, 0, false,
					"(#100) Tried accessing nonexisting field (%s) on node type (Lead)", name))
				return
			}
			if !slices.Contains(fields, name) {
				fields = append(fields, name)
			}
		}
	}
	l, ok := g.Lead(id)
	if !ok {
		writeGraphError(w, http.StatusBadRequest, newGraphError("GraphMethodException", 100, 33, false,
			"Unsupported get request. Object with ID '%s' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api", id))
		return
	}
	writeJSON(w, http.StatusOK, graphLeadJSON(l, fields))
}

// graphLeadJSON is the read's answer: the fields asked for, empty ad fields omitted.
func graphLeadJSON(l GraphLead, fields []string) map[string]any {
	out := map[string]any{}
	put := func(k, v string) {
		if v != "" {
			out[k] = v
		}
	}
	for _, f := range fields {
		switch f {
		case "id":
			out["id"] = l.ID
		case "created_time":
			out["created_time"] = l.CreatedTime.UTC().Format(graphTimeLayout)
		case "ad_id":
			put(f, l.AdID)
		case "adset_id":
			put(f, l.AdsetID)
		case "campaign_id":
			put(f, l.CampaignID)
		case "form_id":
			put(f, l.FormID)
		case "is_organic":
			out[f] = l.AdID == ""
		case "field_data":
			data := make([]GraphField, len(l.Fields))
			for i, fd := range l.Fields {
				data[i] = GraphField{Name: fd.Name, Values: nonNil(fd.Values)}
			}
			out[f] = data
		}
	}
	return out
}

// postLead adds a lead from JSON (GraphLead's fields); ?notify=true also delivers its
// notification, as Submit does.
func (g *Graph) postLead(w http.ResponseWriter, r *http.Request) {
	var l GraphLead
	if err := decodeJSON(r, &l); err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
		return
	}
	add := g.AddLead
	if r.URL.Query().Get("notify") == "true" {
		add = g.Submit
	}
	l, err := add(l)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
		return
	}
	writeJSON(w, http.StatusCreated, l)
}

// postTestLeadForm is the page's "submit a test lead" button: an HTML form post of the form's
// answers (full_name, email, phone_number), then back to the page.
func (g *Graph) postTestLeadForm(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
		return
	}
	l := GraphLead{FormID: DefaultGraphFormID, AdID: DefaultGraphAdID}
	for _, name := range []string{"full_name", "email", "phone_number"} {
		if v := strings.TrimSpace(r.PostForm.Get(name)); v != "" {
			l.Fields = append(l.Fields, GraphField{Name: name, Values: []string{v}})
		}
	}
	if _, err := g.Submit(l); err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// getNotification answers the signed notification of ?leadgen_id=… (repeatable), for a
// person or a demo to post it by hand: the body as Meta would post it, and its
// X-Hub-Signature-256 as a header.
func (g *Graph) getNotification(w http.ResponseWriter, r *http.Request) {
	ids := r.URL.Query()["leadgen_id"]
	if len(ids) == 0 {
		writeJSON(w, http.StatusBadRequest, knobError{"leadgen_id is required"})
		return
	}
	body := g.Notification(ids...)
	w.Header().Set("X-Hub-Signature-256", SignFacebook(g.opts.AppSecret, body))
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_, _ = w.Write(body)
}

// putCallback sets the callback URL from {"url":"…"}; an empty url stops deliveries.
func (g *Graph) putCallback(w http.ResponseWriter, r *http.Request) {
	var req struct {
		URL string `json:"url"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, knobError{err.Error()})
		return
	}
	if req.URL != "" {
		if u, err := url.Parse(req.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			writeJSON(w, http.StatusBadRequest, knobError{fmt.Sprintf("url %q is not an absolute http(s) URL", req.URL)})
			return
		}
	}
	g.SetCallbackURL(req.URL)
	w.WriteHeader(http.StatusNoContent)
}
