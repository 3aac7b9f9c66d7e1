package tmssync_test

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/agents"
	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/oauth"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/tmstest"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
	"github.com/brokerflow/brokerflow/services/tms-sync/tmssync"
)

// skyEnv is tms-sync with TMSSYNC_TMS=skyslope against the sandbox's
// SkySlope, connected as `brokerflow connect skyslope` leaves it.
type skyEnv struct {
	*env
	ss  *sandbox.SkySlope
	cfg tmssync.Config
	ns  *natstest.Server

	mu      sync.Mutex
	queries []string // the earliestDate of every sales listing, "" for none
}

func setupSkySlope(t *testing.T, change func(*tmssync.Config)) *skyEnv {
	t.Helper()
	sb, srv, ns, js, bcfg := startParts(t)
	dir, err := agents.New(agents.Agent{ID: "ada", Name: "Ada Agent", Email: "ada.agent@brokerage.example", Default: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg := tmssync.Config{
		TMS: tmssync.TMSSkySlope, SkySlope: tmstest.SkySlopeConfig(srv.URL), CRM: "none", Agents: dir, PollInterval: 50 * time.Millisecond,
		OpeningStages: map[string]string{"Active Client": tms.TypePurchase}, LostStages: []string{"Trash"},
		ReferralField: "Referral:Referral Fee", ReferralSourceField: "Referral:Referral Source",
		Currency: "USD", SoldWait: time.Hour, Concurrency: 2, ShutdownTimeout: 5 * time.Second, Bus: bcfg,
	}
	if change != nil {
		change(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	tmstest.ConnectSkySlope(t, sb.SkySlope(), oauth.NewStore(js, tmssync.OAuthConfig(cfg)))
	e := &skyEnv{env: &env{js: js, pub: bus.NewPublisher(js, "crm-sync", nil), hooks: &bus.TestHooks{}}, ss: sb.SkySlope(), cfg: cfg, ns: ns}
	sb.SkySlope().OnCall(func(c sandbox.Call) {
		if strings.HasSuffix(c.Path, "/api/files/sales") {
			e.mu.Lock()
			e.queries = append(e.queries, c.Query.Get("earliestDate"))
			e.mu.Unlock()
		}
	})
	return e
}

// start runs one replica of tms-sync; stop ends it and waits.
func (e *skyEnv) start(t *testing.T) (stop func()) {
	t.Helper()
	nc, _ := natstest.Connect(t, e.ns)
	s, err := tmssync.New(e.cfg, service.Deps{NATS: nc, Hooks: e.hooks})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	natstest.WaitConsumer(t, e.js, bus.StreamCRM, "tms-sync-crm")
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("tms-sync: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func (e *skyEnv) earliestDates() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.queries...)
}

// TestSkySlope_activeClientOpensOneFile: a contact moved to Active Client,
// twice, opens one Forms file with the buyer's representation and the
// property of the contact's lead.
func TestSkySlope_activeClientOpensOneFile(t *testing.T) {
	t.Parallel()
	e := setupSkySlope(t, nil)
	e.start(t)
	e.lead(t, "101")
	e.settle(t)
	e.stage(t, "101", "Active Client")
	e.settle(t)
	e.stage(t, "101", "Active Client")
	e.settle(t)

	files := e.ss.Files()
	if len(files) != 1 {
		t.Fatalf("%d files, want 1", len(files))
	}
	f := files[0]
	if f.Name != "Grace Hopper" || f.RepresentationType != "Buyer" || f.Property.StreetNumber != "2100" || f.Property.StreetName != "Waterview Dr" ||
		f.Property.City != "San Francisco" || f.Property.State != "CA" || f.Property.PostalCode != "94114" {
		t.Fatalf("file = %+v", f)
	}
	o := e.opened(t)
	if len(o) != 1 || o[0].GetTms() != "skyslope" || o[0].GetTransactionId() != strconv.FormatInt(f.FileID, 10) || o[0].GetCorrelation().GetLeadId() != "ld_101" {
		t.Fatalf("opened = %v", o)
	}
	// A contact change cannot be carried (no participants): nothing fails.
	e.publish(t, "crm.contact.updated", &crmv1.ContactUpdated{ContactId: "101", Crm: "followupboss", Phones: []string{"+1 (212) 555-0100"}})
	e.settle(t)
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
}

// TestSkySlope_crashAfterTheTMSCallOpensOneFile: killed between POST /files
// and the episode record, the redelivery finds the file in GET /files and
// records it.
func TestSkySlope_crashAfterTheTMSCallOpensOneFile(t *testing.T) {
	t.Parallel()
	e := setupSkySlope(t, nil)
	e.start(t)
	e.lead(t, "202")
	e.settle(t)
	e.hooks.CrashAt(tmssync.CrashAfterTMSCall, 1)
	e.stage(t, "202", "Active Client")
	natstest.Eventually(t, 30*time.Second, "the redelivery settles", func() bool { return len(e.opened(t)) == 1 })
	e.settle(t)
	if n := len(e.ss.Files()); n != 1 {
		t.Fatalf("%d files after a crash after the SkySlope call, want 1", n)
	}
	if o := e.opened(t); o[0].GetTransactionId() != strconv.FormatInt(e.ss.Files()[0].FileID, 10) {
		t.Fatalf("opened %v", o)
	}
}

// TestSkySlope_closedSaleBecomesOneClosing: a sale closed in SkySlope with a
// price becomes one tms.transaction.closed, which says the commission is not
// available; after a restart the poller resumes from its cursor and
// announces nothing again.
func TestSkySlope_closedSaleBecomesOneClosing(t *testing.T) {
	t.Parallel()
	e := setupSkySlope(t, nil)
	stop := e.start(t)
	e.lead(t, "303")
	e.settle(t)
	e.stage(t, "303", "Active Client")
	e.settle(t)
	sale, ok := e.ss.SaleOfFile(e.ss.Files()[0].FileID)
	if !ok {
		t.Fatal("the file made no sale")
	}
	if err := e.ss.CloseSale(sale.SaleGUID, sandbox.SkySlopeClosing{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the closing", func() bool { return len(e.closed(t)) == 1 })
	e.settle(t)
	c := e.closed(t)[0]
	if c.GetTms() != "skyslope" || c.GetTransactionId() != strconv.FormatInt(sale.FileID, 10) || c.GetSalePrice().GetAmountMinor() != 52_500_000 ||
		c.GetCloseDate() != "2026-12-01" || c.GetStatus() != "Closed" || c.GetCorrelation().GetContactId() != "303" || c.GetCorrelation().GetLeadId() != "ld_303" ||
		c.GetCommission().GetAgentId() != "ada" || c.GetCommission().GetSide() != "buy" {
		t.Fatalf("closed = %v", c)
	}
	if c.GetCommission().GetGross() != nil || !strings.Contains(c.GetCommission().GetUnavailable(), "gross commission") {
		t.Fatalf("commission = %v; want none, and why", c.GetCommission())
	}

	stop()
	before := len(e.earliestDates())
	e.start(t)
	natstest.Eventually(t, 30*time.Second, "a poll after the restart", func() bool { return len(e.earliestDates()) > before+1 })
	e.settle(t)
	if q := e.earliestDates()[before]; q == "" || q == "0" {
		t.Fatalf("the first poll after a restart read from the start (earliestDate %q): the cursor was lost", q)
	}
	if n := len(e.closed(t)); n != 1 {
		t.Fatalf("%d closings after a restart, want 1", n)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
	// The episode ended with the closing: the next opening stage opens a new file.
	e.stage(t, "303", "Active Client")
	e.settle(t)
	if n := len(e.ss.Files()); n != 2 {
		t.Fatalf("%d files after a closing and a new opening stage, want 2", n)
	}
}

// TestSkySlope_closedWithoutPriceIsRecorded: a sale closed without its
// price is not announced; after TMSSYNC_SOLD_WAIT it is a failure record
// that says what is missing.
func TestSkySlope_closedWithoutPriceIsRecorded(t *testing.T) {
	t.Parallel()
	e := setupSkySlope(t, func(c *tmssync.Config) { c.SoldWait = 100 * time.Millisecond })
	e.start(t)
	sale := e.ss.AddSale(sandbox.SkySlopeProperty{StreetNumber: "1", StreetName: "Elm St", City: "Springfield", State: "IL", PostalCode: "62701"})
	if err := e.ss.CloseSale(sale.SaleGUID, sandbox.SkySlopeClosing{}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "a failure record", func() bool { return len(e.failures(t)) == 1 })
	f := e.failures(t)[0]
	if f.GetReasonCode() != "tms.closing_incomplete" || !strings.Contains(f.GetReason(), "sale price") || strings.Contains(f.GetReason(), "commission") {
		t.Fatalf("failure = %v", f)
	}
	if c := e.closed(t); len(c) != 0 {
		t.Fatalf("closings %v", c)
	}
}

// TestSkySlope_saleNotOpenedByBrokerflowStillCloses: a sale entered in
// SkySlope by a person closes under its GUID, without a contact, a lead or
// an agent (SkySlope's sales name no profile to find one by).
func TestSkySlope_saleNotOpenedByBrokerflowStillCloses(t *testing.T) {
	t.Parallel()
	e := setupSkySlope(t, nil)
	e.start(t)
	sale := e.ss.AddSale(sandbox.SkySlopeProperty{StreetNumber: "1", StreetName: "Elm St", City: "Springfield", State: "IL", PostalCode: "62701"})
	if err := e.ss.CloseSale(sale.SaleGUID, sandbox.SkySlopeClosing{Price: 300000}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the closing", func() bool { return len(e.closed(t)) == 1 })
	c := e.closed(t)[0]
	if c.GetTransactionId() != sale.SaleGUID || c.GetSalePrice().GetAmountMinor() != 30_000_000 || c.GetName() != "1 Elm St, Springfield" ||
		c.GetCorrelation().GetContactId() != "" || c.GetCommission().GetAgentId() != "" {
		t.Fatalf("closed = %v", c)
	}
}

// TestSkySlope_failingPollIsKeptInItsHealth: while SkySlope answers 503,
// every poll of its sales fails and the poller's health record
// (tms-sync.health.skyslope, which the alerter reads) counts the failures
// and keeps the error; the first poll that succeeds again clears them.
func TestSkySlope_failingPollIsKeptInItsHealth(t *testing.T) {
	t.Parallel()
	e := setupSkySlope(t, nil)
	e.ss.InjectFault(sandbox.Fault{Status: 503, Count: 1 << 30, Body: "maintenance"})
	e.start(t)
	record := func() service.PollHealth {
		all, err := service.ReadPollHealth(natstest.Context(t, 5*time.Second), e.js)
		if err != nil {
			t.Fatal(err)
		}
		return all["tms-sync.health.skyslope"]
	}
	natstest.Eventually(t, 30*time.Second, "two failed polls recorded", func() bool { return record().Failures >= 2 })
	if h := record(); h.Service != bus.ServiceTMSSync || h.Polled != "TMS skyslope" || h.Interval != 50*time.Millisecond ||
		!strings.Contains(h.LastError, "HTTP 503") || h.FailingSince.IsZero() {
		t.Fatalf("health while SkySlope is down: %+v", h)
	}
	e.ss.ClearFaults()
	natstest.Eventually(t, 30*time.Second, "the recovery recorded", func() bool { h := record(); return h.Failures == 0 && !h.LastSuccess.IsZero() })
}
