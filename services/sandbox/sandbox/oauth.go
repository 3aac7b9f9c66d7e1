package sandbox

import (
	"net/http"
	"net/url"
	"sync"
	"time"
)

// oauthServer is the OAuth 2.0 authorization server that Dotloop's and QuickBooks Online's
// emulations share: the authorization-code grant with HTTP Basic client credentials, access
// tokens with a lifetime, and refresh tokens that rotate on every refresh. What differs between
// vendors is in its options: how long a rotated refresh token still works, whether a refresh
// ends the access tokens granted before, and the account the tokens act for (QuickBooks'
// company, its realm id). Its methods are safe for concurrent use.
type oauthServer struct {
	o oauthOptions

	mu        sync.Mutex
	codes     map[string]oauthCode
	access    map[string]oauthGrant // access token → its expiry and subject
	refresh   map[string]oauthGrant // refresh token → until when it works (zero: no limit) and subject
	grants    int                   // tokens issued
	refreshes int                   // refreshes granted
}

type oauthOptions struct {
	clientID, clientSecret string
	// prefix starts every code and token ("dl" gives dlc_, dla_ and dlr_).
	prefix    string
	scope     string
	accessTTL time.Duration
	// refreshTTL is a refresh token's own life, reported as x_refresh_token_expires_in; 0
	// means no limit and no such field.
	refreshTTL time.Duration
	// rotatedGrace is how long a refresh token still works after it was used; 0 is at once.
	rotatedGrace time.Duration
	// revokeOnRotate ends every access token granted before a refresh (Dotloop).
	revokeOnRotate bool
	// subject picks the account an authorization is for from the authorize request, and may
	// add parameters to the redirect (QuickBooks' realmId). Nil: no subject.
	subject func(q url.Values, redirect url.Values) (string, error)
	now     func() time.Time
}

type oauthCode struct{ redirect, subject string }

type oauthGrant struct {
	until   time.Time
	subject string
}

// OAuthTokens is a token endpoint's answer.
type OAuthTokens struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int    `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	// RefreshExpiresIn is QuickBooks' x_refresh_token_expires_in, in seconds.
	RefreshExpiresIn int `json:"x_refresh_token_expires_in,omitempty"`
}

func newOAuthServer(o oauthOptions) *oauthServer {
	s := &oauthServer{o: o}
	s.reset()
	return s
}

func (s *oauthServer) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes, s.access, s.refresh = map[string]oauthCode{}, map[string]oauthGrant{}, map[string]oauthGrant{}
	s.grants, s.refreshes = 0, 0
}

// issue grants a new pair of tokens for subject, as the authorization-code flow ends.
func (s *oauthServer) issue(subject string) OAuthTokens {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.issueLocked(subject)
}

func (s *oauthServer) issueLocked(subject string) OAuthTokens {
	t := OAuthTokens{
		AccessToken: randomToken(s.o.prefix + "a_"), TokenType: "Bearer", RefreshToken: randomToken(s.o.prefix + "r_"),
		ExpiresIn: int(s.o.accessTTL / time.Second), Scope: s.o.scope, RefreshExpiresIn: int(s.o.refreshTTL / time.Second),
	}
	now := s.o.now()
	s.access[t.AccessToken] = oauthGrant{until: now.Add(s.o.accessTTL), subject: subject}
	var until time.Time
	if s.o.refreshTTL > 0 {
		until = now.Add(s.o.refreshTTL)
	}
	s.refresh[t.RefreshToken] = oauthGrant{until: until, subject: subject}
	s.grants++
	return t
}

// valid reports whether tok is an access token that has not expired, and its subject;
// known tells an expired token from an unknown one.
func (s *oauthServer) valid(tok string) (subject string, known, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	g, known := s.access[tok]
	return g.subject, known, known && s.o.now().Before(g.until)
}

// expireAccess makes every access token expired now, as their lifetime passing would.
func (s *oauthServer) expireAccess() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.now()
	for tok, g := range s.access {
		g.until = now
		s.access[tok] = g
	}
}

// revokeRefresh makes every refresh token answer invalid_grant, as a user who disconnects the
// app does.
func (s *oauthServer) revokeRefresh() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.now()
	for tok, g := range s.refresh {
		g.until = now
		s.refresh[tok] = g
	}
}

// counts are the access tokens valid now, and the refreshes granted.
func (s *oauthServer) counts() (valid, refreshes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.now()
	for _, g := range s.access {
		if now.Before(g.until) {
			valid++
		}
	}
	return valid, s.refreshes
}

func (s *oauthServer) stats() (grants, refreshes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants, s.refreshes
}

func oauthError(w http.ResponseWriter, status int, code, desc string) {
	writeJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// authorize approves at once (there is no user to ask) and redirects to redirect_uri with a
// code, the state, and what the subject adds.
func (s *oauthServer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != s.o.clientID {
		oauthError(w, http.StatusBadRequest, "invalid_request", "response_type=code and the client_id are required")
		return
	}
	redirect := q.Get("redirect_uri")
	u, err := url.Parse(redirect)
	if err != nil || checkURL(redirect) != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", "redirect_uri must be an absolute http(s) URL")
		return
	}
	v := u.Query()
	var subject string
	if s.o.subject != nil {
		if subject, err = s.o.subject(q, v); err != nil {
			oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
			return
		}
	}
	code := randomToken(s.o.prefix + "c_")
	s.mu.Lock()
	s.codes[code] = oauthCode{redirect: redirect, subject: subject}
	s.mu.Unlock()
	v.Set("code", code)
	if st := q.Get("state"); st != "" {
		v.Set("state", st)
	}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// token is the token endpoint, with HTTP Basic client credentials and the grant in the query or
// a form body: authorization_code (code, redirect_uri) or refresh_token (refresh_token). A
// refresh rotates both tokens.
func (s *oauthServer) token(w http.ResponseWriter, r *http.Request) {
	id, secret, ok := r.BasicAuth()
	if !ok || id != s.o.clientID || secret != s.o.clientSecret {
		oauthError(w, http.StatusUnauthorized, "invalid_client", "send the client id and secret with HTTP Basic")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		oauthError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.o.now()
	switch r.Form.Get("grant_type") {
	case "authorization_code":
		c, ok := s.codes[r.Form.Get("code")]
		if !ok || c.redirect != r.Form.Get("redirect_uri") {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "unknown or used code, or another redirect_uri")
			return
		}
		delete(s.codes, r.Form.Get("code"))
		writeJSON(w, http.StatusOK, s.issueLocked(c.subject))
	case "refresh_token":
		rt := r.Form.Get("refresh_token")
		g, ok := s.refresh[rt]
		if !ok || (!g.until.IsZero() && !now.Before(g.until)) {
			oauthError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is unknown, revoked, or was already used")
			return
		}
		// The used token works for the grace period more, and no longer than it would have.
		spent := now.Add(s.o.rotatedGrace)
		if g.until.IsZero() || spent.Before(g.until) {
			g.until = spent
		}
		s.refresh[rt] = g
		if s.o.revokeOnRotate {
			for tok, a := range s.access {
				if now.Before(a.until) {
					a.until = now
					s.access[tok] = a
				}
			}
		}
		s.refreshes++
		writeJSON(w, http.StatusOK, s.issueLocked(g.subject))
	default:
		oauthError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be authorization_code or refresh_token")
	}
}
