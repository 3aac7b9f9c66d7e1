package oauth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// Authorize runs the authorization-code flow with a loopback redirect: it
// listens on listenAddr (127.0.0.1:0 when empty), hands the authorization
// URL to show (which prints it, or opens a browser), waits for the vendor to
// redirect the browser back with a code, checks the state, and exchanges the
// code for tokens. The caller stores them (Store.Save). With
// Config.AccountParam, the redirect must name the account, and the token's
// Extra of that name holds it.
func Authorize(ctx context.Context, cfg Config, listenAddr string, show func(authURL string)) (*oauth2.Token, error) {
	if listenAddr == "" {
		listenAddr = "127.0.0.1:0"
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("listen for the redirect on %s: %w", listenAddr, err)
	}
	defer ln.Close()
	redirect := "http://" + ln.Addr().String() + "/callback"
	oc := cfg.oauth2(redirect)
	var b [16]byte
	_, _ = rand.Read(b[:])
	state := hex.EncodeToString(b[:])

	type result struct {
		code, account string
		err           error
	}
	got := make(chan result, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /callback", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var res result
		switch {
		case q.Get("state") != state:
			res.err = errors.New("the redirect's state does not match: not this login")
		case q.Get("error") != "":
			res.err = fmt.Errorf("the vendor refused: %s %s", q.Get("error"), q.Get("error_description"))
		case q.Get("code") == "":
			res.err = errors.New("the redirect carries no code")
		case cfg.AccountParam != "" && q.Get(cfg.AccountParam) == "":
			res.err = fmt.Errorf("the redirect does not say which account was connected (%s)", cfg.AccountParam)
		default:
			res.code, res.account = q.Get("code"), q.Get(cfg.AccountParam)
		}
		if res.err != nil {
			http.Error(w, res.err.Error(), http.StatusBadRequest)
		} else {
			_, _ = fmt.Fprintln(w, "Connected. You may close this window.")
		}
		select {
		case got <- res:
		default:
		}
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	show(oc.AuthCodeURL(state))
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case res := <-got:
		if res.err != nil {
			return nil, res.err
		}
		tok, err := oc.Exchange(cfg.ctx(ctx), res.code)
		if err != nil {
			return nil, fmt.Errorf("exchange the code for tokens: %w", err)
		}
		if cfg.AccountParam != "" {
			tok = tok.WithExtra(map[string]any{cfg.AccountParam: res.account})
		}
		return tok, nil
	}
}
