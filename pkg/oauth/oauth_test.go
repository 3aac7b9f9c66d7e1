package oauth_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

func dotloopSandbox(t *testing.T) (*sandbox.Dotloop, oauth.Config) {
	t.Helper()
	sb := sandbox.New(sandbox.Options{})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(sb.Close)
	return sb.Dotloop(), oauth.Config{
		Vendor: "dotloop", Area: "tms", ClientID: sandbox.DefaultDotloopClientID, ClientSecret: sandbox.DefaultDotloopClientSecret,
		AuthURL: srv.URL + "/dotloop/oauth/authorize", TokenURL: srv.URL + "/dotloop/oauth/token",
	}
}

func saved(d *sandbox.Dotloop) *oauth2.Token {
	t := d.IssueTokens()
	return &oauth2.Token{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: t.TokenType, Expiry: time.Now().Add(time.Hour)}
}

// TestStore_twoReplicasRefreshOneExpiredTokenOnce: two replicas meet one
// expired token at once; one refreshes, the other waits for its token, and
// the account ends with one valid token and no invalid_grant.
func TestStore_twoReplicasRefreshOneExpiredTokenOnce(t *testing.T) {
	t.Parallel()
	d, cfg := dotloopSandbox(t)
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	natstest.Apply(t, js, bus.DefaultTopology())
	ctx := natstest.Context(t, 30*time.Second)
	if err := oauth.NewStore(js, cfg).Save(ctx, saved(d)); err != nil {
		t.Fatal(err)
	}
	d.ExpireAccessTokens()
	// The token endpoint is slow, so both replicas read the expired record
	// before either has stored a new one.
	d.SetLatency(200 * time.Millisecond)

	replicas := make([]*oauth.Store, 2)
	for i := range replicas {
		_, rjs := natstest.Connect(t, srv)
		replicas[i] = oauth.NewStore(rjs, cfg)
	}
	rec, _, err := replicas[0].Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(replicas))
	for i, r := range replicas {
		wg.Go(func() { errs[i] = r.Refresh(ctx, rec.AccessToken) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
	}
	d.SetLatency(0)
	valid, refreshes := d.TokenCounts()
	if valid != 1 || refreshes != 1 {
		t.Fatalf("%d valid tokens after %d refreshes; want 1 and 1", valid, refreshes)
	}
	for i, r := range replicas {
		tok, err := r.Token(ctx)
		if err != nil || tok == rec.AccessToken {
			t.Fatalf("replica %d token %q, %v", i, tok, err)
		}
	}
}

// TestStore_tokenRefreshesAnExpiredToken: Token renews an expired token
// before handing it out.
func TestStore_tokenRefreshesAnExpiredToken(t *testing.T) {
	t.Parallel()
	d, cfg := dotloopSandbox(t)
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	natstest.Apply(t, js, bus.DefaultTopology())
	ctx := natstest.Context(t, 30*time.Second)
	s := oauth.NewStore(js, cfg)
	first := saved(d)
	first.Expiry = time.Now().Add(-time.Minute)
	if err := s.Save(ctx, first); err != nil {
		t.Fatal(err)
	}
	tok, err := s.Token(ctx)
	if err != nil || tok == first.AccessToken || tok == "" {
		t.Fatalf("Token = %q, %v", tok, err)
	}
	if _, n := d.TokenCounts(); n != 1 {
		t.Fatalf("%d refreshes", n)
	}
}

// TestStore_invalidGrantIsPermanentAndSaysToReconnect: a refresh token the
// vendor refuses is a permanent failure naming the command, kept for every
// later call.
func TestStore_invalidGrantIsPermanentAndSaysToReconnect(t *testing.T) {
	t.Parallel()
	d, cfg := dotloopSandbox(t)
	srv := natstest.Start(t)
	_, js := natstest.Connect(t, srv)
	natstest.Apply(t, js, bus.DefaultTopology())
	ctx := natstest.Context(t, 30*time.Second)
	s := oauth.NewStore(js, cfg)
	if err := s.Save(ctx, &oauth2.Token{AccessToken: "revoked", RefreshToken: "spent", Expiry: time.Now().Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_ = d
	for range 2 {
		_, err := s.Token(ctx)
		if !errors.Is(err, oauth.ErrReconnect) || bus.DefaultClassify(err) != bus.Permanent || bus.ReasonCode(err, bus.Permanent) != "tms.oauth_invalid_grant" {
			t.Fatalf("Token error %v (class %v, code %q)", err, bus.DefaultClassify(err), bus.ReasonCode(err, bus.Permanent))
		}
		if want := "run `brokerflow connect dotloop`"; !contains(err.Error(), want) {
			t.Fatalf("error %q does not say %q", err, want)
		}
	}
	if _, n := d.TokenCounts(); n != 0 {
		t.Fatalf("%d refreshes", n)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestAuthorize_loopbackRedirect: the authorization-code flow with a
// loopback redirect ends with tokens the API accepts.
func TestAuthorize_loopbackRedirect(t *testing.T) {
	t.Parallel()
	_, cfg := dotloopSandbox(t)
	ctx := natstest.Context(t, 30*time.Second)
	tok, err := oauth.Authorize(ctx, cfg, "", func(authURL string) {
		// The "browser": the sandbox approves at once and redirects to the loopback callback.
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	})
	if err != nil || tok.AccessToken == "" || tok.RefreshToken == "" || time.Until(tok.Expiry) < 11*time.Hour {
		t.Fatalf("Authorize = %+v, %v", tok, err)
	}
}

// TestStore_accountFromTheRedirectIsKeptAcrossRefreshes: with
// AccountParam (QuickBooks' realmId), Authorize returns the redirect's
// account, Save keeps it, and a refresh does not lose it.
func TestStore_accountFromTheRedirectIsKeptAcrossRefreshes(t *testing.T) {
	t.Parallel()
	sb := sandbox.New(sandbox.Options{})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	cfg := oauth.Config{
		Vendor: "quickbooks", Area: "ledger", ClientID: sandbox.DefaultQuickBooksClientID, ClientSecret: sandbox.DefaultQuickBooksClientSecret,
		AuthURL: srv.URL + "/quickbooks/connect/oauth2", TokenURL: srv.URL + "/quickbooks/oauth2/v1/tokens/bearer", AccountParam: "realmId",
	}
	ns := natstest.Start(t)
	_, js := natstest.Connect(t, ns)
	natstest.Apply(t, js, bus.DefaultTopology())
	ctx := natstest.Context(t, 30*time.Second)
	tok, err := oauth.Authorize(ctx, cfg, "", func(authURL string) {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, authURL, nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	})
	if err != nil || tok.Extra("realmId") != sandbox.DefaultQuickBooksRealm {
		t.Fatalf("Authorize = %+v (realmId %v), %v", tok, tok.Extra("realmId"), err)
	}
	s := oauth.NewStore(js, cfg)
	if err := s.Save(ctx, tok); err != nil {
		t.Fatal(err)
	}
	sb.QuickBooks().ExpireAccessTokens()
	if err := s.Refresh(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	rec, _, err := s.Load(ctx)
	if err != nil || rec.Refreshed != 1 || rec.AccessToken == tok.AccessToken {
		t.Fatalf("record %+v, %v", rec, err)
	}
	if acct, err := s.Account(ctx); err != nil || acct != sandbox.DefaultQuickBooksRealm {
		t.Fatalf("Account after a refresh = %q, %v", acct, err)
	}
	// A token without the account is refused.
	if err := s.Save(ctx, &oauth2.Token{AccessToken: "a", RefreshToken: "r"}); err == nil {
		t.Fatal("saved a connection that names no company")
	}
}
