package vendorapi

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

// Auth puts a request's credentials on it.
type Auth interface {
	// Authorize sets the credentials of req. body is the request's body
	// (nil without one), for schemes that sign it. An error fails the call
	// with the reason code "<area>.auth", transient unless it is marked
	// permanent (bus.AsPermanent).
	Authorize(req *http.Request, body []byte) error
}

// Refresher is an Auth whose credentials can be renewed. After a 401 the
// client calls Refresh once, with the refused request, and sends the request
// again; a second 401 is the answer.
type Refresher interface {
	Auth
	Refresh(ctx context.Context, refused *http.Request) error
}

// TokenSource gives the access token to send.
type TokenSource interface {
	Token(ctx context.Context) (string, error)
}

// RefreshingTokenSource is a TokenSource that can get a new token when the
// vendor refuses one (an OAuth refresh-token grant). refused is the token
// the vendor answered 401 to: a source shared by replicas compares it with
// the token it holds, so that a token another replica already renewed is not
// refreshed again. Token returns the new token afterwards.
type RefreshingTokenSource interface {
	TokenSource
	Refresh(ctx context.Context, refused string) error
}

// TokenFunc is a TokenSource from a function.
type TokenFunc func(ctx context.Context) (string, error)

// Token calls f.
func (f TokenFunc) Token(ctx context.Context) (string, error) { return f(ctx) }

// StaticToken is a TokenSource that is always the same token.
type StaticToken string

// Token returns t.
func (t StaticToken) Token(context.Context) (string, error) { return string(t), nil }

// Basic is HTTP Basic authentication.
func Basic(user, password string) Auth { return basicAuth{user, password} }

type basicAuth struct{ user, password string }

func (b basicAuth) Authorize(req *http.Request, _ []byte) error {
	req.SetBasicAuth(b.user, b.password)
	return nil
}

// Bearer sends a fixed token as Authorization: Bearer.
func Bearer(token string) Auth { return OAuth(StaticToken(token)) }

// OAuth sends src's token as Authorization: Bearer. When src is a
// RefreshingTokenSource, a 401 makes the client refresh it once and try
// again.
func OAuth(src TokenSource) Auth {
	if rs, ok := src.(RefreshingTokenSource); ok {
		return refreshingBearer{bearer{rs}, rs}
	}
	return bearer{src}
}

type bearer struct{ src TokenSource }

var errEmptyToken = errors.New("the access token is empty")

func (b bearer) Authorize(req *http.Request, _ []byte) error {
	tok, err := b.src.Token(req.Context())
	if err != nil {
		return err
	}
	if tok == "" {
		return errEmptyToken
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return nil
}

type refreshingBearer struct {
	bearer
	rs RefreshingTokenSource
}

func (r refreshingBearer) Refresh(ctx context.Context, refused *http.Request) error {
	scheme, tok, _ := strings.Cut(refused.Header.Get("Authorization"), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		tok = ""
	}
	return r.rs.Refresh(ctx, tok)
}

// Signed sets header to what sign computes from the request and its body
// (an HMAC of the body, say).
func Signed(header string, sign func(req *http.Request, body []byte) (string, error)) Auth {
	return signedAuth{header, sign}
}

type signedAuth struct {
	header string
	sign   func(*http.Request, []byte) (string, error)
}

func (s signedAuth) Authorize(req *http.Request, body []byte) error {
	v, err := s.sign(req, body)
	if err != nil {
		return err
	}
	req.Header.Set(s.header, v)
	return nil
}
