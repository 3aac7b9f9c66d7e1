package crmsync_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm/liondesk"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// liondeskCall sends one request to the sandbox's LionDesk, as an agent's
// browser would.
func liondeskCall(t *testing.T, method, url, body string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+sandbox.DefaultLionDeskToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("%s %s: HTTP %d", method, url, resp.StatusCode)
	}
}

func TestSyncer_pollsACRMWithoutWebhooksForChanges(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc, js := natstest.Connect(t, srv)
	sb := sandbox.New(sandbox.Options{})
	hs := httptest.NewServer(sb.Handler())
	t.Cleanup(hs.Close)
	base := hs.URL + "/liondesk"
	cfg := crmsync.Config{
		IdentityPeppers: testPeppers,
		CRM:             "liondesk",
		LionDesk:        liondesk.Config{BaseURL: base, AccessToken: sandbox.DefaultLionDeskToken, Timeout: 10 * time.Second},
		PollInterval:    50 * time.Millisecond,
		Concurrency:     2,
		ShutdownTimeout: 5 * time.Second,
	}
	natstest.Apply(t, js, service.TopologyConfig{Replicas: 1, DuplicateWindow: time.Hour, AckWait: time.Second}.Topology())
	liondeskCall(t, http.MethodPost, base+"/contacts", `{"first_name":"Grace","last_name":"Hopper","email":"grace@example.org"}`)
	id := sb.LionDesk().Contacts()[0].ID

	s, err := crmsync.New(cfg, service.Deps{NATS: nc})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, s.Run)
	// The first poll learns the contact, and announces nothing.
	natstest.Eventually(t, 30*time.Second, "the first poll", func() bool {
		kv, err := js.KeyValue(context.Background(), "cursors")
		if err != nil {
			return false
		}
		_, err = kv.Get(context.Background(), "crm-sync.liondesk")
		return err == nil
	})
	if n := natstest.Count(t, js, bus.StreamCRM, crmsync.SubjectContactUpdated); n != 0 {
		t.Fatalf("%d updates announced for a contact seen the first time", n)
	}
	// An agent renames the contact in LionDesk; a later poll announces it once.
	liondeskCall(t, http.MethodPatch, fmt.Sprintf("%s/contacts/%d", base, id), `{"last_name":"Murray Hopper"}`)
	natstest.Eventually(t, 30*time.Second, "crm.contact.updated", func() bool {
		return natstest.Count(t, js, bus.StreamCRM, crmsync.SubjectContactUpdated) == 1
	})
	var ev crmv1.ContactUpdated
	if err := proto.Unmarshal(natstest.Last(t, js, bus.StreamCRM, crmsync.SubjectContactUpdated).Data, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.GetContactId() != fmt.Sprint(id) || ev.GetCrm() != "liondesk" || ev.GetLastName() != "Murray Hopper" ||
		len(ev.GetChangedFields()) != 1 || ev.GetChangedFields()[0] != crmv1.ContactField_CONTACT_FIELD_NAME {
		t.Fatalf("update = %v", &ev)
	}
	// A save that changes nothing moves updated_at; once a poll has read
	// it, nothing more is announced.
	liondeskCall(t, http.MethodPatch, fmt.Sprintf("%s/contacts/%d", base, id), `{"last_name":"Murray Hopper"}`)
	saved := sb.LionDesk().Contacts()[0].UpdatedAt
	natstest.Eventually(t, 30*time.Second, "a poll past the unchanged save", func() bool {
		kv, err := js.KeyValue(context.Background(), "cursors")
		if err != nil {
			return false
		}
		e, err := kv.Get(context.Background(), "crm-sync.liondesk")
		if err != nil {
			return false
		}
		at, err := time.Parse(time.RFC3339Nano, string(e.Value()))
		return err == nil && !at.Before(saved)
	})
	if n := natstest.Count(t, js, bus.StreamCRM, crmsync.SubjectContactUpdated); n != 1 {
		t.Fatalf("%d updates after an unchanged save, want 1", n)
	}
}
