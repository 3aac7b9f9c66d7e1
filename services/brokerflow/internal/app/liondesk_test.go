package app_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// TestSystem_sandboxLionDeskGetsTheLeadOnceAndIsPolled: brokerflow run
// --sandbox with CRMSYNC_CRM=liondesk points crm-sync at the sandbox's
// LionDesk, with its token. A signed IDX lead becomes one contact there, the
// same person's next lead a note on it, and an agent's edit in LionDesk,
// which sends no webhooks, comes back through crm-sync's polling at the
// --sandbox interval.
func TestSystem_sandboxLionDeskGetsTheLeadOnceAndIsPolled(t *testing.T) {
	t.Parallel()
	s := start(t, "CRMSYNC_CRM=liondesk")
	ld := s.Sandbox.LionDesk()

	s.post(t, "msg_liondesk_1", lead)
	s.settle(t)
	s.post(t, "msg_liondesk_2", strings.Replace(lead, "What is my house worth?", "Ready to list next month.", 1))
	s.settle(t)
	contacts, notes := ld.Contacts(), ld.Notes()
	if len(contacts) != 1 || contacts[0].Email != "grace.hopper@example.org" || contacts[0].MobilePhone != "+12125550199" || contacts[0].LastName != "Hopper" {
		t.Fatalf("LionDesk contacts %+v, want Grace Hopper once", contacts)
	}
	if len(notes) != 2 || notes[0].ContactID != contacts[0].ID || notes[1].ContactID != contacts[0].ID || !strings.Contains(notes[1].Content, "Ready to list next month.") {
		t.Fatalf("LionDesk notes %+v, want one per lead on contact %d", notes, contacts[0].ID)
	}
	if n := len(s.Sandbox.FUB().People()); n != 0 {
		t.Fatalf("%d people in Follow Up Boss, which is not the CRM", n)
	}

	// Nothing but the poller calls LionDesk now: the next call it counts is a
	// poll that learns the contact as it is.
	calls := ld.Usage().Counted
	natstest.Eventually(t, 30*time.Second, "a poll of the sandbox's LionDesk", func() bool { return ld.Usage().Counted > calls })
	// An agent renames the contact in LionDesk.
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPatch,
		fmt.Sprintf("%s/liondesk/contacts/%d", s.SandboxURL, contacts[0].ID), strings.NewReader(`{"last_name":"Murray Hopper"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sandbox.DefaultLionDeskToken)
	req.Header.Set("Content-Type", "application/json")
	if code, body := do(t, req); code != http.StatusOK {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	natstest.Eventually(t, 30*time.Second, "crm.contact.updated", func() bool {
		return natstest.Count(t, s.js, bus.StreamCRM, crmsync.SubjectContactUpdated) == 1
	})
	var ev crmv1.ContactUpdated
	if err := proto.Unmarshal(natstest.Last(t, s.js, bus.StreamCRM, crmsync.SubjectContactUpdated).Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetCrm() != "liondesk" || ev.GetContactId() != fmt.Sprint(contacts[0].ID) || ev.GetLastName() != "Murray Hopper" {
		t.Fatalf("update = %v", &ev)
	}
}

// TestSystem_liondeskPollThatKeepsFailingAlertsOnce: in the all-in-one, each
// service on its own NATS user, a LionDesk that refuses crm-sync's token
// makes every poll fail; crm-sync keeps that in its poller's health record
// and the alerter, which may only read it, sends one alert to the sandbox's
// Slack, then the resolve once LionDesk answers again.
func TestSystem_liondeskPollThatKeepsFailingAlertsOnce(t *testing.T) {
	t.Parallel()
	s := start(t, "CRMSYNC_CRM=liondesk", "CRMSYNC_POLL_INTERVAL=100ms", "ALERTER_TICK=100ms", "ALERTER_POLL_FAILING_AFTER=500ms")
	if s.CredsDir == "" {
		t.Fatal("the services do not run on their own users")
	}
	ld := s.Sandbox.LionDesk()
	ld.InjectFault(sandbox.Fault{Method: http.MethodGet, Status: http.StatusUnauthorized, Count: 1 << 30, Body: `{"error":"invalid_token"}`})
	natstest.Eventually(t, 30*time.Second, "the failing poll's alert", func() bool { return len(s.Sandbox.Slack().Messages()) >= 1 })
	msg := s.Sandbox.Slack().Messages()[0]
	if text := msg.Text + string(msg.Blocks); !strings.Contains(msg.Text, "crm-sync: the poll of CRM liondesk has failed") || !strings.Contains(text, "HTTP 401") {
		t.Fatalf("alert = %s", text)
	}
	ld.ClearFaults()
	natstest.Eventually(t, 30*time.Second, "the resolve", func() bool {
		m := s.Sandbox.Slack().Messages()
		return len(m) == 2 && strings.HasPrefix(m[1].Text, "Resolved: crm-sync: the poll of CRM liondesk")
	})
}
