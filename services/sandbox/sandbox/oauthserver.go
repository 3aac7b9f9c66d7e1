package sandbox

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// OAuthTokens is an OAuth 2.0 token answer.
type OAuthTokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope"`
}

// oauthServer is the authorization-code grant with rotating refresh tokens that the emulated
// vendors share (Dotloop, SkySlope's Forms API): it approves every authorization at once (there
// is no user to ask), issues tokens, and checks access tokens for the API. With pkce it
// requires a code_challenge (S256) on the authorization and its code_verifier on the exchange.
// Its methods are safe for concurrent use; it has its own lock.
type oauthServer struct {
	clientID, clientSecret string
	ttl                    time.Duration
	scope                  string
	// prefix starts every token and code, so that a person reading them knows the vendor.
	prefix string
	pkce   bool
	now    func() time.Time

	mu       sync.Mutex
	codes    map[string]oauthCode
	access   map[string]time.Time // access token → expiry
	refresh  map[string]bool      // refresh token → still valid
	grants   int                  // tokens issued
	refreshN int                  // refreshes
}

type oauthCode struct {
	redirect, challenge string
}

func (o *oauthServer) reset() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.codes, o.access, o.refresh = map[string]oauthCode{}, map[string]time.Time{}, map[string]bool{}
	o.grants, o.refreshN = 0, 0
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// issue grants a new pair of tokens, as the authorization-code flow ends.
func (o *oauthServer) issue() OAuthTokens {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.issueLocked()
}

func (o *oauthServer) issueLocked() OAuthTokens {
	t := OAuthTokens{
		AccessToken: randomToken(o.prefix + "a_"), TokenType: "Bearer", RefreshToken: randomToken(o.prefix + "r_"),
		ExpiresIn: int(o.ttl / time.Second), Scope: o.scope,
	}
	o.access[t.AccessToken] = o.now().Add(o.ttl)
	o.refresh[t.RefreshToken] = true
	o.grants++
	return t
}

// check reports whether tok is an access token the server issued, and whether it has expired.
func (o *oauthServer) check(tok string) (known, expired bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	exp, ok := o.access[tok]
	return ok, ok && !o.now().Before(exp)
}

// expireAll makes every access token expired now, as time passing would.
func (o *oauthServer) expireAll() {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	for tok := range o.access {
		o.access[tok] = now
	}
}

// counts are the access tokens valid now, the refreshes granted and the tokens issued.
func (o *oauthServer) counts() (valid, refreshes, grants int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	for _, exp := range o.access {
		if now.Before(exp) {
			valid++
		}
	}
	return valid, o.refreshN, o.grants
}

// authorize approves at once and redirects to redirect_uri with a code and the state.
func (o *oauthServer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != o.clientID {
		oauthError(w, http.StatusBadRequest, "invalid_request", "response_type=code and the client_id are required")
		return
	}
	redirect := q.Get("redirect_uri")
	u, err := url.Parse(redirect)
	if err != nil || checkURL(redirect) != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "redirect_uri must be an absolute http(s) URL")
		return
	}
	challenge := q.Get("code_challenge")
	if o.pkce && (challenge == "" || q.Get("code_challenge_method") != "S256") {
		oauthError(w, http.StatusBadRequest, "invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256")
		return
	}
	code := randomToken(o.prefix + "c_")
	o.mu.Lock()
	o.codes[code] = oauthCode{redirect: redirect, challenge: challenge}
	o.mu.Unlock()
	v := u.Query()
	v.Set("code", code)
	if s := q.Get("state"); s != "" {
		v.Set("state", s)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// clientOK checks the client's credentials: HTTP Basic, or client_id (and client_secret) in
// the form. A PKCE client may send its id alone.
func (o *oauthServer) clientOK(r *http.Request) bool {
	id, secret, basic := r.BasicAuth()
	if !basic {
		id, secret = r.Form.Get("client_id"), r.Form.Get("client_secret")
	}
	if id != o.clientID {
		return false
	}
	if o.pkce && !basic && secret == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(secret), []byte(o.clientSecret)) == 1
}

// token is POST .../token with the grant in the query or a form body: authorization_code
// (code, redirect_uri and, with PKCE, code_verifier) or refresh_token (refresh_token). A refresh
// rotates both tokens: the old refresh token answers invalid_grant afterwards, and the access
// tokens granted before stop working.
func (o *oauthServer) token(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	if !o.clientOK(r) {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "send the client id and secret with HTTP Basic")
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch r.Form.Get("grant_type") {
	case "authorization_code":
		c, ok := o.codes[r.Form.Get("code")]
		if !ok || c.redirect != r.Form.Get("redirect_uri") {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or used code, or another redirect_uri")
			return
		}
		if c.challenge != "" && !verifierMatches(r.Form.Get("code_verifier"), c.challenge) {
			// The code is spent either way, as RFC 7636 wants a failed verification to be final.
			delete(o.codes, r.Form.Get("code"))
			oauthError(w, http.StatusBadRequest, "invalid_grant", "code_verifier does not match the code_challenge")
			return
		}
		delete(o.codes, r.Form.Get("code"))
		writeJSON(w, http.StatusOK, o.issueLocked())
	case "refresh_token":
		rt := r.Form.Get("refresh_token")
		if !o.refresh[rt] {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is unknown or was already used")
			return
		}
		o.refresh[rt] = false
		now := o.now()
		for tok := range o.access {
			if now.Before(o.access[tok]) {
				o.access[tok] = now
			}
		}
		o.refreshN++
		writeJSON(w, http.StatusOK, o.issueLocked())
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
	}
}

// verifierMatches is RFC 7636's S256: BASE64URL(SHA256(verifier)) == challenge.
func verifierMatches(verifier, challenge string) bool {
	if verifier == "" {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	return subtle.ConstantTimeCompare([]byte(base64.RawURLEncoding.EncodeToString(sum[:])), []byte(challenge)) == 1
}
