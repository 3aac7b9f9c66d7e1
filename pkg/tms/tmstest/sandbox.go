package tmstest

import (
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	"github.com/brokerflow/brokerflow/pkg/tms/skyslope"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// DotloopConfig is the adapter configuration for the Dotloop of the sandbox at base.
func DotloopConfig(base string) dotloop.Config {
	return dotloop.Config{
		BaseURL: base + "/dotloop/public/v2", AuthURL: base + "/dotloop/oauth",
		ClientID: sandbox.DefaultDotloopClientID, ClientSecret: sandbox.DefaultDotloopClientSecret, Timeout: 10 * time.Second,
	}
}

// OAuthConfig is the OAuth client of cfg's Dotloop.
func OAuthConfig(cfg dotloop.Config) oauth.Config {
	return oauth.Config{
		Vendor: dotloop.Name, Area: tms.Area, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret,
		AuthURL: cfg.AuthorizeURL(), TokenURL: cfg.TokenURL(),
	}
}

// Connect stores a fresh pair of the sandbox Dotloop's tokens in store, as
// `brokerflow connect dotloop` does.
func Connect(t *testing.T, d *sandbox.Dotloop, store *oauth.Store) {
	t.Helper()
	SaveTokens(t, d.IssueTokens(), store)
}

// SaveTokens stores tok in store, as `brokerflow connect` does at the end
// of the authorization.
func SaveTokens(t *testing.T, tok sandbox.OAuthTokens, store *oauth.Store) {
	t.Helper()
	err := store.Save(natstest.Context(t, 10*time.Second), &oauth2.Token{
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType,
		Expiry: time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second),
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Dotloop runs a sandbox over real HTTP and an embedded JetStream with the
// declarations applied, connects the sandbox's Dotloop account, and returns
// the adapter on it and its backend.
func Dotloop(t *testing.T) (*dotloop.Dotloop, DotloopBackend) {
	t.Helper()
	return DotloopWith(t, sandbox.DotloopOptions{})
}

// DotloopWith is Dotloop with the sandbox's Dotloop configured by o.
func DotloopWith(t *testing.T, o sandbox.DotloopOptions) (*dotloop.Dotloop, DotloopBackend) {
	t.Helper()
	sb, base, js := start(t, sandbox.Options{Dotloop: o})
	cfg := DotloopConfig(base)
	store := oauth.NewStore(js, OAuthConfig(cfg))
	Connect(t, sb.Dotloop(), store)
	return dotloop.New(cfg, store), DotloopBackend{D: sb.Dotloop()}
}

// start runs a sandbox over real HTTP and an embedded JetStream with the
// declarations applied.
func start(t *testing.T, o sandbox.Options) (*sandbox.Sandbox, string, jetstream.JetStream) {
	t.Helper()
	sb := sandbox.New(o)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close)
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	natstest.Apply(t, js, bus.DefaultTopology())
	return sb, srv.URL, js
}

// DotloopBackend is the sandbox's Dotloop account.
type DotloopBackend struct{ D *sandbox.Dotloop }

// Profile is the sandbox's one profile.
func (b DotloopBackend) Profile() string { return strconv.Itoa(sandbox.DefaultDotloopProfileID) }

// Transactions counts the loops.
func (b DotloopBackend) Transactions(*testing.T) int { return len(b.D.Loops()) }

// FailNext injects a fault.
func (b DotloopBackend) FailNext(_ *testing.T, status, n, retryAfter int) {
	b.D.InjectFault(sandbox.Fault{Status: status, Count: n, RetryAfter: retryAfter})
}

// ExpireToken expires every access token now.
func (b DotloopBackend) ExpireToken(*testing.T) { b.D.ExpireAccessTokens() }

// SkySlopeConfig is the adapter configuration for the SkySlope of the sandbox at base.
func SkySlopeConfig(base string) skyslope.Config {
	return skyslope.Config{
		FormsURL: base + "/skyslope/partner/api", AuthURL: base + "/skyslope/oauth2", FilesURL: base + "/skyslope",
		ClientID: sandbox.DefaultSkySlopeClientID, ClientSecret: sandbox.DefaultSkySlopeClientSecret,
		AccessKey: sandbox.DefaultSkySlopeAccessKey, AccessSecret: sandbox.DefaultSkySlopeAccessSecret,
		FilesClientID: sandbox.DefaultSkySlopeFilesClientID, FilesClientSecret: sandbox.DefaultSkySlopeFilesClientSecret,
		Timeout: 10 * time.Second, MaxPages: 100,
	}
}

// ConnectSkySlope stores a fresh pair of the sandbox SkySlope's Forms API
// tokens in store, as `brokerflow connect skyslope` does.
func ConnectSkySlope(t *testing.T, s *sandbox.SkySlope, store *oauth.Store) {
	t.Helper()
	SaveTokens(t, s.IssueTokens(), store)
}

// SkySlope runs a sandbox over real HTTP and an embedded JetStream with the
// declarations applied, connects the sandbox's SkySlope account, and returns
// the adapter on it and its backend.
func SkySlope(t *testing.T) (*skyslope.SkySlope, SkySlopeBackend) {
	t.Helper()
	sb, base, js := start(t, sandbox.Options{})
	cfg := SkySlopeConfig(base)
	store := oauth.NewStore(js, cfg.OAuth())
	ConnectSkySlope(t, sb.SkySlope(), store)
	return skyslope.New(cfg, store), SkySlopeBackend{S: sb.SkySlope()}
}

// SkySlopeBackend is the sandbox's SkySlope account.
type SkySlopeBackend struct{ S *sandbox.SkySlope }

// Profile is empty: the Forms API acts as the connected user, who has no profiles.
func (b SkySlopeBackend) Profile() string { return "" }

// Transactions counts the Forms files.
func (b SkySlopeBackend) Transactions(*testing.T) int { return len(b.S.Files()) }

// FailNext injects a fault.
func (b SkySlopeBackend) FailNext(_ *testing.T, status, n, retryAfter int) {
	b.S.InjectFault(sandbox.Fault{Status: status, Count: n, RetryAfter: retryAfter})
}

// ExpireToken expires every access token and Files API session now.
func (b SkySlopeBackend) ExpireToken(*testing.T) {
	b.S.ExpireAccessTokens()
	b.S.ExpireSessions()
}
