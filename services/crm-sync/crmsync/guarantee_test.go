package crmsync_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// These tests prove "one contact per person, one activity per lead" where
// the CRM does not deduplicate for Brokerflow: LionDesk never does, and
// Follow Up Boss matches a phone only together with the full name.

var crms = []string{"followupboss", "liondesk"}

// phone is the E.164 phone of test person i.
// eachCRM runs body, in parallel, against a cluster on each CRM.
func eachCRM(t *testing.T, body func(t *testing.T, c *cluster)) {
	t.Helper()
	for _, crm := range crms {
		t.Run(crm, func(t *testing.T) {
			t.Parallel()
			body(t, newCluster(t, crm))
		})
	}
}

func phone(i int) string { return fmt.Sprintf("+1415555%04d", i) }

// Leads for one person arriving together, each with other keys and
// another spelling of the name: email and phone, email only, phone only.
// Each person ends with one contact holding both, or with two contacts
// linked by a note when the email-only and phone-only leads were created
// before the lead that showed they are one person. Never three.
func TestSyncer_samePersonWithDifferentKeysAtOnce(t *testing.T) {
	t.Parallel()
	eachCRM(t, func(t *testing.T, c *cluster) {
		c.start(t, 2)
		var leads []testLead
		for p := range 30 {
			email := fmt.Sprintf("mixed%02d@example.com", p)
			group := []testLead{
				{fmt.Sprintf("ld_mix_%02d_both", p), "Robert", fmt.Sprintf("Smith%02d", p), email, phone(p)},
				{fmt.Sprintf("ld_mix_%02d_email", p), "Bob", fmt.Sprintf("Smith%02d", p), email, ""},
				{fmt.Sprintf("ld_mix_%02d_phone", p), "Rob", fmt.Sprintf("S%02d", p), "", phone(p)},
			}
			r := p % 3 // every order of arrival
			leads = append(leads, append(group[r:], group[:r]...)...)
		}
		c.publish(t, leads)
		c.waitSynced(t, leads)
		c.assertOnePerPerson(t, leads, true)
	})
}

// Phone-only leads whose names differ: Follow Up Boss cannot match them,
// so only Brokerflow's identity records keep one contact per phone.
func TestSyncer_phoneOnlyBurstWithDifferingNames(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "followupboss")
	c.start(t, 2)
	var leads []testLead
	for i := range 200 {
		leads = append(leads, testLead{fmt.Sprintf("ld_ph_%03d", i), "Pat", fmt.Sprintf("Once%03d", i), "", phone(1000 + i)})
	}
	for p := range 20 {
		var group []testLead
		for r, first := range []string{"Robert", "Bob", "Rob", "Bobby", "R."} {
			group = append(group, testLead{fmt.Sprintf("ld_ph_rep_%02d_%d", p, r), first, fmt.Sprintf("Rep%02d", p), "", phone(2000 + p)})
		}
		at := p*10 + 3
		leads = append(leads[:at], append(group, leads[at:]...)...)
	}
	c.publish(t, leads)
	c.waitSynced(t, leads)
	if n := len(c.contacts()); n != 220 {
		t.Errorf("%d contacts for 220 people", n)
	}
	c.assertOnePerPerson(t, leads, false)
}

// A contact made from a phone-only lead gets the email that a later lead
// for the same phone brings.
func TestSyncer_contactDetailsFollowThePerson(t *testing.T) {
	t.Parallel()
	eachCRM(t, func(t *testing.T, c *cluster) {
		c.start(t, 1)
		first := testLead{"ld_call_in", "Dana", "Reyes", "", phone(1)}
		c.publish(t, []testLead{first})
		natstest.WaitCaughtUp(t, c.js, bus.StreamLeads, "crm-sync")
		later := []testLead{first, {"ld_web_form", "Dana", "Reyes", "dana@example.com", phone(1)}}
		c.publish(t, later[1:])
		natstest.WaitCaughtUp(t, c.js, bus.StreamLeads, "crm-sync")
		c.assertOnePerPerson(t, later, false)
	})
}

// Two leads of a known person arrive at once, each with a phone her contact
// lacks. Adding a detail reads the contact and writes it back whole, so two
// additions that overlap would keep only the last one written. Each read of
// the contact is slowed here, so that without the contact's lock both leads
// read it before either writes. The contact ends with both phones.
func TestSyncer_twoNewPhonesAtOnceBothReachTheContact(t *testing.T) {
	t.Parallel()
	eachCRM(t, func(t *testing.T, c *cluster) {
		c.start(t, 1)
		leads := []testLead{{"ld_two_first", "Dana", "Reyes", "dana.two@example.com", ""}}
		c.publish(t, leads)
		natstest.WaitCaughtUp(t, c.js, bus.StreamLeads, "crm-sync")
		id := c.contacts()[0].ID
		slow := sandbox.Fault{Method: http.MethodGet, Latency: 300 * time.Millisecond, Count: 2}
		if c.cfg.CRM == "liondesk" {
			slow.Path = "/contacts/" + id
			c.sb.LionDesk().InjectFault(slow)
		} else {
			slow.Path = "/v1/people/" + id
			c.sb.FUB().InjectFault(slow)
		}
		later := []testLead{
			{"ld_two_a", "Dana", "Reyes", "dana.two@example.com", phone(21)},
			{"ld_two_b", "Dana", "Reyes", "dana.two@example.com", phone(22)},
		}
		c.publish(t, later)
		leads = append(leads, later...)
		c.waitSynced(t, leads)
		c.assertOnePerPerson(t, leads, false)
	})
}

// One lead brings the email of one contact and the phone of another: it
// is recorded on the email's contact, both contacts get a note naming the
// other (once), and no third contact is made.
func TestSyncer_leadJoiningTwoContactsLinksThem(t *testing.T) {
	t.Parallel()
	eachCRM(t, func(t *testing.T, c *cluster) {
		c.start(t, 1)
		leads := []testLead{
			{"ld_by_email", "Ada", "Lovelace", "ada@example.com", ""},
			{"ld_by_phone", "Augusta", "King", "", phone(7)},
		}
		c.publish(t, leads)
		natstest.WaitCaughtUp(t, c.js, bus.StreamLeads, "crm-sync")
		both := []testLead{
			{"ld_joins", "Ada", "King", "ada@example.com", phone(7)},
			{"ld_joins_again", "Ada", "King", "ada@example.com", phone(7)},
		}
		c.publish(t, both)
		natstest.WaitCaughtUp(t, c.js, bus.StreamLeads, "crm-sync")
		contacts := c.contacts()
		if len(contacts) != 2 {
			t.Fatalf("%d contacts, want the 2 linked ones: %+v", len(contacts), contacts)
		}
		for _, ct := range contacts {
			if ct.LinkNotes != 1 {
				t.Errorf("contact %s has %d link notes, want 1", ct.ID, ct.LinkNotes)
			}
			byEmail := len(ct.Emails) > 0 && ct.Emails[0] == "ada@example.com"
			if want := map[bool]int{true: 3, false: 1}[byEmail]; ct.Activities != want {
				t.Errorf("contact %s (email's: %v) has %d activities, want %d", ct.ID, byEmail, ct.Activities, want)
			}
		}
		c.assertOnePerPerson(t, append(leads, both...), true)
	})
}

// A replica killed at the harmful point (the CRM call made, nothing yet
// recorded) and its lead redelivered: the CRM is asked, and the lead is
// not sent again. For a new person and for a known one.
func TestSyncer_crashAfterTheCRMCallRecordsTheLeadOnce(t *testing.T) {
	t.Parallel()
	eachCRM(t, func(t *testing.T, c *cluster) {
		c.hooks.CrashAtOf(bus.CRMSyncLeads.Durable, crmsync.CrashAfterCRMCall, 2)
		c.start(t, 1)
		leads := []testLead{{"ld_killed_new", "Ada", "Lovelace", "ada@example.com", phone(3)}}
		c.publish(t, leads)
		natstest.WaitCaughtUp(t, c.js, bus.StreamLeads, "crm-sync")
		leads = append(leads, testLead{"ld_killed_known", "Ada", "Lovelace", "ada@example.com", phone(3)})
		c.publish(t, leads[1:])
		natstest.WaitCaughtUp(t, c.js, bus.StreamLeads, "crm-sync")
		if n := c.hooks.Armed(bus.CRMSyncLeads.Durable, crmsync.CrashAfterCRMCall); n != 0 {
			t.Fatalf("%d crashes did not happen", n)
		}
		c.assertOnePerPerson(t, leads, false)
		// The killed creation still says it created the contact.
		synced := readAll[*crmv1.ContactSynced](t, c.js, bus.StreamCRM, crmsync.SubjectContactSynced, func() *crmv1.ContactSynced { return &crmv1.ContactSynced{} })
		if len(synced) != 2 || synced[0].GetOutcome() != crmv1.SyncOutcome_SYNC_OUTCOME_CREATED || synced[1].GetOutcome() != crmv1.SyncOutcome_SYNC_OUTCOME_EXISTING {
			t.Fatalf("synced = %v, want created then existing", synced)
		}
	})
}

// A zombie replica: its NATS connection is gone while its HTTP still
// works, in the middle of a lead. JetStream redelivers the lead to the
// other replica; the zombie, fenced out, must not call the CRM.
func TestSyncer_zombieReplicaIsFencedOut(t *testing.T) {
	t.Parallel()
	c := newCluster(t, "liondesk")
	// The zombie's search of the CRM is slow: its connection is cut then.
	c.sb.LionDesk().InjectFault(sandbox.Fault{Method: "GET", Path: "/contacts", Latency: 2 * time.Second})
	cut := c.zombie(t)
	natstest.WaitConsumer(t, c.js, bus.StreamLeads, "crm-sync")
	leads := []testLead{{"ld_zombie", "Zoe", "Marsh", "", phone(9)}}
	c.publish(t, leads)
	natstest.Eventually(t, 10*time.Second, "the lead in the zombie's hands", func() bool {
		cons, err := c.js.Consumer(context.Background(), bus.StreamLeads, bus.CRMSyncLeads.Durable)
		if err != nil {
			return false
		}
		info, err := cons.Info(context.Background())
		return err == nil && info.NumAckPending == 1
	})
	time.Sleep(500 * time.Millisecond) // past its claims, into the slow search
	cut()
	c.replica(t)
	natstest.WaitCaughtUp(t, c.js, bus.StreamLeads, "crm-sync")
	time.Sleep(3 * time.Second) // the zombie's search has answered: it would call now
	c.assertOnePerPerson(t, leads, false)
	if n := len(c.contacts()); n != 1 {
		t.Fatalf("%d contacts", n)
	}
}

// zombie starts a replica whose NATS connection cut closes while its
// process (its handlers and their HTTP calls) goes on.
func (c *cluster) zombie(t *testing.T) (cut func()) {
	t.Helper()
	nc, err := nats.Connect(c.srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	s, err := crmsync.New(c.cfg, service.Deps{NATS: nc, Hooks: c.hooks})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return nc.Close
}
