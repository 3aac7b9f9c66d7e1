// Package oauth keeps a vendor account's OAuth 2.0 tokens in the
// oauth_tokens KV bucket and refreshes them safely across replicas.
//
// Vendors such as Dotloop rotate refresh tokens: each refresh spends the
// refresh token it used. Two replicas that refresh at once with the same
// refresh token would leave one of them with invalid_grant. So a refresh is
// claimed first, with compare-and-swap on the record's KV revision: the
// replica that wins the claim calls the token endpoint and stores the new
// pair; a replica that loses re-reads the record and waits for the new
// token, never spending the old refresh token a second time. A claim whose
// holder died is taken over after StaleClaim.
//
// A real invalid_grant (the account was disconnected, or a refresh token was
// spent and its answer lost) is permanent: the record keeps the failure, and
// every call fails with an error that says to run `brokerflow connect
// <vendor>` again.
//
// Authorize runs the authorization-code flow with a loopback redirect (with
// PKCE when the vendor wants it), for that command.
package oauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/oauth2"

	"github.com/brokerflow/brokerflow/pkg/bus"
)

// Bucket is the KV bucket of the tokens.
const Bucket = "oauth_tokens"

// Config is a vendor's OAuth 2.0 client.
type Config struct {
	// Vendor names the account's record (its key) and the command to
	// reconnect: "dotloop".
	Vendor       string
	ClientID     string
	ClientSecret string
	// AuthURL and TokenURL are the vendor's endpoints.
	AuthURL  string
	TokenURL string
	Scopes   []string
	// PKCE adds a code challenge (S256) to the authorization and its
	// verifier to the code exchange (RFC 7636), as SkySlope requires.
	PKCE bool
	// Area prefixes the reason codes of failures: "tms" gives
	// tms.oauth_not_connected and tms.oauth_invalid_grant.
	Area string
	// HTTPClient calls the token endpoint; nil means one with a 15 s timeout.
	HTTPClient *http.Client
	// AccountParam, when set, names the parameter of the authorization
	// redirect that says which of the vendor's accounts the tokens are for
	// (QuickBooks Online: realmId, the company). Authorize requires it and
	// returns it in the token's Extra; Save keeps it as Record.Account.
	AccountParam string
}

func (c Config) oauth2(redirect string) *oauth2.Config {
	style := oauth2.AuthStyleInHeader
	if c.ClientSecret == "" {
		style = oauth2.AuthStyleInParams // a public client (PKCE) sends its id alone
	}
	return &oauth2.Config{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, RedirectURL: redirect, Scopes: c.Scopes,
		Endpoint: oauth2.Endpoint{AuthURL: c.AuthURL, TokenURL: c.TokenURL, AuthStyle: style},
	}
}

func (c Config) ctx(ctx context.Context) context.Context {
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second}
	}
	return context.WithValue(ctx, oauth2.HTTPClient, hc)
}

// Record is what the bucket holds of an account.
type Record struct {
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry"`
	// Refreshing is the claim of the replica refreshing now.
	Refreshing *Claim `json:"refreshing,omitempty"`
	// Failed is a permanent failure (invalid_grant): the account must be
	// connected again.
	Failed string `json:"failed,omitempty"`
	// Refreshed counts the refreshes, for operators.
	Refreshed int       `json:"refreshed"`
	Connected time.Time `json:"connected"`
	// Account is the vendor's account the tokens act for, when the vendor
	// names one at connection (Config.AccountParam): QuickBooks' realm id.
	Account string `json:"account,omitempty"`
}

// Claim is a refresh in progress.
type Claim struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
}

// Errors.
var (
	// ErrNotConnected: the bucket holds no tokens for the vendor.
	ErrNotConnected = errors.New("oauth: account not connected")
	// ErrReconnect: the vendor refused the refresh token (invalid_grant).
	ErrReconnect = errors.New("oauth: the vendor refused the refresh token")
)

// Store is one vendor account's tokens in the bucket. It is a
// vendorapi.RefreshingTokenSource, and safe for concurrent use.
type Store struct {
	js  jetstream.JetStream
	cfg Config
	// Margin refreshes a token this long before it expires.
	Margin time.Duration
	// StaleClaim is how long a refresh claim holds before another replica
	// may take it over.
	StaleClaim time.Duration
	now        func() time.Time
	holder     string

	mu sync.Mutex
	kv jetstream.KeyValue
}

// NewStore returns the store of cfg.Vendor's tokens, bound to the bucket on
// first use.
func NewStore(js jetstream.JetStream, cfg Config) *Store {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &Store{js: js, cfg: cfg, Margin: 2 * time.Minute, StaleClaim: 30 * time.Second, now: time.Now, holder: host + "-" + hex.EncodeToString(b[:])}
}

func (s *Store) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.kv != nil {
		return s.kv, nil
	}
	kv, err := s.js.KeyValue(ctx, Bucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", Bucket, err)
	}
	s.kv = kv
	return kv, nil
}

// Save stores a new connection's tokens, replacing whatever was there.
// With Config.AccountParam, the account is the token's Extra of that name,
// as Authorize returns it.
func (s *Store) Save(ctx context.Context, t *oauth2.Token) error {
	kv, err := s.bucket(ctx)
	if err != nil {
		return err
	}
	rec := Record{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: t.TokenType, Expiry: t.Expiry, Connected: s.now().UTC()}
	if s.cfg.AccountParam != "" {
		rec.Account, _ = t.Extra(s.cfg.AccountParam).(string)
		if rec.Account == "" {
			return fmt.Errorf("save %s tokens: the connection names no account (%s)", s.cfg.Vendor, s.cfg.AccountParam)
		}
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, s.cfg.Vendor, b)
	return err
}

// Load returns the record and its revision.
func (s *Store) Load(ctx context.Context) (Record, uint64, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return Record{}, 0, err
	}
	e, err := kv.Get(ctx, s.cfg.Vendor)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, 0, s.permanent("oauth_not_connected", fmt.Errorf("%w: no %s tokens in %s; run `brokerflow connect %s`", ErrNotConnected, s.cfg.Vendor, Bucket, s.cfg.Vendor))
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("read %s tokens: %w", s.cfg.Vendor, err)
	}
	var rec Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return Record{}, 0, bus.AsPermanent(fmt.Errorf("decode %s tokens: %w", s.cfg.Vendor, err))
	}
	return rec, e.Revision(), nil
}

func (s *Store) permanent(code string, err error) error {
	return bus.WithCode(s.cfg.Area+"."+code, bus.AsPermanent(err))
}

func (s *Store) failed(rec Record) error {
	return s.permanent("oauth_invalid_grant", fmt.Errorf("%w (%s): run `brokerflow connect %s` to connect the account again", ErrReconnect, rec.Failed, s.cfg.Vendor))
}

func (s *Store) fresh(rec Record) bool {
	return rec.AccessToken != "" && (rec.Expiry.IsZero() || s.now().Add(s.Margin).Before(rec.Expiry))
}

// Account returns the vendor's account the stored tokens act for
// (Record.Account): QuickBooks' realm id.
func (s *Store) Account(ctx context.Context) (string, error) {
	rec, _, err := s.Load(ctx)
	if err != nil {
		return "", err
	}
	if rec.Account == "" {
		return "", s.permanent("oauth_no_account", fmt.Errorf("%w: the %s connection names no account; run `brokerflow connect %s`", ErrNotConnected, s.cfg.Vendor, s.cfg.Vendor))
	}
	return rec.Account, nil
}

// Token returns a valid access token, refreshing it first when it has
// expired or is about to.
func (s *Store) Token(ctx context.Context) (string, error) {
	rec, _, err := s.Load(ctx)
	if err != nil {
		return "", err
	}
	if rec.Failed != "" {
		return "", s.failed(rec)
	}
	if s.fresh(rec) {
		return rec.AccessToken, nil
	}
	if err := s.Refresh(ctx, rec.AccessToken); err != nil {
		return "", err
	}
	rec, _, err = s.Load(ctx)
	if err != nil {
		return "", err
	}
	return rec.AccessToken, nil
}

// errConflict is a compare-and-swap that lost.
var errConflict = errors.New("oauth: record changed meanwhile")

func (s *Store) update(ctx context.Context, rec Record, rev uint64) (uint64, error) {
	kv, err := s.bucket(ctx)
	if err != nil {
		return 0, err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	next, err := kv.Update(ctx, s.cfg.Vendor, b, rev)
	if bus.Conflict(err) {
		return 0, errConflict
	}
	if err != nil {
		return 0, fmt.Errorf("write %s tokens: %w", s.cfg.Vendor, err)
	}
	return next, nil
}

// CrashAfterRefresh is the harmful point of a refresh: the vendor rotated
// the tokens and the bucket does not hold them yet.
const CrashAfterRefresh bus.CrashPoint = "oauth.after_refresh"

// Refresh renews the access token that the vendor refused (refused; empty
// when it merely expired). A token already renewed by another replica is
// not refreshed again.
func (s *Store) Refresh(ctx context.Context, refused string) error {
	for {
		rec, rev, err := s.Load(ctx)
		if err != nil {
			return err
		}
		if rec.Failed != "" {
			return s.failed(rec)
		}
		if rec.AccessToken != refused && s.fresh(rec) {
			return nil // renewed by someone else meanwhile
		}
		now := s.now()
		if c := rec.Refreshing; c != nil && now.Before(c.Since.Add(s.StaleClaim)) {
			// Another replica is refreshing: wait for its token.
			if err := sleep(ctx, 25*time.Millisecond); err != nil {
				return err
			}
			continue
		}
		claim := rec
		claim.Refreshing = &Claim{Holder: s.holder, Since: now.UTC()}
		claimRev, err := s.update(ctx, claim, rev)
		if errors.Is(err, errConflict) {
			continue // lost the claim: read the winner's record
		} else if err != nil {
			return err
		}
		return s.refreshHolding(ctx, rec, claimRev)
	}
}

// refreshHolding calls the token endpoint under a claim at claimRev.
func (s *Store) refreshHolding(ctx context.Context, rec Record, claimRev uint64) error {
	src := s.cfg.oauth2("").TokenSource(s.cfg.ctx(ctx), &oauth2.Token{RefreshToken: rec.RefreshToken, Expiry: time.Unix(1, 0)})
	tok, err := src.Token()
	if err != nil {
		rec.Refreshing = nil
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "invalid_grant" {
			rec.Failed = "invalid_grant at " + s.now().UTC().Format(time.RFC3339)
			if _, uerr := s.update(ctx, rec, claimRev); uerr != nil {
				return uerr
			}
			return s.failed(rec)
		}
		// Release the claim; the refresh token was not spent.
		_, _ = s.update(ctx, rec, claimRev)
		return bus.WithCode(s.cfg.Area+".oauth_refresh", fmt.Errorf("refresh %s token: %w", s.cfg.Vendor, err))
	}
	bus.Crash(ctx, CrashAfterRefresh)
	next := Record{
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType, Expiry: tok.Expiry,
		Refreshed: rec.Refreshed + 1, Connected: rec.Connected, Account: rec.Account,
	}
	if next.RefreshToken == "" {
		next.RefreshToken = rec.RefreshToken // a vendor that does not rotate
	}
	if _, err := s.update(ctx, next, claimRev); errors.Is(err, errConflict) {
		// The claim was taken over as stale; whoever took it spent nothing
		// useful (the refresh token was ours to spend). These tokens are
		// the valid ones: keep them.
		kv, kerr := s.bucket(ctx)
		if kerr != nil {
			return kerr
		}
		b, _ := json.Marshal(next)
		_, err = kv.Put(ctx, s.cfg.Vendor, b)
		return err
	} else if err != nil {
		return err
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
