// Package tmstest is the contract every TMS adapter passes: the same suite
// runs against each adapter (tms/dotloop, tms/skyslope), talking over
// real HTTP to the sandbox. What an adapter's Capabilities say it cannot do
// must answer tms.ErrUnsupported, and the suite checks that too.
package tmstest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/tms"
)

// Backend is the TMS account behind an adapter, as a test sees it.
type Backend interface {
	// Profile is the account's profile to open transactions in.
	Profile() string
	// Transactions is the number of transactions the account holds.
	Transactions(t *testing.T) int
	// FailNext makes the next n calls answer status; retryAfter > 0 sets
	// Retry-After (seconds).
	FailNext(t *testing.T, status, n, retryAfter int)
	// ExpireToken makes the current access token expired, as time does.
	ExpireToken(t *testing.T)
}

// Factory returns an adapter on a fresh, empty account and its backend.
type Factory func(t *testing.T) (tms.TMS, Backend)

// Client is the client of the transactions the suite opens.
var Client = tms.Party{FullName: "Ada Lovelace", Email: "ada@example.com", Phone: "+14155550134", Role: tms.RoleBuyer}

// OpenRequest is a purchase for Client at 12 Main St.
func OpenRequest(profile string) tms.Open {
	return tms.Open{
		Profile: profile, Name: "Ada Lovelace", Type: tms.TypePurchase, Status: "PRE_OFFER",
		Property: &tms.Property{StreetNumber: "12", StreetName: "Main St", City: "Springfield", State: "IL", PostalCode: "62701", Country: "US", MLSNumber: "MLS123"},
		Parties:  []tms.Party{Client},
	}
}

// Run runs the contract suite against the adapters newTMS makes.
func Run(t *testing.T, newTMS Factory) {
	t.Helper()
	ctx := func(t *testing.T) context.Context {
		c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		t.Cleanup(cancel)
		return c
	}
	policy := bus.DefaultPolicy()

	t.Run("open_then_read_back", func(t *testing.T) {
		t.Parallel()
		a, be := newTMS(t)
		tx, err := a.Open(ctx(t), OpenRequest(be.Profile()))
		if err != nil {
			t.Fatal(err)
		}
		if tx.ID == "" || tx.Profile != be.Profile() || tx.Type != tms.TypePurchase || tx.Name != "Ada Lovelace" {
			t.Fatalf("Open = %+v", tx)
		}
		got, err := a.Transaction(ctx(t), tx.Profile, tx.ID)
		if err != nil || got.ID != tx.ID || got.Status != tx.Status || got.Type != tms.TypePurchase || got.Name != tx.Name {
			t.Fatalf("Transaction = %+v, %v; want %+v", got, err, tx)
		}
		if be.Transactions(t) != 1 {
			t.Fatalf("%d transactions, want 1", be.Transactions(t))
		}
		parties, err := a.Participants(ctx(t), tx.Profile, tx.ID)
		if !a.Capabilities().Participants {
			if !errors.Is(err, tms.ErrUnsupported) {
				t.Fatalf("Participants without the capability: %v, want ErrUnsupported", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		i := slices.IndexFunc(parties, func(p tms.Party) bool { return p.Role == tms.RoleBuyer })
		if i < 0 || parties[i].Email != Client.Email || parties[i].Phone != Client.Phone || parties[i].FullName != Client.FullName || parties[i].ID == "" {
			t.Fatalf("participants = %+v", parties)
		}
	})

	t.Run("unknown_transaction_is_not_found", func(t *testing.T) {
		t.Parallel()
		a, be := newTMS(t)
		if _, err := a.Transaction(ctx(t), be.Profile(), "999999"); !errors.Is(err, tms.ErrNotFound) {
			t.Fatalf("Transaction of an unknown id: %v, want ErrNotFound", err)
		}
	})

	t.Run("transactions_lists_newest_first", func(t *testing.T) {
		t.Parallel()
		a, be := newTMS(t)
		if !a.Capabilities().ListTransactions {
			if _, err := a.Transactions(ctx(t), be.Profile(), 10); !errors.Is(err, tms.ErrUnsupported) {
				t.Fatalf("Transactions without the capability: %v, want ErrUnsupported", err)
			}
			return
		}
		var ids []string
		for range 2 {
			tx, err := a.Open(ctx(t), OpenRequest(be.Profile()))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, tx.ID)
		}
		list, err := a.Transactions(ctx(t), be.Profile(), 10)
		if err != nil || len(list) != 2 || list[0].ID != ids[1] || list[1].ID != ids[0] {
			t.Fatalf("Transactions = %+v, %v; want %v newest first", list, err, ids)
		}
	})

	t.Run("update_participant", func(t *testing.T) {
		t.Parallel()
		a, be := newTMS(t)
		tx, err := a.Open(ctx(t), OpenRequest(be.Profile()))
		if err != nil {
			t.Fatal(err)
		}
		if !a.Capabilities().UpdateParticipants {
			p := Client
			p.ID, p.Phone = "1", "+14155550199"
			if _, err := a.UpdateParticipant(ctx(t), tx.Profile, tx.ID, p); !errors.Is(err, tms.ErrUnsupported) {
				t.Fatalf("UpdateParticipant without the capability: %v, want ErrUnsupported", err)
			}
			return
		}
		parties, err := a.Participants(ctx(t), tx.Profile, tx.ID)
		if err != nil || len(parties) == 0 {
			t.Fatalf("participants %v, %v", parties, err)
		}
		p := parties[0]
		p.Phone = "+14155550199"
		if _, err := a.UpdateParticipant(ctx(t), tx.Profile, tx.ID, p); err != nil {
			t.Fatal(err)
		}
		again, err := a.Participants(ctx(t), tx.Profile, tx.ID)
		if err != nil || again[0].Phone != "+14155550199" || again[0].Email != Client.Email {
			t.Fatalf("after the update: %+v, %v", again, err)
		}
	})

	t.Run("update_property", func(t *testing.T) {
		t.Parallel()
		a, be := newTMS(t)
		bare := OpenRequest(be.Profile())
		want := *bare.Property
		bare.Property = nil
		if !a.Capabilities().UpdateProperty {
			if err := a.UpdateProperty(ctx(t), be.Profile(), "1", want); !errors.Is(err, tms.ErrUnsupported) {
				t.Fatalf("UpdateProperty without the capability: %v, want ErrUnsupported", err)
			}
			return
		}
		tx, err := a.Open(ctx(t), bare)
		if err != nil {
			t.Fatal(err)
		}
		before, err := a.Details(ctx(t), tx.Profile, tx.ID)
		if err != nil {
			t.Fatal(err)
		}
		if hasValues(before, want.StreetName, want.PostalCode) {
			t.Fatalf("a transaction opened without a property shows one: %v", before)
		}
		if err := a.UpdateProperty(ctx(t), tx.Profile, tx.ID, want); err != nil {
			t.Fatal(err)
		}
		after, err := a.Details(ctx(t), tx.Profile, tx.ID)
		if err != nil || !hasValues(after, want.StreetNumber, want.StreetName, want.City, want.State, want.PostalCode, want.MLSNumber) {
			t.Fatalf("details after UpdateProperty = %v, %v; want %+v", after, err, want)
		}
		if err := a.UpdateProperty(ctx(t), tx.Profile, "999999", want); !errors.Is(err, tms.ErrNotFound) {
			t.Fatalf("UpdateProperty of an unknown transaction: %v, want ErrNotFound", err)
		}
	})

	t.Run("subscriptions", func(t *testing.T) {
		t.Parallel()
		a, _ := newTMS(t)
		sub := tms.Subscription{URL: "https://brokerflow.example/webhooks/dotloop", Events: []string{"LOOP_UPDATED"}, SigningKey: "k", ExternalID: "brokerflow"}
		if !a.Capabilities().Webhooks {
			if _, err := a.Subscribe(ctx(t), sub); !errors.Is(err, tms.ErrUnsupported) {
				t.Fatalf("Subscribe without the capability: %v, want ErrUnsupported", err)
			}
			if _, err := a.Subscriptions(ctx(t)); !errors.Is(err, tms.ErrUnsupported) {
				t.Fatalf("Subscriptions without the capability: %v, want ErrUnsupported", err)
			}
			if err := a.Unsubscribe(ctx(t), "1"); !errors.Is(err, tms.ErrUnsupported) {
				t.Fatalf("Unsubscribe without the capability: %v, want ErrUnsupported", err)
			}
			return
		}
		s, err := a.Subscribe(ctx(t), sub)
		if err != nil || s.ID == "" || s.URL != sub.URL {
			t.Fatalf("Subscribe = %+v, %v", s, err)
		}
		list, err := a.Subscriptions(ctx(t))
		if err != nil || len(list) != 1 || list[0].ID != s.ID || !list[0].Enabled {
			t.Fatalf("Subscriptions = %+v, %v", list, err)
		}
		if err := a.Unsubscribe(ctx(t), s.ID); err != nil {
			t.Fatal(err)
		}
		if err := a.Unsubscribe(ctx(t), s.ID); !errors.Is(err, tms.ErrNotFound) {
			t.Fatalf("second Unsubscribe: %v, want ErrNotFound", err)
		}
	})

	t.Run("errors_are_classified", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct {
			status int
			want   bus.Class
		}{{429, bus.Transient}, {503, bus.Transient}, {400, bus.Permanent}} {
			a, be := newTMS(t)
			be.FailNext(t, c.status, 1, 7)
			_, err := a.Open(ctx(t), OpenRequest(be.Profile()))
			if err == nil || policy.Classify(err) != c.want {
				t.Fatalf("HTTP %d: %v (class %v), want class %v", c.status, err, policy.Classify(err), c.want)
			}
			if c.status == 429 {
				var ra *bus.RetryAfterError
				if !errors.As(err, &ra) || !ra.Throttle || ra.After != 7*time.Second {
					t.Fatalf("429: %v is not throttled for 7 s", err)
				}
			}
			if be.Transactions(t) != 0 {
				t.Fatalf("HTTP %d opened a transaction", c.status)
			}
		}
	})

	t.Run("expired_token_is_renewed", func(t *testing.T) {
		t.Parallel()
		a, be := newTMS(t)
		be.ExpireToken(t)
		if _, err := a.Open(ctx(t), OpenRequest(be.Profile())); err != nil {
			t.Fatalf("Open with an expired token: %v", err)
		}
		if be.Transactions(t) != 1 {
			t.Fatalf("%d transactions", be.Transactions(t))
		}
	})
}

// hasValues reports whether one section of d holds every value of vs.
func hasValues(d tms.Details, vs ...string) bool {
	for _, sec := range d {
		have := slices.Collect(maps.Values(sec))
		if !slices.ContainsFunc(vs, func(v string) bool { return !slices.Contains(have, v) }) {
			return true
		}
	}
	return false
}
