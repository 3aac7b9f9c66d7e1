package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natsauth"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/pgtest"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	ledgerv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ledger/v1"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/cli"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/gen"
	"github.com/brokerflow/brokerflow/services/normalizer/normalizer"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// retryDelay is crm-sync's first retry delay in this test: a slow lead
// (its first CRM call answered 500) reaches the CRM no sooner than this
// after its webhook.
const retryDelay = 1500 * time.Millisecond

// startIn runs the all-in-one on dir, so that a second start finds the
// first one's streams.
func startIn(t *testing.T, dir string, extra ...string) *app.App {
	t.Helper()
	environ := append([]string{
		"BROKERFLOW_NATS_PORT=-1", "BROKERFLOW_DATA_DIR=" + dir, "BROKERFLOW_OPS_ADDR=127.0.0.1:0",
		"BROKERFLOW_BUS_ACK_WAIT=5s", "BROKERFLOW_BUS_RETRY_SCHEDULE=" + retryDelay.String() + ",1500ms,1500ms",
		// A 500 leaves the slow lead's creation in doubt; the sandbox shows
		// a new person at once, so crm-sync need not wait for it.
		"CRMSYNC_IDENTITY_VISIBLE_AFTER=100ms",
		"GATEWAY_ADDR=127.0.0.1:0", "BROKERFLOW_SANDBOX_ADDR=127.0.0.1:0", "REPORTING_ADDR=127.0.0.1:0",
		"REPORTING_SWITCH_POLL=50ms", "CRMSYNC_ACTIVE_STAGES=Active Client",
	}, extra...)
	cfg, err := app.ConfigFromEnv(environ, app.Mode{Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Start(context.Background(), cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func get(t *testing.T, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	code, body := do(t, req)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	return body
}

func exports(t *testing.T, a *app.App) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tb := range reporting.Tables {
		out[tb.Name] = get(t, a.ReportingURL+"/api/export/"+tb.Name+".csv")
	}
	return out
}

func reportingSettled(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	for _, c := range []bus.ConsumerSpec{bus.ReportingLeads, bus.ReportingCRM, bus.ReportingTMS, bus.ReportingLedger, bus.ReportingSpend} {
		natstest.WaitCaughtUp(t, js, c.Stream, c.Durable)
	}
}

// TestSystem_aDayOfActivityIsReportedAndRebuiltByReplay drives a synthetic
// day through the running system against the sandbox: signed leads from
// three sources, returning people, rejected leads, slow leads, stage
// changes in the CRM, and the spend set with brokerflow spend set. The
// generator knows what the reports must say, and the API and the dashboard
// (in Chromium) say it. Then the
// reporting database is deleted, brokerflow replay rebuilds it, and every
// table is what it was.
func TestSystem_aDayOfActivityIsReportedAndRebuiltByReplay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sourcesPath := filepath.Join(dir, "sources.yaml")
	if err := os.WriteFile(sourcesPath, []byte(gen.SourcesFile), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(gen.Env(app.DevIDXSecret), "BROKERFLOW_SOURCES_FILE="+sourcesPath)
	a := startIn(t, dir, env...)
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			a.Stop()
			_ = a.Wait()
		}
	})
	js := connect(t, a)
	ctx := natstest.Context(t, 5*time.Minute)
	start := time.Now()
	client := &http.Client{Timeout: 30 * time.Second}
	fub := a.Sandbox.FUB()
	month := time.Now().UTC().Format("2006-01")
	plan := gen.Day(month, strconv.FormatInt(time.Now().UnixNano(), 36))
	truth := plan.Truth()

	synced := func() int { return int(natstest.Count(t, js, bus.StreamCRM, "crm.contact.synced")) }
	for _, l := range plan.Leads {
		if l.Slow {
			// Its first POST /v1/events fails: crm-sync retries after retryDelay.
			natstest.Eventually(t, 30*time.Second, "the leads before it in the CRM", func() bool {
				return countAll(t, js, bus.StreamLeads, "lead.normalized.>") == synced()
			})
			fub.InjectFault(sandbox.Fault{Method: http.MethodPost, Path: "/v1/events", Status: http.StatusInternalServerError, Count: 1})
		}
		before := synced()
		if err := gen.Post(ctx, client, a.WebhookURL, app.DevIDXSecret, l); err != nil {
			t.Fatal(err)
		}
		if l.Slow {
			natstest.Eventually(t, 30*time.Second, "the slow lead in the CRM", func() bool { return synced() == before+1 })
		}
	}
	natstest.WaitSettled(t, js, bus.StreamWebhooks, "normalizer")
	natstest.WaitSettled(t, js, bus.StreamLeads, "crm-sync")

	// Agents move people in the CRM; Follow Up Boss tells the gateway.
	people := map[string]int64{}
	for _, p := range fub.People() {
		people[p.Emails[0].Value] = p.ID
	}
	for stage, who := range map[string][]int{"Active Client": plan.Active, "Nurture": plan.Nurture} {
		for _, i := range who {
			if _, err := fub.SetStage(people[gen.Email(i)], stage); err != nil {
				t.Fatal(err)
			}
		}
	}
	natstest.Eventually(t, 60*time.Second, "every stage change announced", func() bool {
		return natstest.Count(t, js, bus.StreamCRM, "crm.contact.stage_changed") >= uint64(len(plan.Active)+len(plan.Nurture))
	})

	// tms-sync opens a loop in Dotloop for each active client; some are sold,
	// with a price and a commission, as an agent marks them in the sandbox.
	dl := a.Sandbox.Dotloop()
	natstest.Eventually(t, 60*time.Second, "a loop opened for each active client", func() bool {
		return natstest.Count(t, js, bus.StreamTMS, "tms.transaction.opened") == uint64(len(plan.Active))
	})
	loops := map[string]int64{}
	for _, l := range dl.Loops() {
		loops[l.Participants[0].Email] = l.ID
	}
	for _, c := range plan.Closings {
		id, ok := loops[gen.Email(c.Person)]
		if !ok {
			t.Fatalf("no loop for person %d among %v", c.Person, loops)
		}
		if err := dl.SetLoopStatus(id, sandbox.DotloopSold, sandbox.DotloopFinancials{Price: c.Price, Commission: c.Commission}); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 60*time.Second, "every sold loop announced closed", func() bool {
		return natstest.Count(t, js, bus.StreamTMS, "tms.transaction.closed") == uint64(len(plan.Closings))
	})

	// ledger-sync books each closing; the brokerage's net is what it booked,
	// credited like the closing to the contact's first source.
	natstest.Eventually(t, 60*time.Second, "every closing booked in the ledger", func() bool {
		return natstest.Count(t, js, bus.StreamLedger, "ledger.commission.booked") == uint64(len(plan.Closings))
	})
	personOf := map[string]int{}
	for _, c := range plan.Closings {
		personOf[strconv.FormatInt(people[gen.Email(c.Person)], 10)] = c.Person
	}
	for _, b := range natstest.Messages(t, js, bus.StreamLedger, "ledger.commission.booked", func() *ledgerv1.CommissionBooked { return &ledgerv1.CommissionBooked{} }) {
		person, ok := personOf[b.GetCorrelation().GetContactId()]
		if !ok {
			t.Fatalf("a booking of contact %q, who closed nothing", b.GetCorrelation().GetContactId())
		}
		truth[plan.FirstSource(person)].NetMinor += b.GetBrokerageNet().GetAmountMinor()
	}

	// The spend, as the operator sets it.
	spendFile := filepath.Join(dir, "spend.csv")
	if err := os.WriteFile(spendFile, []byte(plan.SpendCSV()), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := cli.Execute(ctx, []string{"spend", "set", "--file", spendFile, "--server", a.NATSURL, "--nkey", natsauth.SeedFile(a.CredsDir, bus.UserOperator)},
		nil, &out, &out); err != nil {
		t.Fatalf("spend set: %v\n%s", err, out.String())
	}
	reportingSettled(t, js)

	// What the API says is what the generator sent.
	var rep reporting.Report
	if err := json.Unmarshal([]byte(get(t, a.ReportingURL+"/api/report?period=month")), &rep); err != nil {
		t.Fatal(err)
	}
	rows := map[string]*reporting.Row{}
	for _, r := range rep.Rows {
		if r.Period != month {
			t.Fatalf("a row in %s, want only %s", r.Period, month)
		}
		rows[r.Source] = r
	}
	speeds := streamSpeeds(t, js)
	for source, want := range truth {
		r := rows[source]
		if r == nil {
			t.Fatalf("no row for %s", source)
		}
		if r.Leads != want.Leads || r.Rejected != want.Rejected || r.Contacts != want.Contacts || r.ActiveClients != want.ActiveClients ||
			r.SpeedToLead.N != want.Synced || deref(r.SpendMinor) != want.SpendMinor || r.Transactions != want.Transactions ||
			r.Closings != want.Closings || r.GrossCommissionMinor != want.GrossMinor {
			t.Errorf("%s: report %+v, generator %+v", source, r, want)
		}
		// Time to close: from the credited lead to the closing, within this run.
		if ttc := r.TimeToCloseDaysP50; (want.Closings > 0) != (ttc != nil) || ttc != nil && (*ttc <= 0 || *ttc > time.Since(start).Hours()/24) {
			t.Errorf("%s: time to close %v days for %d closings", source, deref(ttc), want.Closings)
		}
		// The ledger's net, nothing paid yet, and ROI on the net against the
		// spend.
		if r.BrokerageNetMinor != want.NetMinor || r.PaidMinor != 0 || r.UnpaidMinor != want.GrossMinor {
			t.Errorf("%s: net %d, paid %d, unpaid %d; the ledger booked net %d of gross %d", source, r.BrokerageNetMinor, r.PaidMinor, r.UnpaidMinor, want.NetMinor, want.GrossMinor)
		}
		if r.ROI == nil || *r.ROI != float64(want.NetMinor-want.SpendMinor)/float64(want.SpendMinor) || deref(r.CostPerLeadMinor) != want.SpendMinor/int64(want.Leads) || deref(r.CostPerContactMinor) != want.SpendMinor/int64(want.Contacts) {
			t.Errorf("%s: roi %v, cost per lead %v, per contact %v", source, r.ROI, r.CostPerLeadMinor, r.CostPerContactMinor)
		}
		// Speed to lead: the API's percentiles are those of the events on
		// the bus, and the slow band is where the generator put it.
		s := speeds[source]
		slices.Sort(s)
		if len(s) != want.Synced || *r.SpeedToLead.P50Ms != reporting.Percentile(s, 0.5) || *r.SpeedToLead.P90Ms != reporting.Percentile(s, 0.9) {
			t.Errorf("%s: speed %+v, from the bus %v", source, r.SpeedToLead, s)
		}
		slow := 0
		for _, ms := range s {
			if ms >= retryDelay.Milliseconds() {
				slow++
			}
		}
		if slow < want.Slow {
			t.Errorf("%s: %d leads in the slow band, the generator made %d", source, slow, want.Slow)
		}
		if 10*want.Slow > len(s) && *r.SpeedToLead.P90Ms < retryDelay.Milliseconds() {
			t.Errorf("%s: p90 %d ms with %d of %d leads slower than %s", source, *r.SpeedToLead.P90Ms, want.Slow, len(s), retryDelay)
		}
	}
	// One journey by lead id: a slow website lead, and by contact id.
	slowLead := plan.Leads[slices.IndexFunc(plan.Leads, func(l gen.Lead) bool { return l.Slow })]
	var j reporting.Journey
	if err := json.Unmarshal([]byte(get(t, a.ReportingURL+"/api/journey?lead_id="+normalizer.LeadID("website", slowLead.DeliveryID, 0))), &j); err != nil {
		t.Fatal(err)
	}
	if len(j.Leads) != 1 || j.Leads[0]["speed_to_lead_ms"].(float64) < float64(retryDelay.Milliseconds()) || j.Journey["first_source"] != "website" {
		t.Fatalf("journey of a slow lead: %+v", j)
	}
	returning := strconv.FormatInt(people[gen.Email(0)], 10)
	if err := json.Unmarshal([]byte(get(t, a.ReportingURL+"/api/journey?contact_id="+returning)), &j); err != nil {
		t.Fatal(err)
	}
	if len(j.Leads) != 2 || j.Journey["first_source"] != "website" || j.Journey["last_source"] != "zillow" || j.Journey["stage"] != "Active Client" {
		t.Fatalf("journey of a returning active client: %+v", j.Journey)
	}

	// The dashboard shows the same, in a real browser.
	checkDashboard(t, a.ReportingURL, truth, speeds, &j)

	// The database is deleted; brokerflow replay rebuilds it.
	live := exports(t, a)
	a.Stop()
	if err := a.Wait(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	if err := os.RemoveAll(filepath.Join(dir, "reporting")); err != nil {
		t.Fatal(err)
	}
	b := startIn(t, dir, env...)
	t.Cleanup(func() { b.Stop(); _ = b.Wait() })
	if n := strings.Count(get(t, b.ReportingURL+"/api/export/leads.csv"), "\n"); n != 1 {
		t.Fatalf("the new database holds %d lines of leads before the replay", n)
	}
	out.Reset()
	args := []string{"replay", "--server", b.NATSURL, "--nkey", natsauth.SeedFile(b.CredsDir, bus.UserAnalyst), "--batch", "50"}
	if err := cli.Execute(ctx, args, []string{"BROKERFLOW_DATA_DIR=" + dir}, &out, &out); err != nil {
		t.Fatalf("replay: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "switched to it") {
		t.Fatalf("replay did not switch:\n%s", out.String())
	}
	sameExports(t, live, exports(t, b))
}

func sameExports(t *testing.T, a, b map[string]string) {
	t.Helper()
	for _, tb := range reporting.Tables {
		if a[tb.Name] != b[tb.Name] {
			t.Errorf("table %s differs after the replay:\n--- live\n%s--- replayed\n%s", tb.Name, a[tb.Name], b[tb.Name])
		}
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// streamSpeeds reads each lead's speed to lead from the bus itself: its
// Lead's received_at and its ContactSynced's synced_at, by source.
func streamSpeeds(t *testing.T, js jetstream.JetStream) map[string][]int64 {
	t.Helper()
	received := map[string]time.Time{}
	for _, m := range natstest.All(t, js, bus.StreamLeads, "lead.normalized.>") {
		var l leadv1.Lead
		must(t, proto.Unmarshal(m.Data(), &l))
		received[l.GetLeadId()] = l.GetReceivedAt().AsTime().Truncate(time.Microsecond)
	}
	out := map[string][]int64{}
	for _, m := range natstest.All(t, js, bus.StreamCRM, "crm.contact.synced") {
		var s crmv1.ContactSynced
		must(t, proto.Unmarshal(m.Data(), &s))
		if r, ok := received[s.GetLeadId()]; ok && s.GetContactId() != "" {
			out[s.GetLeadSource()] = append(out[s.GetLeadSource()], max(s.GetSyncedAt().AsTime().Truncate(time.Microsecond).Sub(r).Milliseconds(), 0))
		}
	}
	return out
}

// countAll is how many messages stream holds on the subjects filter matches.
func countAll(t *testing.T, js jetstream.JetStream, stream, filter string) int {
	t.Helper()
	ctx := natstest.Context(t, 10*time.Second)
	st, err := js.Stream(ctx, stream)
	must(t, err)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	must(t, err)
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestMain runs the package's parallel tests four at a time unless
// -parallel says otherwise. Each starts a whole system and spends most of
// its time waiting on it (webhooks, the CRM's pacing, retries: alone, the
// package used half a CPU-second per second), so on a two-core machine the
// default of two at a time left the package the longest in `make test`.
func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		if err := flag.Set("test.parallel", strconv.Itoa(max(4, runtime.GOMAXPROCS(0)))); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(pgtest.Main(m))
}

// With REPORTING_DATABASE_URL the all-in-one keeps the read model in
// PostgreSQL, and brokerflow replay --dsn rebuilds it there as a new
// schema that the running service switches to, with the same tables.
func TestSystem_reportingOnPostgresAndReplayIntoIt(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sourcesPath := filepath.Join(dir, "sources.yaml")
	if err := os.WriteFile(sourcesPath, []byte(gen.SourcesFile), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.New(t)
	a := startIn(t, dir, append(gen.Env(app.DevIDXSecret), "BROKERFLOW_SOURCES_FILE="+sourcesPath, "REPORTING_DATABASE_URL="+dsn)...)
	t.Cleanup(func() { a.Stop(); _ = a.Wait() })
	js := connect(t, a)
	ctx := natstest.Context(t, 2*time.Minute)
	client := &http.Client{Timeout: 30 * time.Second}
	plan := gen.Day(time.Now().UTC().Format("2006-01"), strconv.FormatInt(time.Now().UnixNano(), 36))
	for _, l := range plan.Leads[:6] {
		if err := gen.Post(ctx, client, a.WebhookURL, app.DevIDXSecret, l); err != nil {
			t.Fatal(err)
		}
	}
	natstest.WaitSettled(t, js, bus.StreamWebhooks, "normalizer")
	natstest.WaitSettled(t, js, bus.StreamLeads, "crm-sync")
	reportingSettled(t, js)
	if status := get(t, a.ReportingURL+"/api/status"); !strings.Contains(status, `"database": "schema reporting_`) {
		t.Fatalf("the read model is not in a PostgreSQL schema: %s", status)
	}
	live := exports(t, a)
	if n := strings.Count(live["leads"], "\n"); n != 7 {
		t.Fatalf("%d lines of leads, want a header and 6:\n%s", n, live["leads"])
	}

	var out bytes.Buffer
	args := []string{"replay", "--server", a.NATSURL, "--nkey", natsauth.SeedFile(a.CredsDir, bus.UserAnalyst), "--dsn", dsn}
	if err := cli.Execute(ctx, args, nil, &out, &out); err != nil {
		t.Fatalf("replay: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "switched to it") || !strings.Contains(out.String(), "PostgreSQL database") {
		t.Fatalf("replay did not switch:\n%s", out.String())
	}
	sameExports(t, live, exports(t, a))
}
