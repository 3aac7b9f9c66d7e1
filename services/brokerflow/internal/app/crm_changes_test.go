package app_test

import (
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// TestSystem_stageChangeInTheCRMBecomesAnEvent drives the whole path: a
// lead makes a person in the sandbox's Follow Up Boss, an agent moves the
// person's stage, Follow Up Boss posts signed webhooks to the real gateway,
// and crm-sync announces the change once.
func TestSystem_stageChangeInTheCRMBecomesAnEvent(t *testing.T) {
	t.Parallel()
	s := start(t,
		"GATEWAY_FUB_SYSTEM_KEYS="+sandbox.DefaultFUBSystemKey,
		"CRMSYNC_ACTIVE_STAGES=Active Client",
	)
	a, js := s.App, s.js
	t.Cleanup(a.Sandbox.Close) // before the shutdown: no delivery outlives the gateway
	// brokerflow run --sandbox registered the gateway for every people event.
	fub := a.Sandbox.FUB()
	delivered := func(n int) {
		t.Helper()
		natstest.Eventually(t, 30*time.Second, fmt.Sprintf("%d webhooks delivered", n), func() bool {
			d := fub.WebhookDeliveries()
			for _, x := range d {
				if x.State != sandbox.FUBDeliveryDelivered {
					return false
				}
			}
			return len(d) == n
		})
		natstest.WaitSettled(t, js, bus.StreamWebhooks, "crm-sync-changes")
	}

	if code, body := postSigned(t, a.WebhookURL+"/webhooks/idx", app.DevIDXSecret, "msg_stage", time.Now(), lead); code != http.StatusAccepted {
		t.Fatalf("lead: %d %s", code, body)
	}
	natstest.Eventually(t, 30*time.Second, "the person in the CRM", func() bool { return len(fub.People()) == 1 })
	delivered(1) // peopleCreated
	person := fub.People()[0]

	if _, err := fub.SetStage(person.ID, "Active Client"); err != nil {
		t.Fatal(err)
	}
	delivered(3)
	msgs := natstest.All(t, js, bus.StreamCRM, "crm.contact.stage_changed")
	if len(msgs) != 1 {
		t.Fatalf("%d stage changes, want 1", len(msgs))
	}
	var sc crmv1.ContactStageChanged
	if err := proto.Unmarshal(msgs[0].Data(), &sc); err != nil {
		t.Fatal(err)
	}
	if sc.GetContactId() != strconv.FormatInt(person.ID, 10) || sc.GetOldStage() != "Lead" || sc.GetNewStage() != "Active Client" ||
		!sc.GetActiveClient() || sc.GetFirstName() != "Grace" || sc.GetWebhook().GetSubject() != "webhook.received.crm.followupboss" {
		t.Fatalf("stage change = %v", &sc)
	}
	if n := len(natstest.All(t, js, bus.StreamCRM, "crm.contact.updated")); n != 0 {
		t.Fatalf("%d updates for a stage change", n)
	}
}
