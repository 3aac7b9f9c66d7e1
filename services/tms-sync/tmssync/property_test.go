package tmssync_test

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	tmsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
	"github.com/brokerflow/brokerflow/services/tms-sync/tmssync"
)

// hasTheLeadsProperty reports what is wrong with l's property: it should be
// the one e.lead sends.
func hasTheLeadsProperty(l sandbox.DotloopLoopState) error {
	a := l.Detail["Property Address"]
	if a["Street Number"] != "2100" || a["Street Name"] != "Waterview Dr" || a["City"] != "San Francisco" ||
		a["State/Prov"] != "CA" || a["Postal Code"] != "94114" || a["MLS Number"] != "43FSB8" {
		return fmt.Errorf("loop %d has the property %v, want 2100 Waterview Dr, San Francisco, CA 94114 (43FSB8)", l.ID, a)
	}
	return nil
}

// wantOneFilledLoop fails t unless Dotloop holds one loop, with the lead's
// property, whose detail was updated updates times, and nothing failed.
func (e *env) wantOneFilledLoop(t *testing.T, updates int) {
	t.Helper()
	loops := e.dl.Loops()
	if len(loops) != 1 {
		t.Fatalf("%d loops, want 1", len(loops))
	}
	if err := hasTheLeadsProperty(loops[0]); err != nil {
		t.Fatal(err)
	}
	if n := loops[0].DetailUpdates; n != updates {
		t.Fatalf("%d detail updates, want %d", n, updates)
	}
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
}

// announcements counts every publish on tms.transaction.updated from now
// on, as a core NATS subscriber sees them: a publish the stream drops as a
// duplicate counts too.
func (e *env) announcements(t *testing.T) func() int64 {
	t.Helper()
	nc, _ := natstest.Connect(t, e.ns)
	var n atomic.Int64
	if _, err := nc.Subscribe(tmssync.SubjectUpdated, func(*nats.Msg) { n.Add(1) }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() int64 {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		return n.Load()
	}
}

// wantOnePropertyUpdate fails t unless the TMS stream holds one
// tms.transaction.updated, for the loop, saying contact's lead's property
// was set on it, and it was published once (published, after settle); the
// loop is Dotloop's first.
func (e *env) wantOnePropertyUpdate(t *testing.T, contact string, published func() int64) {
	t.Helper()
	u := readAll(t, e.js, bus.StreamTMS, tmssync.SubjectUpdated, func() *tmsv1.TransactionUpdated { return &tmsv1.TransactionUpdated{} })
	if len(u) != 1 {
		t.Fatalf("%d tms.transaction.updated, want 1: %v", len(u), u)
	}
	got, loop := u[0], strconv.FormatInt(e.dl.Loops()[0].ID, 10)
	p := got.GetProperty()
	if got.GetTransactionId() != loop || strings.Join(got.GetChangedFields(), ",") != "property" || got.GetContactId() != contact ||
		got.GetCorrelation().GetLeadId() != "ld_"+contact || p.GetStreetNumber() != "2100" || p.GetStreetName() != "Waterview Dr" ||
		p.GetCity() != "San Francisco" || p.GetPostalCode() != "94114" || p.GetMlsNumber() != "43FSB8" {
		t.Fatalf("updated = %v, want loop %s's property from ld_%s", got, loop, contact)
	}
	if n := published(); n != 1 {
		t.Fatalf("tms.transaction.updated published %d times, want once", n)
	}
}

// openedBeforeTheLead runs tms-sync, counts what it publishes
// (announcements), and moves contact to Active Client before any lead of
// theirs is known: the loop opens without a property.
func openedBeforeTheLead(t *testing.T, contact string) (*env, func() int64) {
	t.Helper()
	e := setup(t, 1, nil)
	published := e.announcements(t)
	e.stage(t, contact, "Active Client")
	e.settle(t)
	return e, published
}

// TestSyncer_stageChangeBeforeTheLeadStillPrefillsTheLoop: the stage change
// handled before the contact's crm.contact.synced (tms-sync catching up, an
// agent moving a contact at once) opens the loop without a property; the
// synced event then sets the lead's property on that loop, once, and
// announces it as one tms.transaction.updated; the loop's closing names the
// lead.
func TestSyncer_stageChangeBeforeTheLeadStillPrefillsTheLoop(t *testing.T) {
	t.Parallel()
	e, published := openedBeforeTheLead(t, "701")
	if loops := e.dl.Loops(); len(loops) != 1 || len(loops[0].Detail["Property Address"]) != 0 {
		t.Fatalf("before the lead: loops %+v, want one without a property", loops)
	}
	if o := e.opened(t); len(o) != 1 || o[0].GetProperty() != nil {
		t.Fatalf("opened %v, want one without a property", o)
	}
	e.lead(t, "701")
	e.settle(t)
	e.wantOneFilledLoop(t, 1)
	e.wantOnePropertyUpdate(t, "701", published)

	id := e.dl.Loops()[0].ID
	if err := e.dl.SetLoopStatus(id, sandbox.DotloopSold, sandbox.DotloopFinancials{Price: 525000, Commission: 15750}); err != nil {
		t.Fatal(err)
	}
	e.webhook(t, id)
	// Settling can pass in the moment between the webhook's publish and
	// the consumer's noticing it: wait for the closing itself.
	natstest.Eventually(t, 30*time.Second, "tms.transaction.closed", func() bool { return len(e.closed(t)) > 0 })
	e.settle(t)
	if c := e.closed(t); len(c) != 1 || c[0].GetCorrelation().GetLeadId() != "ld_701" {
		t.Fatalf("closed %v, want one naming ld_701", c)
	}
}

// TestSyncer_redeliveredSyncedSetsThePropertyOnce: the synced event
// redelivered (its ack lost after the property was set), or announced again
// past the duplicate window, finds the property set and calls nothing; so
// does the stage change announced again.
func TestSyncer_redeliveredSyncedSetsThePropertyOnce(t *testing.T) {
	t.Parallel()
	e, published := openedBeforeTheLead(t, "702")
	e.hooks.SkipNextAcksOf("tms-sync-crm", 1)
	synced := e.leadSynced(t, "702")
	e.settle(t)
	if d := e.delivered(t, "tms-sync-crm"); d < 3 {
		t.Fatalf("%d deliveries, want the synced event's redelivery too", d)
	}
	e.publish(t, "crm.contact.synced", synced) // the same event, past the duplicate window
	e.settle(t)
	e.stage(t, "702", "Active Client")
	e.settle(t)
	e.wantOneFilledLoop(t, 1) // the synced event handled three times
	e.wantOnePropertyUpdate(t, "702", published)
}

// TestSyncer_stageAndLeadTogetherPrefillEveryLoop: the stage change and the
// synced event of each contact are handled at once, in either order, by two
// replicas of two handlers each; every contact ends with one loop with its
// lead's property, set at most once after opening.
func TestSyncer_stageAndLeadTogetherPrefillEveryLoop(t *testing.T) {
	t.Parallel()
	e := setup(t, 2, nil)
	const contacts = 8
	for i := range contacts {
		c := fmt.Sprintf("8%02d", i)
		if i%2 == 0 {
			e.stage(t, c, "Active Client")
			e.lead(t, c)
		} else {
			e.lead(t, c)
			e.stage(t, c, "Active Client")
		}
	}
	e.settle(t)
	natstest.Eventually(t, 30*time.Second, "every contact's loop opened", func() bool { return len(e.opened(t)) == contacts })
	e.settle(t)

	loops := e.dl.Loops()
	if len(loops) != contacts {
		t.Fatalf("%d loops for %d contacts", len(loops), contacts)
	}
	filled := 0
	for _, l := range loops {
		if err := hasTheLeadsProperty(l); err != nil {
			t.Error(err)
		}
		if l.DetailUpdates > 1 {
			t.Errorf("loop %d: %d detail updates, want at most 1", l.ID, l.DetailUpdates)
		}
		filled += l.DetailUpdates
	}
	t.Logf("%d of %d loops opened before their lead was known", filled, contacts)
	if f := e.failures(t); len(f) != 0 {
		t.Fatalf("failures %v", f)
	}
}

// delivered is how many deliveries consumer of CRM made, redeliveries
// included.
func (e *env) delivered(t *testing.T, consumer string) uint64 {
	t.Helper()
	c, err := e.js.Consumer(natstest.Context(t, 5*time.Second), bus.StreamCRM, consumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(natstest.Context(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return info.Delivered.Consumer
}

// TestSkySlope_stageChangeBeforeTheLeadOpensOnRedrive: SkySlope opens no
// file without a property, so a stage change handled before the contact's
// lead is a failure record; redriven once the lead is synced, it opens one
// file with the lead's property.
func TestSkySlope_stageChangeBeforeTheLeadOpensOnRedrive(t *testing.T) {
	t.Parallel()
	e := setupSkySlope(t, nil)
	e.start(t)
	e.stage(t, "703", "Active Client")
	natstest.Eventually(t, 30*time.Second, "a failure record", func() bool { return len(e.failures(t)) == 1 })
	e.settle(t)
	f := e.failures(t)[0]
	if f.GetReasonCode() != "tms.incomplete_transaction" || len(e.ss.Files()) != 0 {
		t.Fatalf("failure %v, %d files; want tms.incomplete_transaction and none", f, len(e.ss.Files()))
	}
	e.lead(t, "703")
	e.settle(t)
	if _, err := bus.RequestRedrive(natstest.Context(t, 10*time.Second), e.pub, bus.ServiceTMSSync, bus.StreamCRM, f.GetMessage().GetSequence(), "test"); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, 30*time.Second, "the redriven stage change opens a file", func() bool { return len(e.ss.Files()) == 1 })
	natstest.WaitSettled(t, e.js, bus.StreamOps, bus.RedriveConsumer(bus.ServiceTMSSync).Durable)
	file := e.ss.Files()[0]
	if file.Property.StreetNumber != "2100" || file.Property.StreetName != "Waterview Dr" || file.Property.PostalCode != "94114" {
		t.Fatalf("file = %+v", file)
	}
	if o := e.opened(t); len(o) != 1 || o[0].GetCorrelation().GetLeadId() != "ld_703" || len(e.failures(t)) != 1 {
		t.Fatalf("opened %v, failures %v", o, e.failures(t))
	}
}

// TestSyncer_crashWhileSettingTheProperty: killed between Update Loop
// Details and the record of it, the synced event's redelivery sets the same
// property again (the PATCH is idempotent), records it and announces it;
// killed between the record and the announcement, the redelivery announces
// the kept event and calls Dotloop no more. Either way nothing sets it
// again after, and tms.transaction.updated is published once.
func TestSyncer_crashWhileSettingTheProperty(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name    string
		point   bus.CrashPoint
		contact string
		updates int
	}{
		{"after_the_call", tmssync.CrashAfterPropertyCall, "704", 2}, // the call, and the redelivery's
		{"after_the_record", tmssync.CrashAfterPropertyRecorded, "705", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e, published := openedBeforeTheLead(t, c.contact)
			e.hooks.CrashAt(c.point, 1)
			e.lead(t, c.contact)
			natstest.Eventually(t, 30*time.Second, "the redelivery", func() bool { return e.delivered(t, "tms-sync-crm") >= 3 })
			e.settle(t)
			e.stage(t, c.contact, "Active Client")
			e.settle(t)
			e.wantOneFilledLoop(t, c.updates)
			e.wantOnePropertyUpdate(t, c.contact, published)
		})
	}
}

// TestSyncer_propertyAnnouncedBeforeANewEpisode: killed after recording a
// property it set and before announcing it, while the contact's episode
// ends and a new one opens before the synced event's redelivery: the new
// episode's stage change announces the ended episode's property first,
// as its record no longer keeps it.
func TestSyncer_propertyAnnouncedBeforeANewEpisode(t *testing.T) {
	t.Parallel()
	e, published := openedBeforeTheLead(t, "706")
	e.hooks.CrashAt(tmssync.CrashAfterPropertyRecorded, 1)
	e.lead(t, "706")
	natstest.Eventually(t, 30*time.Second, "the property set", func() bool { return e.dl.Loops()[0].DetailUpdates == 1 })
	e.stage(t, "706", "Trash")
	// Handled in order: the two stage changes could otherwise run at once.
	natstest.Eventually(t, 30*time.Second, "the episode ended", func() bool {
		kv, err := e.js.KeyValue(natstest.Context(t, 5*time.Second), "idempotency")
		if err != nil {
			return false
		}
		rec, err := kv.Get(natstest.Context(t, 5*time.Second), "tms-sync.episode.followupboss.706")
		return err == nil && strings.Contains(string(rec.Value()), `"state":"ended"`)
	})
	e.stage(t, "706", "Active Client")
	natstest.Eventually(t, 30*time.Second, "a second episode's loop", func() bool { return len(e.dl.Loops()) == 2 })
	e.settle(t)
	e.wantOnePropertyUpdate(t, "706", published) // of the first loop
}
