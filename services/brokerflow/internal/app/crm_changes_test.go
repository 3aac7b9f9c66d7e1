package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	cfg, err := app.ConfigFromEnv([]string{
		"BROKERFLOW_NATS_PORT=-1",
		"BROKERFLOW_DATA_DIR=" + t.TempDir(),
		"BROKERFLOW_OPS_ADDR=127.0.0.1:0",
		"BROKERFLOW_BUS_ACK_WAIT=1s",
		"BROKERFLOW_BUS_RETRY_SCHEDULE=20ms,40ms,80ms,160ms",
		"GATEWAY_ADDR=127.0.0.1:0", "BROKERFLOW_SANDBOX_ADDR=127.0.0.1:0",
		"GATEWAY_FUB_SYSTEM_KEYS=" + sandbox.DefaultFUBSystemKey,
		"CRMSYNC_ACTIVE_STAGES=Active Client",
	}, app.Mode{Sandbox: true})
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Start(context.Background(), cfg, io.Discard, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Stop()
		if err := a.Wait(); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	t.Cleanup(a.Sandbox.Close) // before the shutdown: no delivery outlives the gateway
	nc, err := nats.Connect(a.NATSURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
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
