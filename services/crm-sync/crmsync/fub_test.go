package crmsync_test

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync/crmtest"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// fubBackend is the sandbox's Follow Up Boss account.
type fubBackend struct{ fub *sandbox.FUB }

func (b fubBackend) Contacts(*testing.T) int { return len(b.fub.People()) }

func (b fubBackend) Activities(*testing.T) int { return len(b.fub.Events()) }

func (b fubBackend) FailNext(_ *testing.T, status, n, retryAfter int) {
	b.fub.InjectFault(sandbox.Fault{Status: status, Count: n, RetryAfter: retryAfter})
}

// startFUB runs a sandbox over real HTTP and returns its Follow Up Boss and
// the adapter configuration pointing at it.
func startFUB(t *testing.T) (*sandbox.FUB, crmsync.FUBConfig) {
	t.Helper()
	sb := sandbox.New(sandbox.Options{})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	return sb.FUB(), crmsync.FUBConfig{
		BaseURL:   srv.URL + "/fub",
		APIKey:    sandbox.DefaultFUBAPIKey,
		System:    sandbox.DefaultFUBSystem,
		SystemKey: sandbox.DefaultFUBSystemKey,
		Timeout:   10 * time.Second,
	}
}

func TestFollowUpBoss_contract(t *testing.T) {
	t.Parallel()
	crmtest.Run(t, func(t *testing.T) (crmsync.CRM, crmtest.Backend) {
		fub, cfg := startFUB(t)
		return crmsync.NewFollowUpBoss(cfg, nil), fubBackend{fub: fub}
	})
}

func TestFollowUpBoss_sendsTheLeadAsAnEvent(t *testing.T) {
	t.Parallel()
	fub, cfg := startFUB(t)
	crm := crmsync.NewFollowUpBoss(cfg, nil)
	l := crmtest.Lead("ld_ev", "Ada", "Lovelace", "ada@example.com", "+14155550134")
	if _, err := crm.Record(t.Context(), l, ""); err != nil {
		t.Fatal(err)
	}
	events := fub.Events()
	if len(events) != 1 {
		t.Fatalf("%d events, want 1", len(events))
	}
	ev := events[0]
	if ev.Type != "Property Inquiry" || ev.Source != "idx" || ev.System != sandbox.DefaultFUBSystem || ev.Message != "Is 12 Main St still available?" {
		t.Fatalf("event = %+v", ev)
	}
	p := fub.People()[0]
	if p.FirstName != "Ada" || p.LastName != "Lovelace" || len(p.Emails) != 1 || p.Emails[0].Value != "ada@example.com" ||
		len(p.Phones) != 1 || p.Phones[0].Value != "+14155550134" {
		t.Fatalf("person = %+v", p)
	}
}

func TestFollowUpBoss_wrongKeyIsPermanent(t *testing.T) {
	t.Parallel()
	_, cfg := startFUB(t)
	cfg.APIKey = "revoked"
	_, _, err := crmsync.NewFollowUpBoss(cfg, nil).Find(t.Context(), crmsync.Identity{Email: "a@example.com"})
	if err == nil {
		t.Fatal("a wrong API key must fail")
	}
}
