package sandbox_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

const skyslopeFile = `{"name":"Ada Lovelace","representationType":"Buyer","property":{"streetNumber":"12","streetName":"Main St","city":"Springfield","state":"IL","postalCode":"62701"}}`

// authorizeSkySlope runs the authorization with challenge and returns the code.
func (e *env) authorizeSkySlope(t *testing.T, challenge string) string {
	t.Helper()
	q := url.Values{"response_type": {"code"}, "client_id": {sandbox.DefaultSkySlopeClientID}, "redirect_uri": {"http://127.0.0.1:1/callback"},
		"state": {"s1"}, "code_challenge": {challenge}, "code_challenge_method": {"S256"}}
	c := *e.srv.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.srv.URL+"/skyslope/oauth2/authorize?"+q.Encode(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil || loc.Query().Get("state") != "s1" || loc.Query().Get("code") == "" {
		t.Fatalf("authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	return loc.Query().Get("code")
}

// skyslopeToken posts a grant to SkySlope's token endpoint as a form, the client's id in it
// (a public client).
func (e *env) skyslopeToken(t *testing.T, form url.Values) (int, map[string]any) {
	t.Helper()
	return e.tokenGrant(t, "/skyslope/oauth2/token", form, "", "")
}

// TestSkySlope_pkce: the code is exchanged only with the verifier of its challenge; a wrong
// verifier spends the code; an authorization without a challenge is refused; the refresh
// token rotates.
func TestSkySlope_pkce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	verifier := "a-verifier-of-at-least-43-characters-0123456789"
	sum := sha256.Sum256([]byte(verifier))
	challenge := base64.RawURLEncoding.EncodeToString(sum[:])
	exchange := func(code, v string) (int, map[string]any) {
		return e.skyslopeToken(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {"http://127.0.0.1:1/callback"},
			"client_id": {sandbox.DefaultSkySlopeClientID}, "code_verifier": {v}})
	}

	code := e.authorizeSkySlope(t, challenge)
	if status, out := exchange(code, "not-the-verifier"); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("a wrong verifier: %d %v", status, out)
	}
	if status, _ := exchange(code, verifier); status != http.StatusBadRequest {
		t.Fatalf("the code after a wrong verifier: %d, want it spent", status)
	}
	code = e.authorizeSkySlope(t, challenge)
	status, tok := exchange(code, verifier)
	if status != http.StatusOK || tok["access_token"] == "" || tok["refresh_token"] == "" {
		t.Fatalf("exchange: %d %v", status, tok)
	}
	e.do(t, request{method: "POST", path: "/skyslope/partner/api/files", body: skyslopeFile, auth: authNone,
		header: map[string]string{"Authorization": "Bearer " + tok["access_token"].(string)}}).want(t, http.StatusOK)

	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {sandbox.DefaultSkySlopeClientID}}
	if status, next := e.skyslopeToken(t, refresh); status != http.StatusOK || next["refresh_token"] == tok["refresh_token"] {
		t.Fatalf("refresh: %d %v", status, next)
	}
	if status, out := e.skyslopeToken(t, refresh); status != http.StatusBadRequest || out["error"] != "invalid_grant" {
		t.Fatalf("a spent refresh token: %d %v", status, out)
	}

	resp := e.do(t, request{method: "GET", auth: authNone, path: "/skyslope/oauth2/authorize?" + url.Values{"response_type": {"code"},
		"client_id": {sandbox.DefaultSkySlopeClientID}, "redirect_uri": {"http://127.0.0.1:1/callback"}}.Encode()})
	if resp.status != http.StatusBadRequest || !strings.Contains(string(resp.body), "PKCE") {
		t.Fatalf("authorize without PKCE: %d %s", resp.status, resp.body)
	}
}

func (e *env) skyslopeLogin(t *testing.T, accessKey, mac, ts string) response {
	t.Helper()
	return e.do(t, request{method: "POST", path: "/skyslope/auth/login", auth: authNone,
		body:   `{"ClientId":"` + sandbox.DefaultSkySlopeFilesClientID + `","ClientSecret":"` + sandbox.DefaultSkySlopeFilesClientSecret + `"}`,
		header: map[string]string{"Authorization": "SS " + accessKey + ":" + mac, "Timestamp": ts}})
}

// TestSkySlope_filesAPI: the HMAC login gives a session; the sales list shows the Forms file's
// sale, and its closing with a price but not the commission entered.
func TestSkySlope_filesAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	ts := e.clock.Now().UTC().Format(time.RFC3339)
	mac := sandbox.SignSkySlopeLogin(sandbox.DefaultSkySlopeAccessSecret, sandbox.DefaultSkySlopeFilesClientID, sandbox.DefaultSkySlopeFilesClientSecret, ts)
	for name, r := range map[string]response{
		"wrong_hmac":    e.skyslopeLogin(t, sandbox.DefaultSkySlopeAccessKey, mac[:10]+"x", ts),
		"wrong_key":     e.skyslopeLogin(t, "someone-else", mac, ts),
		"old_timestamp": e.skyslopeLogin(t, sandbox.DefaultSkySlopeAccessKey, sandbox.SignSkySlopeLogin(sandbox.DefaultSkySlopeAccessSecret, sandbox.DefaultSkySlopeFilesClientID, sandbox.DefaultSkySlopeFilesClientSecret, "2020-01-02T03:00:00Z"), "2020-01-02T03:00:00Z"),
	} {
		if r.status != http.StatusUnauthorized {
			t.Fatalf("%s: %d %s", name, r.status, r.body)
		}
	}
	var login struct{ Session, Expiration string }
	if err := json.Unmarshal(e.skyslopeLogin(t, sandbox.DefaultSkySlopeAccessKey, mac, ts).want(t, http.StatusOK).body, &login); err != nil || login.Session == "" {
		t.Fatalf("login: %+v %v", login, err)
	}
	sales := func(q string) []sandbox.SkySlopeSale {
		var out struct{ Value []sandbox.SkySlopeSale }
		r := e.do(t, request{method: "GET", path: "/skyslope/api/files/sales" + q, auth: authNone, header: map[string]string{"Session": login.Session}}).want(t, http.StatusOK)
		if err := json.Unmarshal(r.body, &out); err != nil {
			t.Fatal(err)
		}
		return out.Value
	}
	tok := e.sb.SkySlope().IssueTokens().AccessToken
	e.do(t, request{method: "POST", path: "/skyslope/partner/api/files", body: skyslopeFile, auth: authNone, header: map[string]string{"Authorization": "Bearer " + tok}}).want(t, http.StatusOK)
	list := sales("")
	if len(list) != 1 || list[0].FileID != 477309 || list[0].Status != sandbox.SkySlopePending {
		t.Fatalf("sales = %+v", list)
	}
	e.clock.Advance(time.Minute)
	r := e.do(t, request{method: "POST", path: "/_sandbox/skyslope/sales/" + list[0].SaleGUID + "/close", auth: authNone,
		body: "price=525000&commission=15750&close_date=2026-12-01", header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}})
	r.want(t, http.StatusNoContent)
	later := sales("?earliestDate=" + strconv.FormatInt(e.clock.Now().Unix(), 10))
	if len(later) != 1 || later[0].Status != sandbox.SkySlopeClosed || later[0].SalePrice != 525000 || later[0].ActualClosingDate != "2026-12-01" {
		t.Fatalf("sales since the closing = %+v", later)
	}
	detail := e.do(t, request{method: "GET", path: "/skyslope/api/files/sales/" + list[0].SaleGUID, auth: authNone, header: map[string]string{"Session": login.Session}}).want(t, http.StatusOK)
	if strings.Contains(strings.ToLower(string(detail.body)), "commission") {
		t.Fatalf("the Files API served a commission: %s", detail.body)
	}
	if st := e.sb.SkySlope().Sales()[0]; st.Commission != 15750 {
		t.Fatalf("the sandbox's state lost the commission entered: %+v", st)
	}
	if n := len(sales("?earliestDate=" + strconv.FormatInt(e.clock.Now().Add(time.Second).Unix(), 10))); n != 0 {
		t.Fatalf("%d sales modified after the last change", n)
	}
	e.sb.SkySlope().ExpireSessions()
	e.do(t, request{method: "GET", path: "/skyslope/api/files/sales", auth: authNone, header: map[string]string{"Session": login.Session}}).want(t, http.StatusUnauthorized)
}

// TestSkySlope_formsValidation: a file without the required property fields is a 400 in the
// Forms API's error shape, and opens nothing.
func TestSkySlope_formsValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	tok := e.sb.SkySlope().IssueTokens().AccessToken
	r := e.do(t, request{method: "POST", path: "/skyslope/partner/api/files", auth: authNone, header: map[string]string{"Authorization": "Bearer " + tok},
		body: `{"name":"Ada","representationType":"Renter","property":{"streetNumber":"12","city":"Springfield","state":"Illinois"}}`}).want(t, http.StatusBadRequest)
	var body struct {
		Code, Message string
		Errors        []string
	}
	if err := json.Unmarshal(r.body, &body); err != nil || len(body.Errors) != 4 {
		t.Fatalf("error body %s: %v", r.body, err)
	}
	if n := len(e.sb.SkySlope().Files()); n != 0 {
		t.Fatalf("%d files after a refused request", n)
	}
}

// TestSkySlope_createFileMatchesTheReference: the Forms API's documented
// request (its field names; the values invented) is answered with the
// documented {"fileId"} (the first id the sandbox gives is the example's).
func TestSkySlope_createFileMatchesTheReference(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	req, err := os.ReadFile("testdata/skyslope/create_file_request.json")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("testdata/skyslope/create_file_response.json")
	if err != nil {
		t.Fatal(err)
	}
	tok := e.sb.SkySlope().IssueTokens().AccessToken
	got := e.do(t, request{method: "POST", path: "/skyslope/partner/api/files", body: string(req), auth: authNone, header: map[string]string{"Authorization": "Bearer " + tok}}).want(t, http.StatusOK)
	if strings.TrimSpace(string(got.body)) != strings.TrimSpace(string(want)) {
		t.Fatalf("answer %s, want %s", got.body, want)
	}
	if f := e.sb.SkySlope().Files()[0]; f.Property.County != "San Francisco" || f.Property.UnitNumber != "12" || f.RepresentationType != "Buyer" {
		t.Fatalf("file = %+v", f)
	}
}
