package app_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	tmsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

const buyerLead = `{"type":"lead.created","timestamp":"2026-11-26T20:00:00Z","data":{"name":"Grace Hopper","email":"Grace.Hopper@Example.org","phone":"+1 (212) 555-0199","inquiry_type":"buy","message":"Can I see it on Saturday?","property":{"address":"2100 Waterview Dr","city":"San Francisco","state":"CA","postal_code":"94114","mls_number":"43FSB8"}}}`

// activeClient posts buyerLead, signed, and moves its contact to Active
// Client in the sandbox's Follow Up Boss.
func activeClient(t *testing.T, s *system, msgID string) sandbox.FUBPerson {
	t.Helper()
	fub := s.Sandbox.FUB()
	if code, body := postSigned(t, s.WebhookURL+"/webhooks/idx", app.DevIDXSecret, msgID, time.Now(), buyerLead); code != http.StatusAccepted {
		t.Fatalf("lead: %d %s", code, body)
	}
	natstest.Eventually(t, 30*time.Second, "the contact in Follow Up Boss", func() bool { return len(fub.People()) == 1 })
	// The person shows in Follow Up Boss before crm-sync announces it, and
	// tms-sync takes the lead's property from that announcement: an agent
	// moves the contact only after it has arrived.
	natstest.Eventually(t, 30*time.Second, "crm.contact.synced", func() bool {
		return len(natstest.All(t, s.js, bus.StreamCRM, "crm.contact.synced")) == 1
	})
	natstest.WaitSettled(t, s.js, bus.StreamCRM, "tms-sync-crm")
	person := fub.People()[0]
	if _, err := fub.SetStage(person.ID, "Active Client"); err != nil {
		t.Fatal(err)
	}
	return person
}

// theClosing waits for the one tms.transaction.closed and decodes it.
func theClosing(t *testing.T, js jetstream.JetStream) *tmsv1.TransactionClosed {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, "tms.transaction.closed", func() bool {
		return len(natstest.All(t, js, bus.StreamTMS, "tms.transaction.closed")) == 1
	})
	var closed tmsv1.TransactionClosed
	if err := proto.Unmarshal(natstest.All(t, js, bus.StreamTMS, "tms.transaction.closed")[0].Data(), &closed); err != nil {
		t.Fatal(err)
	}
	return &closed
}

// TestSystem_activeClientBecomesALoopThatFollowsAndCloses drives the whole
// path against the sandbox, from a signed lead webhook: the lead becomes a
// contact; the contact moved to Active Client in Follow Up Boss becomes
// exactly one prefilled loop in Dotloop; the client's new phone in Follow Up
// Boss reaches the loop's participant; the loop marked sold with a price
// and a commission becomes tms.transaction.closed carrying them.
func TestSystem_activeClientBecomesALoopThatFollowsAndCloses(t *testing.T) {
	t.Parallel()
	s := start(t, "CRMSYNC_ACTIVE_STAGES=Active Client")
	a, js := s.App, s.js
	t.Cleanup(a.Sandbox.Close) // before the shutdown: no delivery outlives the gateway
	fub, dl := a.Sandbox.FUB(), a.Sandbox.Dotloop()

	person := activeClient(t, s, "msg_tms")
	natstest.Eventually(t, 30*time.Second, "a loop in Dotloop", func() bool { return len(dl.Loops()) == 1 })
	natstest.Eventually(t, 30*time.Second, "tms.transaction.opened", func() bool {
		return len(natstest.All(t, js, bus.StreamTMS, "tms.transaction.opened")) == 1
	})
	natstest.WaitSettled(t, js, bus.StreamCRM, "tms-sync-crm")
	loops := dl.Loops()
	if len(loops) != 1 {
		t.Fatalf("%d loops, want exactly 1", len(loops))
	}
	l := loops[0]
	addr := l.Detail["Property Address"]
	client := l.Participants[0]
	if l.Name != "Grace Hopper" || client.Role != "BUYER" || client.FullName != "Grace Hopper" || client.Email != "grace.hopper@example.org" ||
		client.Phone == "" || addr["Street Number"] != "2100" || addr["Street Name"] != "Waterview Dr" || addr["City"] != "San Francisco" || addr["MLS Number"] != "43FSB8" {
		t.Fatalf("loop = %+v", l)
	}

	newPhone := []sandbox.FUBValue{{Value: "+12125550142"}}
	if _, err := fub.UpdatePerson(person.ID, sandbox.FUBPersonUpdate{Phones: &newPhone}); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the new phone on the loop's participant", func() bool {
		return dl.Loops()[0].Participants[0].Phone == "+12125550142"
	})

	if err := dl.SetLoopStatus(l.ID, sandbox.DotloopSold, sandbox.DotloopFinancials{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"}); err != nil {
		t.Fatal(err)
	}
	closed := theClosing(t, js)
	if closed.GetTransactionId() != strconv.FormatInt(l.ID, 10) || closed.GetSalePrice().GetAmountMinor() != 52_500_000 ||
		closed.GetCommission().GetGross().GetAmountMinor() != 1_575_000 || closed.GetCloseDate() != "2026-12-01" ||
		closed.GetCorrelation().GetContactId() != strconv.FormatInt(person.ID, 10) || closed.GetCorrelation().GetLeadId() == "" {
		t.Fatalf("closed = %v", closed)
	}
	if n := len(dl.Loops()); n != 1 {
		t.Fatalf("%d loops at the end, want 1", n)
	}
}

// TestSystem_skyslopeActiveClientOpensAFileAndItsSaleCloses drives the
// whole path with TMSSYNC_TMS=skyslope against the sandbox: the lead's
// contact moved to Active Client in Follow Up Boss opens exactly one Forms
// file with the lead's property; its sale closed in SkySlope with a price
// is polled and becomes tms.transaction.closed, which says the commission is
// not available.
func TestSystem_skyslopeActiveClientOpensAFileAndItsSaleCloses(t *testing.T) {
	t.Parallel()
	s := start(t, "CRMSYNC_ACTIVE_STAGES=Active Client", "TMSSYNC_TMS=skyslope", "TMSSYNC_POLL_INTERVAL=100ms")
	a, js := s.App, s.js
	t.Cleanup(a.Sandbox.Close)
	ss := a.Sandbox.SkySlope()

	person := activeClient(t, s, "msg_skyslope")
	natstest.Eventually(t, 30*time.Second, "tms.transaction.opened", func() bool {
		return len(natstest.All(t, js, bus.StreamTMS, "tms.transaction.opened")) == 1
	})
	natstest.WaitSettled(t, js, bus.StreamCRM, "tms-sync-crm")
	files := ss.Files()
	if len(files) != 1 || files[0].RepresentationType != "Buyer" || files[0].Property.StreetNumber != "2100" || files[0].Property.PostalCode != "94114" {
		t.Fatalf("files = %+v, want exactly one with the lead's property", files)
	}
	sale, ok := ss.SaleOfFile(files[0].FileID)
	if !ok {
		t.Fatal("no sale for the file")
	}
	if err := ss.CloseSale(sale.SaleGUID, sandbox.SkySlopeClosing{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"}); err != nil {
		t.Fatal(err)
	}
	closed := theClosing(t, js)
	if closed.GetTms() != "skyslope" || closed.GetTransactionId() != strconv.FormatInt(files[0].FileID, 10) || closed.GetSalePrice().GetAmountMinor() != 52_500_000 ||
		closed.GetCommission().GetGross() != nil || closed.GetCommission().GetUnavailable() == "" ||
		closed.GetCorrelation().GetContactId() != strconv.FormatInt(person.ID, 10) || closed.GetCorrelation().GetLeadId() == "" {
		t.Fatalf("closed = %v", closed)
	}
}

// TestSystem_aLostStageWebhookStillOpensTheLoop: the account's stage and
// update webhooks are gone (their registrations deleted), so moving the
// contact to Active Client sends none; the reconcile poll announces the
// move once, and tms-sync opens the one loop.
func TestSystem_aLostStageWebhookStillOpensTheLoop(t *testing.T) {
	t.Parallel()
	s := start(t, "CRMSYNC_ACTIVE_STAGES=Active Client", "CRMSYNC_FUB_RECONCILE_INTERVAL=100ms")
	a, js := s.App, s.js
	t.Cleanup(a.Sandbox.Close)
	fub, dl := a.Sandbox.FUB(), a.Sandbox.Dotloop()
	for _, h := range fub.Webhooks() {
		if h.Event == sandbox.FUBPeopleCreated {
			continue
		}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodDelete, a.SandboxURL+"/fub/v1/webhooks/"+strconv.FormatInt(h.ID, 10), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth(sandbox.DefaultFUBAPIKey, "")
		req.Header.Set("X-System", sandbox.DefaultFUBSystem)
		req.Header.Set("X-System-Key", sandbox.DefaultFUBSystemKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("delete webhook %d: HTTP %d", h.ID, resp.StatusCode)
		}
	}
	if hooks := fub.Webhooks(); len(hooks) != 1 {
		t.Fatalf("webhooks left: %+v, want peopleCreated's only", hooks)
	}

	activeClient(t, s, "msg_lost_stage")
	natstest.Eventually(t, 30*time.Second, "tms.transaction.opened", func() bool {
		return len(natstest.All(t, js, bus.StreamTMS, "tms.transaction.opened")) == 1
	})
	natstest.WaitSettled(t, js, bus.StreamCRM, "tms-sync-crm")
	if n := len(natstest.All(t, js, bus.StreamCRM, "crm.contact.stage_changed")); n != 1 {
		t.Fatalf("%d stage changes, want 1", n)
	}
	if n := len(dl.Loops()); n != 1 {
		t.Fatalf("%d loops, want 1", n)
	}
}
