package sandbox_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// tokenGrant posts form (may be nil) to the token endpoint at path as a form body, with id and
// secret as HTTP Basic when id is not empty, and decodes the answer.
func (e *env) tokenGrant(t *testing.T, path string, form url.Values, id, secret string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, e.srv.URL+path, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if id != "" {
		req.SetBasicAuth(id, secret)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestOAuth_everyVendorHasTheTokenKnobs: the OAuth server Dotloop, QuickBooks Online and
// SkySlope share gives each the same knobs: expire makes the API refuse the access token, a
// refresh then works, and revoke makes the refresh token answer invalid_grant.
func TestOAuth_everyVendorHasTheTokenKnobs(t *testing.T) {
	t.Parallel()
	for _, v := range []struct {
		name  string
		issue func(sb *sandbox.Sandbox) sandbox.OAuthTokens
		api   func(e *env, t *testing.T, token string) response
		grant func(e *env, t *testing.T, form url.Values) (int, map[string]any)
	}{
		{
			name:  "dotloop",
			issue: func(sb *sandbox.Sandbox) sandbox.OAuthTokens { return sb.Dotloop().IssueTokens() },
			api: func(e *env, t *testing.T, token string) response {
				return e.dl(t, http.MethodGet, "/dotloop/public/v2/profile", token, "")
			},
			grant: (*env).oauthToken,
		},
		{
			name:  "quickbooks",
			issue: func(sb *sandbox.Sandbox) sandbox.OAuthTokens { return sb.QuickBooks().IssueTokens(qbRealm) },
			api: func(e *env, t *testing.T, token string) response {
				return e.qb(t, http.MethodGet, "/query?query="+url.QueryEscape("select * from Customer"), token, "")
			},
			grant: (*env).qbToken,
		},
		{
			name:  "skyslope",
			issue: func(sb *sandbox.Sandbox) sandbox.OAuthTokens { return sb.SkySlope().IssueTokens() },
			api: func(e *env, t *testing.T, token string) response {
				return e.dl(t, http.MethodGet, "/skyslope/partner/api/files", token, "")
			},
			grant: func(e *env, t *testing.T, form url.Values) (int, map[string]any) {
				form.Set("client_id", sandbox.DefaultSkySlopeClientID)
				return e.skyslopeToken(t, form)
			},
		},
	} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, sandbox.Options{})
			tok := v.issue(e.sb)
			v.api(e, t, tok.AccessToken).want(t, http.StatusOK)

			e.do(t, request{method: http.MethodPost, path: "/_sandbox/" + v.name + "/tokens/expire", auth: authNone}).want(t, http.StatusNoContent)
			v.api(e, t, tok.AccessToken).want(t, http.StatusUnauthorized)

			status, next := v.grant(e, t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
			if status != http.StatusOK || next["access_token"] == nil || next["refresh_token"] == tok.RefreshToken {
				t.Fatalf("refresh: %d %v", status, next)
			}
			v.api(e, t, next["access_token"].(string)).want(t, http.StatusOK)

			e.do(t, request{method: http.MethodPost, path: "/_sandbox/" + v.name + "/tokens/revoke", auth: authNone}).want(t, http.StatusNoContent)
			status, again := v.grant(e, t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {next["refresh_token"].(string)}})
			if status != http.StatusBadRequest || again["error"] != "invalid_grant" {
				t.Fatalf("refresh after revoke: %d %v", status, again)
			}
		})
	}
}

// TestOAuth_formCredentialsOnlyForPKCE: Dotloop and QuickBooks want the client's credentials
// with HTTP Basic and refuse them in the form; SkySlope, a PKCE vendor, takes them there (its
// exchange and refresh with client_id alone are in TestSkySlope_pkce).
func TestOAuth_formCredentialsOnlyForPKCE(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	for _, c := range []struct {
		path, id, secret string
		refresh          string
		want             int
	}{
		{"/dotloop/oauth/token", sandbox.DefaultDotloopClientID, sandbox.DefaultDotloopClientSecret, e.sb.Dotloop().IssueTokens().RefreshToken, http.StatusUnauthorized},
		{"/quickbooks/oauth2/v1/tokens/bearer", sandbox.DefaultQuickBooksClientID, sandbox.DefaultQuickBooksClientSecret, e.sb.QuickBooks().IssueTokens(qbRealm).RefreshToken, http.StatusUnauthorized},
		{"/skyslope/oauth2/token", sandbox.DefaultSkySlopeClientID, sandbox.DefaultSkySlopeClientSecret, e.sb.SkySlope().IssueTokens().RefreshToken, http.StatusOK},
		// A wrong secret in the form is refused even where the form is allowed.
		{"/skyslope/oauth2/token", sandbox.DefaultSkySlopeClientID, "not-the-secret", e.sb.SkySlope().IssueTokens().RefreshToken, http.StatusUnauthorized},
	} {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {c.refresh}, "client_id": {c.id}, "client_secret": {c.secret}}
		if status, out := e.tokenGrant(t, c.path, form, "", ""); status != c.want || (c.want == http.StatusUnauthorized && out["error"] != "invalid_client") {
			t.Errorf("%s with the credentials in the form: %d %v, want %d", c.path, status, out, c.want)
		}
	}
}
