package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"

	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// The QuickBooks quota measurement's company limit: QuickBooks' 500 calls a
// minute, over a window shortened to 6 s (50 calls) so that a short run
// crosses several windows; the 10 a second is QuickBooks' own.
const (
	ledgerLimit     = 50
	ledgerWindow    = 6 * time.Second
	ledgerPerSecond = 10
)

// LedgerQuota books closings through the QuickBooks Online adapter against
// the sandbox at its throttle: the calls of the first closing (every party,
// item and class new), the calls of a closing in steady state (a new client;
// the agent, the items and the class known), and, with o.LedgerWorkers
// bookings at a time for o.LedgerDuration, the company's calls per window
// against its limit and the calls the sandbox refused (429).
func LedgerQuota(ctx context.Context, o Options, w io.Writer) error {
	policy, err := app.ParseSyncPolicy(o.Sync)
	if err != nil {
		return err
	}
	_, js, stopJS, err := startJetStream(ctx, policy)
	if err != nil {
		return err
	}
	defer stopJS()
	sb := sandbox.New(sandbox.Options{QuickBooks: sandbox.QuickBooksOptions{Limit: ledgerLimit, Window: ledgerWindow, PerSecond: ledgerPerSecond}})
	defer sb.Close()
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	qb := sb.QuickBooks()

	cfg := quickbooks.Config{
		BaseURL: srv.URL + "/quickbooks", AuthURL: srv.URL + "/quickbooks/connect/oauth2", TokenURL: srv.URL + "/quickbooks/oauth2/v1/tokens/bearer",
		ClientID: sandbox.DefaultQuickBooksClientID, ClientSecret: sandbox.DefaultQuickBooksClientSecret, Timeout: 30 * time.Second,
		RateLimit: ledgerLimit, RateWindow: ledgerWindow, PerSecond: ledgerPerSecond,
	}
	store := oauth.NewStore(js, cfg.OAuthConfig())
	tok := qb.IssueTokens(sandbox.DefaultQuickBooksRealm)
	if err := store.Save(ctx, (&oauth2.Token{
		AccessToken: tok.AccessToken, RefreshToken: tok.RefreshToken, TokenType: tok.TokenType,
		Expiry: time.Now().Add(time.Duration(tok.ExpiresIn) * time.Second),
	}).WithExtra(map[string]any{"realmId": sandbox.DefaultQuickBooksRealm})); err != nil {
		return err
	}
	a := quickbooks.New(cfg, store)
	fmt.Fprintf(w, "# ledger: the sandbox's QuickBooks window is shortened from 1 minute to %s for this run: %d calls per %s (the same 500 a minute), %d a second; utilization is against that configured limit\n",
		ledgerWindow, ledgerLimit, ledgerWindow, ledgerPerSecond)

	var n atomic.Int64
	closing := func() ledger.Booking {
		i := n.Add(1)
		return ledger.Booking{
			Key: fmt.Sprintf("dotloop:%d", 50000+i), Document: ledger.DocumentInvoice, AgentAs: ledger.AgentAsClass,
			Payer: ledger.Party{Key: fmt.Sprintf("contact-%d", i), DisplayName: fmt.Sprintf("Client %05d", i), Email: fmt.Sprintf("client%05d@bench.example", i)},
			Agent: ledger.Agent{ID: "agent-7", Name: "Grace Hopper", Email: "grace@brokerage.example"},
			// PayoutMinor 0: no Bill; the brokerage pays agents outside QuickBooks.
			Property: fmt.Sprintf("%d Main St, Springfield, IL", i), Date: "2026-12-01", Currency: "USD",
			Lines: []ledger.Line{
				{Kind: ledger.KindAgentShare, Item: "Commission income", Description: "Agent share", AmountMinor: 1_102_500},
				{Kind: ledger.KindBrokerageShare, Item: "Commission income", Description: "Brokerage share", AmountMinor: 422_500},
				{Kind: ledger.KindTransactionFee, Item: "Transaction fee", Description: "Transaction fee", AmountMinor: 50_000},
			},
		}
	}
	calls := func() int { return qb.Usage().Counted }

	// The first closing, then one in steady state, one at a time.
	if _, err := a.Book(ctx, closing()); err != nil {
		return fmt.Errorf("ledger: first closing: %w", err)
	}
	first := calls()
	if _, err := a.Book(ctx, closing()); err != nil {
		return fmt.Errorf("ledger: second closing: %w", err)
	}
	steady := calls() - first

	// Closings back to back from o.LedgerWorkers bookers, from a fresh
	// window.
	time.Sleep(ledgerWindow + time.Second)
	before, booked := calls(), atomic.Int64{}
	var failed error
	var mu sync.Mutex
	start := time.Now()
	deadline := start.Add(o.LedgerDuration)
	var wg sync.WaitGroup
	for range max(o.LedgerWorkers, 1) {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				if _, err := a.Book(ctx, closing()); err != nil {
					mu.Lock()
					failed = errors.Join(failed, err)
					mu.Unlock()
					return
				}
				booked.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	used := calls() - before
	perWindow := float64(used) / elapsed.Seconds() * ledgerWindow.Seconds()

	fmt.Fprintf(w, "# ledger: calls per closing: the first (customer, class, items and accounts new) and in steady state (a new client; the agent's class and the items known); an invoice, no payout bill\n")
	fmt.Fprintf(w, "bench: ledger_calls_per_closing_first %d calls\n", first)
	fmt.Fprintf(w, "bench: ledger_calls_per_closing %d calls\n", steady)
	fmt.Fprintf(w, "bench: ledger_closings_booked %d closings\n", booked.Load())
	fmt.Fprintf(w, "bench: ledger_closings_per_min %.0f closings/min\n", float64(booked.Load())/elapsed.Minutes())
	fmt.Fprintf(w, "bench: ledger_quota_utilization %.3f x\n", perWindow/ledgerLimit)
	fmt.Fprintf(w, "bench: ledger_429_count %d count\n", qb.Usage().Refused)
	if failed != nil {
		return fmt.Errorf("ledger: a booking failed: %w", failed)
	}
	return nil
}
