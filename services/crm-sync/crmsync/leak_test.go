package crmsync_test

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/logging/logtest"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
)

// A CRM search that gets no answer must not carry the person's email and
// phone into the logs, the failure record or the termination reason: the
// search URL holds them, percent-encoded (%40, %2B), where the log redaction
// does not see them.
func TestSyncer_unreachableCRMLeavesNoPersonalDataBehind(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := natstest.Connect(t, s)
	ln, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	logs := &logtest.Buffer{}
	cfg := crmsync.Config{
		IdentityPeppers: testPeppers,
		CRM:             "followupboss",
		FUB:             followupboss.Config{BaseURL: closed, APIKey: "key", Timeout: 5 * time.Second},
		Concurrency:     2,
		ShutdownTimeout: 5 * time.Second,
		Bus:             service.ConsumeConfig{RetrySchedule: []time.Duration{10 * time.Millisecond, 20 * time.Millisecond}},
	}
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: time.Second, ConsumeConfig: cfg.Bus}.Topology())
	syncer, err := crmsync.New(cfg, service.Deps{NATS: nc, Logger: logging.New(logs, logging.Options{Level: slog.LevelDebug})})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, syncer.Run)
	natstest.WaitConsumer(t, js, bus.StreamLeads, "crm-sync")

	// One lead is searched by its email, one (without an email) by its phone.
	const email, phone, phoneOnly = "ada.lovelace@example.com", "+14155550134", "+14155550199"
	pub := bus.NewPublisher(js, "normalizer", nil)
	for _, l := range []struct{ id, email, phone string }{{"ld_both", email, phone}, {"ld_phone", "", phoneOnly}} {
		if _, err := pub.Publish(natstest.Context(t, 10*time.Second), "lead.normalized.idx", "lead.normalized:"+l.id,
			crmtest.Lead(l.id, "Ada", "Lovelace", l.email, l.phone)); err != nil {
			t.Fatal(err)
		}
	}
	natstest.Eventually(t, 30*time.Second, "two failure records and their termination advisories", func() bool {
		return len(natstest.All(t, js, bus.StreamOps, bus.FailureSubject(bus.ServiceCRMSync))) == 2 &&
			len(natstest.All(t, js, bus.StreamOps, bus.AdvisoryTerminated)) == 2
	})
	natstest.WaitSettled(t, js, bus.StreamLeads, "crm-sync")

	var records []*opsv1.Failure
	for _, m := range natstest.All(t, js, bus.StreamOps, bus.FailureSubject(bus.ServiceCRMSync)) {
		var f opsv1.Failure
		if err := proto.Unmarshal(m.Data(), &f); err != nil {
			t.Fatal(err)
		}
		records = append(records, &f)
	}
	// The places looked in hold what they should, so that finding no
	// personal data there means something.
	for _, f := range records {
		if f.GetReasonCode() != "crm.unreachable" || !strings.Contains(f.GetReason(), "connection refused") ||
			!strings.Contains(f.GetReason(), "search people by") {
			t.Fatalf("failure record = %v, want crm.unreachable naming the search and its cause", f)
		}
	}
	if out := logs.String(); !strings.Contains(out, "handler failed, will retry") || !strings.Contains(out, "connection refused") {
		t.Fatalf("the logs show no failed search:\n%s", out)
	}
	for _, a := range natstest.All(t, js, bus.StreamOps, bus.AdvisoryTerminated) {
		if !strings.Contains(string(a.Data()), "crm.unreachable") {
			t.Fatalf("termination advisory without its reason: %s", a.Data())
		}
	}

	places := map[string]string{"logs": logs.String()}
	for _, f := range records {
		places[fmt.Sprintf("failure record of seq %d", f.GetMessage().GetSequence())] = f.GetReason()
	}
	for _, m := range natstest.All(t, js, bus.StreamOps, ">") {
		var b strings.Builder
		b.Write(m.Data())
		for k, vs := range m.Headers() {
			b.WriteString("\n" + k + ": " + strings.Join(vs, ","))
		}
		places["OPS "+m.Subject()] += b.String()
	}
	for _, pii := range []string{email, url.QueryEscape(email), phone, url.QueryEscape(phone), phoneOnly, url.QueryEscape(phoneOnly), "4155550134", "4155550199", "ada.lovelace"} {
		for where, text := range places {
			if strings.Contains(strings.ToLower(text), strings.ToLower(pii)) {
				t.Errorf("%q is in the %s:\n%s", pii, where, text)
			}
		}
	}
}
