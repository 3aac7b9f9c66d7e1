package reporting_test

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/pgtest"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	"github.com/brokerflow/brokerflow/services/reporting/reporting"
)

// BenchmarkRebuild is the rebuild of `make bench`'s replay figures alone,
// for profiling (it is not a figure of make bench, and no test runs it):
//
//	REBUILD_PROFILE=cpu.out go test -run - -bench Rebuild -benchtime 1x ./reporting
//	go tool pprof -top reporting.test cpu.out
//
// REBUILD_PROFILE profiles the rebuild only (-cpuprofile would take in the
// publishing too), REBUILD_EVENTS sets the events (100,000) and
// REBUILD_DB=postgres rebuilds into PostgreSQL. It reports the rate and the
// process's CPU seconds, steadier than the rate on a shared machine.
func BenchmarkRebuild(b *testing.B) {
	n, _ := strconv.Atoi(os.Getenv("REBUILD_EVENTS"))
	if n <= 0 {
		n = 100_000
	}
	srv := natstest.Start(b)
	_, js := natstest.Connect(b, srv)
	natstest.Apply(b, js, bus.DefaultTopology())
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	sent := 0
	pub := func(subject, id string, m proto.Message) {
		data, err := proto.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		h := nats.Header{}
		h.Set(bus.HeaderMsgID, id)
		h[bus.HeaderID] = []string{id}
		h[bus.HeaderType] = []string{string(m.ProtoReflect().Descriptor().FullName())}
		msg := &nats.Msg{Subject: subject, Header: h, Data: data}
		if _, err := js.PublishMsgAsync(msg); err != nil {
			<-js.PublishAsyncComplete() // stalled: let the acks catch up
			if _, err := js.PublishMsgAsync(msg); err != nil {
				b.Fatal(err)
			}
		}
		sent++
	}
	// The shape of make bench's events: one lead in twenty rejected, the
	// others synced to one of 20,000 contacts, one in five moving a stage.
	sources := []string{"idx", "zillow", "realtor", "facebook"}
	for i := 0; sent < n; i++ {
		id, source := fmt.Sprintf("ld_%024d", i), sources[i%len(sources)]
		at, contact := t0.Add(time.Duration(i)*10*time.Second), strconv.Itoa(1+i%20000)
		if i%20 == 19 {
			pub("lead.rejected."+source, "lead.rejected:"+id, &leadv1.LeadRejected{LeadId: id, LeadSource: source, Reason: "no email or phone",
				Partial: &leadv1.Lead{ReceivedAt: timestamppb.New(at)}})
			continue
		}
		pub("lead.normalized."+source, "lead.normalized:"+id, &leadv1.Lead{LeadId: id, LeadSource: source, ReceivedAt: timestamppb.New(at),
			Inquiry: &leadv1.Inquiry{Type: leadv1.InquiryType_INQUIRY_TYPE_BUY}})
		pub("crm.contact.synced", "crm.contact.synced:"+id, &crmv1.ContactSynced{LeadId: id, ContactId: contact, Crm: "followupboss",
			LeadSource: source, Outcome: crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING, SyncedAt: timestamppb.New(at.Add(time.Duration(1+i%90) * time.Second))})
		if i%5 == 0 {
			pub("crm.contact.stage_changed", fmt.Sprintf("crm.contact.stage_changed:followupboss:%s:%d", contact, i), &crmv1.ContactStageChanged{
				ContactId: contact, Crm: "followupboss", OldStage: "Lead", NewStage: "Active Client", ActiveClient: true, ChangedAt: timestamppb.New(at.Add(time.Hour))})
		}
	}
	<-js.PublishAsyncComplete()
	dir, dsn := b.TempDir(), ""
	if os.Getenv("REBUILD_DB") == onPostgres {
		dsn = pgtest.New(b)
	}
	ctx := context.Background()
	p, err := reporting.OpenPlace(ctx, dir, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	cpu := func() float64 {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	if f := os.Getenv("REBUILD_PROFILE"); f != "" {
		out, err := os.Create(f)
		if err != nil {
			b.Fatal(err)
		}
		defer out.Close()
		if err := pprof.StartCPUProfile(out); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	b.ResetTimer()
	for i := range b.N {
		c0 := cpu()
		res, err := reporting.Rebuild(ctx, js, p, fmt.Sprintf("r%d", i), reporting.ReplayOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(res.Rate(), "events/s")
		b.ReportMetric(cpu()-c0, "cpu-s")
	}
}
