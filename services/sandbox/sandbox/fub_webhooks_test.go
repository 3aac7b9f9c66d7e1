package sandbox_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// receiver is a real HTTP endpoint that records the webhooks it gets and verifies their
// FUB-Signature with its own implementation of the scheme.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	got      []received
	fail     int           // answer 500 to this many more requests
	hold     chan struct{} // when set, requests wait for it to close
	attempts int
}

type received struct {
	payload  sandbox.FUBWebhookPayload
	body     string
	sigValid bool
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	hold := rc.hold
	rc.attempts++
	if rc.fail > 0 {
		rc.fail--
		rc.mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	rc.mu.Unlock()
	if hold != nil {
		<-hold
	}
	mac := hmac.New(sha256.New, []byte(sandbox.DefaultFUBSystemKey))
	mac.Write([]byte(base64.StdEncoding.EncodeToString(body)))
	want := hex.EncodeToString(mac.Sum(nil))
	var p sandbox.FUBWebhookPayload
	_ = json.Unmarshal(body, &p)
	rc.mu.Lock()
	rc.got = append(rc.got, received{payload: p, body: string(body), sigValid: r.Header.Get("FUB-Signature") == want && r.Header.Get("Content-Type") == "application/json"})
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (rc *receiver) received() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func (rc *receiver) count() (attempts, delivered int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.attempts, len(rc.got)
}

// eventually polls cond for up to 10 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newWebhookEnv is a sandbox with fast retries and a receiver registered for the people events.
func newWebhookEnv(t *testing.T, events ...string) (*env, *receiver) {
	t.Helper()
	e := newEnv(t, sandbox.Options{FUB: sandbox.FUBOptions{Webhooks: sandbox.FUBWebhookOptions{Backoff: 5 * time.Millisecond, Retries: 3}}})
	rc := newReceiver(t)
	t.Cleanup(e.sb.Close) // registered last: deliveries stop before the servers close
	for _, ev := range events {
		e.do(t, request{method: http.MethodPost, path: "/fub/v1/webhooks", body: fmt.Sprintf(`{"event":%q,"url":%q}`, ev, rc.srv.URL+"/hook")}).want(t, http.StatusCreated)
	}
	return e, rc
}

func (e *env) person(t *testing.T, first string) sandbox.FUBPerson {
	t.Helper()
	return e.do(t, postEvent(event("Registration", fmt.Sprintf(`{"firstName":%q,"lastName":"Lovelace","emails":[{"value":"%s@example.com"}]}`, first, strings.ToLower(first))))).
		want(t, http.StatusCreated).person(t)
}

func putPerson(id int64, body string) request {
	return request{method: http.MethodPut, path: fmt.Sprintf("%s/%d", pathPeople, id), body: body}
}

func TestFUBWebhooks_registration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	t.Cleanup(e.sb.Close)
	const hooks = "/fub/v1/webhooks"
	created := e.do(t, request{method: http.MethodPost, path: hooks, body: `{"event":"peopleStageUpdated","url":"https://example.com/a"}`}).want(t, http.StatusCreated)
	var h sandbox.FUBWebhook
	if err := json.Unmarshal(created.body, &h); err != nil || h.ID == 0 || h.Event != "peopleStageUpdated" || h.Status != "Active" || h.URL != "https://example.com/a" {
		t.Fatalf("created %s (%v)", created.body, err)
	}
	e.do(t, request{method: http.MethodPost, path: hooks, body: `{"event":"peopleStageUpdated","url":"https://example.com/b"}`}).want(t, http.StatusCreated)

	for _, tt := range []struct {
		name string
		req  request
		want int
	}{
		{"third_for_one_event", request{method: http.MethodPost, path: hooks, body: `{"event":"peopleStageUpdated","url":"https://example.com/c"}`}, http.StatusBadRequest},
		{"unknown_event", request{method: http.MethodPost, path: hooks, body: `{"event":"peopleTeleported","url":"https://example.com/a"}`}, http.StatusBadRequest},
		{"relative_url", request{method: http.MethodPost, path: hooks, body: `{"event":"peopleUpdated","url":"/hook"}`}, http.StatusBadRequest},
		{"invalid_json", request{method: http.MethodPost, path: hooks, body: `{"event":`}, http.StatusBadRequest},
		{"unregistered_system", request{method: http.MethodPost, path: hooks, body: `{"event":"peopleUpdated","url":"https://example.com/a"}`, auth: authUnregistered}, http.StatusForbidden},
		{"no_key", request{method: http.MethodGet, path: hooks, auth: authNone}, http.StatusUnauthorized},
		{"delete_unknown", request{method: http.MethodDelete, path: hooks + "/99"}, http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do(t, tt.req).want(t, tt.want).errorMessage(t)
		})
	}

	list := e.do(t, request{method: http.MethodGet, path: hooks}).want(t, http.StatusOK)
	var page struct {
		Metadata struct {
			Collection string `json:"collection"`
			Total      int    `json:"total"`
		} `json:"_metadata"`
		Webhooks []sandbox.FUBWebhook `json:"webhooks"`
	}
	if err := json.Unmarshal(list.body, &page); err != nil || page.Metadata.Collection != "webhooks" || page.Metadata.Total != 2 || len(page.Webhooks) != 2 {
		t.Fatalf("list %s (%v)", list.body, err)
	}
	e.do(t, request{method: http.MethodDelete, path: fmt.Sprintf("%s/%d", hooks, h.ID)}).want(t, http.StatusNoContent)
	if got := e.sb.FUB().Webhooks(); len(got) != 1 || got[0].URL != "https://example.com/b" {
		t.Fatalf("after delete: %+v", got)
	}
}

func TestFUBWebhooks_stageChangeIsSignedAndDelivered(t *testing.T) {
	t.Parallel()
	e, rc := newWebhookEnv(t, sandbox.FUBPeopleStageUpdated, sandbox.FUBPeopleUpdated)
	p := e.person(t, "Ada")

	got := e.do(t, putPerson(p.ID, `{"stage":"Active Client"}`)).want(t, http.StatusOK).person(t)
	if got.Stage != "Active Client" || got.ID != p.ID {
		t.Fatalf("answer %+v", got)
	}
	eventually(t, "two webhooks", func() bool { return len(rc.received()) == 2 })
	events := map[string]sandbox.FUBWebhookPayload{}
	for _, r := range rc.received() {
		if !r.sigValid {
			t.Errorf("bad FUB-Signature on %s", r.body)
		}
		events[r.payload.Event] = r.payload
	}
	host, _ := url.Parse(e.srv.URL)
	for _, name := range []string{sandbox.FUBPeopleStageUpdated, sandbox.FUBPeopleUpdated} {
		pl, ok := events[name]
		if !ok {
			t.Fatalf("no %s webhook; got %+v", name, events)
		}
		if _, err := time.Parse(time.RFC3339, pl.EventCreated); err != nil || pl.EventID == "" ||
			len(pl.ResourceIDs) != 1 || pl.ResourceIDs[0] != p.ID || pl.URI != fmt.Sprintf("http://%s/fub/v1/people?id=%d", host.Host, p.ID) {
			t.Errorf("%s payload %+v", name, pl)
		}
	}
	if events[sandbox.FUBPeopleStageUpdated].EventID == events[sandbox.FUBPeopleUpdated].EventID {
		t.Error("two events share an eventId")
	}
	// Following the uri finds the person in the new stage.
	if pp := e.do(t, getPeople(fmt.Sprintf("id=%d", p.ID))).want(t, http.StatusOK).page(t); len(pp.People) != 1 || pp.People[0].Stage != "Active Client" {
		t.Fatalf("people %+v", pp.People)
	}

	// The same stage again changes nothing and fires nothing; a name change fires peopleUpdated only.
	e.do(t, putPerson(p.ID, `{"stage":"Active Client"}`)).want(t, http.StatusOK)
	e.do(t, putPerson(p.ID, `{"firstName":"Augusta Ada"}`)).want(t, http.StatusOK)
	eventually(t, "a third webhook", func() bool { return len(rc.received()) == 3 })
	if last := rc.received()[2]; last.payload.Event != sandbox.FUBPeopleUpdated {
		t.Fatalf("third webhook %s", last.body)
	}
	if d := e.sb.FUB().WebhookDeliveries(); len(d) != 3 || d[0].State != sandbox.FUBDeliveryDelivered || d[0].Attempts != 1 {
		t.Fatalf("deliveries %+v", d)
	}
	var st struct {
		Webhooks   []sandbox.FUBWebhook         `json:"webhooks"`
		Deliveries []sandbox.FUBWebhookDelivery `json:"deliveries"`
	}
	if err := json.Unmarshal(e.do(t, request{method: http.MethodGet, path: "/_sandbox/fub/webhooks", auth: authNone}).want(t, http.StatusOK).body, &st); err != nil ||
		len(st.Webhooks) != 2 || len(st.Deliveries) != 3 || st.Deliveries[0].Signature == "" {
		t.Fatalf("state %+v (%v)", st, err)
	}
}

func TestFUBWebhooks_updates(t *testing.T) {
	t.Parallel()
	e, _ := newWebhookEnv(t)
	p := e.person(t, "Ada")
	got := e.do(t, putPerson(p.ID, `{"firstName":"Augusta","emails":[{"value":"ada@lovelace.example"}],"phones":[{"value":"(415) 555-0134"}]}`)).want(t, http.StatusOK).person(t)
	if got.FirstName != "Augusta" || got.Name != "Augusta Lovelace" || len(got.Emails) != 1 || got.Emails[0].Value != "ada@lovelace.example" ||
		len(got.Phones) != 1 || got.Stage != "Lead" {
		t.Fatalf("updated %+v", got)
	}
	for _, tt := range []struct {
		name string
		req  request
		want int
	}{
		{"unknown_person", putPerson(999, `{"stage":"Lead"}`), http.StatusNotFound},
		{"empty_stage", putPerson(p.ID, `{"stage":" "}`), http.StatusBadRequest},
		{"invalid_json", putPerson(p.ID, `{"stage":`), http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e.do(t, tt.req).want(t, tt.want).errorMessage(t)
		})
	}
}

func TestFUBWebhooks_retriedWithTheSameEventID(t *testing.T) {
	t.Parallel()
	e, rc := newWebhookEnv(t, sandbox.FUBPeopleStageUpdated)
	p := e.person(t, "Ada")
	rc.mu.Lock()
	rc.fail = 2
	rc.mu.Unlock()
	if _, err := e.sb.FUB().SetStage(p.ID, "Under Contract"); err != nil {
		t.Fatal(err)
	}
	// The receiver has the webhook before the sandbox records the answer:
	// wait for both.
	eventually(t, "the delivery", func() bool {
		_, n := rc.count()
		d := e.sb.FUB().WebhookDeliveries()
		return n == 1 && len(d) == 1 && d[0].State == sandbox.FUBDeliveryDelivered
	})
	attempts, _ := rc.count()
	d := e.sb.FUB().WebhookDeliveries()
	if attempts != 3 || len(d) != 1 || d[0].Attempts != 3 || d[0].State != sandbox.FUBDeliveryDelivered || d[0].Payload.EventID != rc.received()[0].payload.EventID {
		t.Fatalf("%d attempts, deliveries %+v", attempts, d)
	}
	// Go changes have no request host: the uri uses the default base.
	if uri := rc.received()[0].payload.URI; uri != fmt.Sprintf("%s/v1/people?id=%d", sandbox.DefaultFUBWebhookBaseURL, p.ID) {
		t.Fatalf("uri %s", uri)
	}

	// A receiver that never answers 2xx: the delivery fails after 1 + Retries attempts.
	rc.mu.Lock()
	rc.fail = 100
	rc.mu.Unlock()
	e.sb.FUB().SetWebhookBaseURL("https://api.followupboss.com")
	if _, err := e.sb.FUB().SetStage(p.ID, "Closed"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the delivery to fail", func() bool {
		d := e.sb.FUB().WebhookDeliveries()
		return len(d) == 2 && d[1].State == sandbox.FUBDeliveryFailed
	})
	if d := e.sb.FUB().WebhookDeliveries()[1]; d.Attempts != 4 || d.LastStatus != 500 || !strings.HasPrefix(d.Payload.URI, "https://api.followupboss.com/v1/people?id=") {
		t.Fatalf("delivery %+v", d)
	}
}

func TestFUBWebhooks_neverBlockTheAPICall(t *testing.T) {
	t.Parallel()
	e, rc := newWebhookEnv(t, sandbox.FUBPeopleStageUpdated)
	p := e.person(t, "Ada")
	release := make(chan struct{})
	rc.mu.Lock()
	rc.hold = release
	rc.mu.Unlock()
	// The receiver holds every delivery until released; the API answers regardless.
	e.do(t, putPerson(p.ID, `{"stage":"Active Client"}`)).want(t, http.StatusOK)
	if _, n := rc.count(); n != 0 {
		t.Fatalf("%d delivered while held", n)
	}
	close(release)
	eventually(t, "the held delivery", func() bool { _, n := rc.count(); return n == 1 })
}

func TestFUBWebhooks_personCreatedByAnEvent(t *testing.T) {
	t.Parallel()
	e, rc := newWebhookEnv(t, sandbox.FUBPeopleCreated)
	p := e.person(t, "Ada")
	e.do(t, postEvent(event("Registration", `{"emails":[{"value":"ada@example.com"}]}`))).want(t, http.StatusOK) // a match creates nobody
	eventually(t, "peopleCreated", func() bool { return len(rc.received()) == 1 })
	if r := rc.received()[0]; r.payload.Event != sandbox.FUBPeopleCreated || r.payload.ResourceIDs[0] != p.ID || !r.sigValid {
		t.Fatalf("webhook %s", r.body)
	}
}

func TestFUBWebhooks_pageButtonChangesTheStage(t *testing.T) {
	t.Parallel()
	e, rc := newWebhookEnv(t, sandbox.FUBPeopleStageUpdated)
	p := e.person(t, "Ada")
	page := string(e.do(t, request{method: http.MethodGet, path: "/", auth: authNone}).want(t, http.StatusOK).body)
	action := fmt.Sprintf(`action="/_sandbox/fub/people/%d/stage"`, p.ID)
	for _, want := range []string{action, `name="stage" value="Active Client"`, "move to stage", "Webhooks", "Webhook deliveries"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}

	client := *e.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	// postForm returns the status and Location of the answer.
	postForm := func(path, stage string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+path, strings.NewReader(url.Values{"stage": {stage}}.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}
	if code, loc := postForm(fmt.Sprintf("/_sandbox/fub/people/%d/stage", p.ID), "Active Client"); code != http.StatusSeeOther || loc != "/" {
		t.Fatalf("form answer %d to %q", code, loc)
	}
	if got := e.sb.FUB().People()[0].Stage; got != "Active Client" {
		t.Fatalf("stage %q", got)
	}
	eventually(t, "the webhook", func() bool { return len(rc.received()) == 1 })

	if code, _ := postForm("/_sandbox/fub/people/77/stage", "Closed"); code != http.StatusNotFound {
		t.Fatalf("unknown person: %d", code)
	}
}

func TestFUBWebhooks_resetForgetsRegistrations(t *testing.T) {
	t.Parallel()
	e, rc := newWebhookEnv(t, sandbox.FUBPeopleStageUpdated)
	e.sb.FUB().Reset()
	p := e.person(t, "Ada")
	if _, err := e.sb.FUB().SetStage(p.ID, "Closed"); err != nil {
		t.Fatal(err)
	}
	if len(e.sb.FUB().Webhooks()) != 0 || len(e.sb.FUB().WebhookDeliveries()) != 0 || len(rc.received()) != 0 {
		t.Fatal("webhooks survived the reset")
	}
}

func TestSignFUBWebhook(t *testing.T) {
	t.Parallel()
	body := []byte(`{"eventId":"e","event":"peopleUpdated","resourceIds":[1]}`)
	mac := hmac.New(sha256.New, []byte("k"))
	mac.Write([]byte(base64.StdEncoding.EncodeToString(body)))
	if got, want := sandbox.SignFUBWebhook("k", body), hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Fatalf("SignFUBWebhook = %s, want %s", got, want)
	}
}
