package reporting_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

// system is reporting on a secured embedded JetStream, each party on its
// own NATS user, as brokerflow run runs them.
type system struct {
	srv   *natstest.Server
	creds string
	db    string
	dir   string
	dsn   string
	place reporting.Place
	r     *reporting.Reporter
	api   string
	// js per user
	js map[string]jetstream.JetStream
}

func startSystem(t *testing.T, db string) *system {
	t.Helper()
	srv, creds := natstest.StartSecured(t)
	s := &system{srv: srv, creds: creds, db: db, js: map[string]jetstream.JetStream{}}
	s.dir, s.dsn = newPlace(t, db)
	s.place = openPlace(t, s.dir, s.dsn)
	for _, u := range []string{bus.UserOperator, bus.UserAnalyst, bus.ServiceNormalizer, bus.ServiceCRMSync, bus.ServiceTMSSync} {
		_, s.js[u] = natstest.ConnectAs(t, srv, creds, u)
	}
	topo := bus.DefaultTopology()
	topo.AckWait = time.Second
	natstest.Apply(t, s.js[bus.UserOperator], topo)
	s.startReporting(t, 20*time.Millisecond)
	return s
}

// startReporting starts a replica of reporting that looks for a rebuilt
// database every poll.
func (s *system) startReporting(t *testing.T, poll time.Duration) {
	t.Helper()
	nc, _ := natstest.ConnectAs(t, s.srv, s.creds, bus.ServiceReporting)
	cfg := reporting.Config{
		DataDir: s.dir, DatabaseURL: s.dsn, Attribution: "first", SwitchPoll: poll, Concurrency: 4,
		ShutdownTimeout: 5 * time.Second, Bus: service.ConsumeConfig{RetrySchedule: []time.Duration{20 * time.Millisecond}},
	}
	r, err := reporting.New(cfg, service.Deps{NATS: nc, Registerer: service.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, r.Run)
	hs := httptest.NewServer(r.Handler())
	t.Cleanup(hs.Close)
	s.r, s.api = r, hs.URL
}

// publish sends events as the service that publishes each in production.
func (s *system) publish(t *testing.T, events []published) {
	t.Helper()
	for _, e := range events {
		user := map[string]string{"LEADS": bus.ServiceNormalizer, "CRM": bus.ServiceCRMSync, "TMS": bus.ServiceTMSSync, "REPORTING": bus.UserOperator}[streamOf(e.subject)]
		publishAll(t, s.js[user], []published{e})
	}
}

// settled waits until reporting has taken every event.
func (s *system) settled(t *testing.T) {
	t.Helper()
	for _, c := range []bus.ConsumerSpec{bus.ReportingLeads, bus.ReportingCRM, bus.ReportingTMS, bus.ReportingLedger, bus.ReportingSpend} {
		natstest.WaitCaughtUp(t, s.js[bus.UserOperator], c.Stream, c.Durable)
	}
}

func (s *system) get(t *testing.T, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s.api+path, http.NoBody)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// exports is every table through the CSV export.
func (s *system) exports(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tb := range reporting.Tables {
		code, body := s.get(t, "/api/export/"+tb.Name+".csv")
		if code != http.StatusOK {
			t.Fatalf("export %s: %d %s", tb.Name, code, body)
		}
		out[tb.Name] = body
	}
	return out
}

func (s *system) replay(t *testing.T, o reporting.ReplayOptions) reporting.ReplayResult {
	t.Helper()
	ctx := natstest.Context(t, time.Minute)
	res, switched, err := reporting.Replay(ctx, s.js[bus.UserAnalyst], s.place, o, false)
	if err != nil {
		t.Fatal(err)
	}
	if !switched || !reporting.WaitLive(ctx, s.place, res.Name, natstest.Scale(30*time.Second)) {
		t.Fatalf("the service did not switch to %s", res.Name)
	}
	return res
}

func TestService_projectsAnswersAndAReplayRebuildsTheSameTables(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		s := startSystem(t, db)
		s.publish(t, scenario())
		// A stage change announced again after the duplicate window: a second
		// copy in the stream, with the same event id (ce-id).
		last := natstest.Last(t, s.js[bus.UserOperator], bus.StreamCRM, "crm.contact.stage_changed")
		again := &nats.Msg{Subject: last.Subject, Data: last.Data, Header: nats.Header{}}
		for k, v := range last.Header {
			again.Header[k] = v
		}
		again.Header.Set(bus.HeaderMsgID, last.Header.Get(bus.HeaderMsgID)+":after-the-window")
		if _, err := s.js[bus.ServiceCRMSync].PublishMsg(natstest.Context(t, 10*time.Second), again); err != nil {
			t.Fatal(err)
		}
		s.settled(t)

		code, body := s.get(t, "/api/report?period=month&from=2026-03-01&to=2026-04-01")
		var rep reporting.Report
		if err := json.Unmarshal([]byte(body), &rep); code != http.StatusOK || err != nil {
			t.Fatalf("report: %d %v %s", code, err, body)
		}
		if len(rep.Rows) != 2 || rep.Rows[1].Source != "zillow" || rep.Rows[1].Contacts != 1 || rep.Rows[1].Rejected != 1 || *rep.Rows[1].SpendMinor != 60000 {
			t.Fatalf("report rows: %s", body)
		}
		if code, body := s.get(t, "/api/journey?lead_id=ld_2"); code != http.StatusOK || !strings.Contains(body, `"contact_id": "101"`) || !strings.Contains(body, `"first_source": "zillow"`) {
			t.Fatalf("journey by lead: %d %s", code, body)
		}
		if code, body := s.get(t, "/api/journey?contact_id=102"); code != http.StatusOK || !strings.Contains(body, `"stage": "Nurture"`) {
			t.Fatalf("journey by contact: %d %s", code, body)
		}
		if code, _ := s.get(t, "/api/journey?lead_id=ld_unknown"); code != http.StatusNotFound {
			t.Fatalf("unknown journey: %d", code)
		}
		live := s.exports(t)
		before := s.r.Database()

		// The database is deleted (SQLite: its file; PostgreSQL's schema is
		// left, as the service still reads it); the rebuild makes the same
		// tables.
		if db == onSQLite {
			if err := os.Remove(filepath.Join(s.dir, before)); err != nil {
				t.Fatal(err)
			}
		}
		res := s.replay(t, reporting.ReplayOptions{BatchSize: 3})
		if res.Read != len(scenario())+1 || res.Applied != len(scenario()) || s.r.Database() != res.Name {
			t.Fatalf("replay read %d and applied %d of %d events; database %s, rebuilt %s", res.Read, res.Applied, len(scenario()), s.r.Database(), res.Name)
		}
		sameTables(t, "live and replayed", live, s.exports(t))
		// Replaying twice gives identical tables.
		s.replay(t, reporting.ReplayOptions{})
		sameTables(t, "replayed twice", live, s.exports(t))

		// The live projection goes on in the rebuilt database.
		s.publish(t, []published{lead("ld_4", "idx", 4*time.Hour)})
		s.settled(t)
		if code, body := s.get(t, "/api/journey?lead_id=ld_4"); code != http.StatusOK {
			t.Fatalf("a lead after the switch: %d %s", code, body)
		}
	})
}

// What the live projection applied while a rebuild was finishing is caught
// up at the switch: the rebuild ends at the streams' ends as it saw them,
// the service resumes the rebuilt database from its last sequence per
// stream, and so holds what the old one held.
func TestService_switchCatchesUpWhatTheLiveProjectionAppliedMeanwhile(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		s := startSystem(t, db)
		events := scenario()
		s.publish(t, events[:6])
		s.settled(t)
		ctx := natstest.Context(t, time.Minute)
		if _, err := reporting.Rebuild(ctx, s.js[bus.UserAnalyst], s.place, "rebuilt", reporting.ReplayOptions{}); err != nil {
			t.Fatal(err)
		}
		// Meanwhile the live projection takes the rest into the old database.
		s.publish(t, events[6:])
		s.settled(t)
		live := s.exports(t)

		if err := reporting.SwitchTo(ctx, s.place, "rebuilt"); err != nil {
			t.Fatal(err)
		}
		if !reporting.WaitLive(ctx, s.place, "rebuilt", natstest.Scale(30*time.Second)) {
			t.Fatal("no switch")
		}
		sameTables(t, "after the switch", live, s.exports(t))
	})
}

// A replay from a time or a sequence, or up to a time, is a partial read
// model: it is written beside the live one, never switched to.
func TestReplay_windowsArePartialAndNotSwitchedTo(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		s := startSystem(t, db)
		s.publish(t, scenario())
		s.settled(t)
		ctx := natstest.Context(t, time.Minute)
		live := s.r.Database()
		for name, o := range map[string]reporting.ReplayOptions{
			"from sequence 3 of every stream": {FromSeq: map[string]uint64{"": 3}},
			"from the LEADS sequence 4":       {FromSeq: map[string]uint64{bus.StreamLeads: 4}},
			"up to now":                       {Until: time.Now()},
			"from an hour ahead":              {FromTime: time.Now().Add(time.Hour), Idle: 200 * time.Millisecond},
		} {
			res, switched, err := reporting.Replay(ctx, s.js[bus.UserAnalyst], s.place, o, false)
			if err != nil || switched {
				t.Fatalf("%s: switched %v, %v", name, switched, err)
			}
			want := map[string]int{
				// The first two of each of LEADS, CRM, TMS and REPORTING are skipped.
				"from sequence 3 of every stream": len(scenario()) - 8, "from the LEADS sequence 4": len(scenario()) - 3,
				"up to now": len(scenario()), "from an hour ahead": 0,
			}[name]
			if res.Read != want {
				t.Errorf("%s: read %d events, want %d", name, res.Read, want)
			}
		}
		if s.r.Database() != live {
			t.Fatal("a partial replay was switched to")
		}
	})
}

// An undecodable event is a failure record live and is left out of a
// replay, so the two agree.
func TestService_undecodableEventIsAFailureAndLeftOutOfAReplay(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		s := startSystem(t, db)
		s.publish(t, scenario()[:3])
		pub := bus.NewPublisher(s.js[bus.ServiceNormalizer], "test", nil)
		ctx := natstest.Context(t, 30*time.Second)
		bad := &leadv1.Lead{LeadId: "ld_bad", ReceivedAt: timestamppb.Now()}
		if _, err := pub.Publish(ctx, "lead.normalized.idx", "lead.normalized:ld_bad", bad); err != nil {
			t.Fatal(err)
		}
		// The same subject with a body that is not a Lead.
		if _, err := s.js[bus.ServiceNormalizer].Publish(ctx, "lead.normalized.idx", []byte{0xff, 0xff, 0xff}); err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, 30*time.Second, "one failure record", func() bool {
			return natstest.Count(t, s.js[bus.UserOperator], bus.StreamOps, bus.FailureSubject(bus.ServiceReporting)) == 1
		})
		s.settled(t)
		live := s.exports(t)
		res := s.replay(t, reporting.ReplayOptions{})
		if res.Undecodable != 1 {
			t.Fatalf("replay: %d undecodable", res.Undecodable)
		}
		sameTables(t, "live and replayed", live, s.exports(t))
	})
}

// Several replicas on one PostgreSQL database each switch to a rebuilt
// schema on their own poll; the first to switch drops the old one, and the
// others catch up from the streams, not from it. Afterwards the read model
// is what a fresh rebuild makes.
func TestService_replicasOnPostgresEachSwitchToTheRebuild(t *testing.T) {
	t.Parallel()
	s := startSystem(t, onPostgres)
	first := s.r
	// A second replica, on the same consumers and database, that looks for
	// a rebuild later than the first: the first has dropped the old schema
	// by then.
	s.startReporting(t, time.Second)
	second := s.r
	events := scenario()
	s.publish(t, events[:8])
	s.settled(t)

	ctx := natstest.Context(t, time.Minute)
	res, switched, err := reporting.Replay(ctx, s.js[bus.UserAnalyst], s.place, reporting.ReplayOptions{}, false)
	if err != nil || !switched {
		t.Fatalf("replay: switched %v, %v", switched, err)
	}
	natstest.Eventually(t, 30*time.Second, "both replicas on the rebuilt schema", func() bool {
		return first.Database() == res.Name && second.Database() == res.Name
	})
	s.publish(t, events[8:])
	s.settled(t)

	if _, err := reporting.Rebuild(ctx, s.js[bus.UserAnalyst], s.place, "check", reporting.ReplayOptions{}); err != nil {
		t.Fatal(err)
	}
	check, err := s.place.Open(ctx, "check")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = check.Close() })
	sameTables(t, "two replicas and a fresh rebuild", dump(t, check), s.exports(t))
}
