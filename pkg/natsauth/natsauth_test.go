package natsauth_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natsauth"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
)

// violations collects the server's permission refusals on one connection.
type violations struct {
	mu   sync.Mutex
	seen []string
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
		v.mu.Lock()
		v.seen = append(v.seen, err.Error())
		v.mu.Unlock()
	}
}

func (v *violations) about(subject string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, s := range v.seen {
		if strings.Contains(s, `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// action is one thing a user tries; subject is what the server must refuse.
type action struct {
	name    string
	subject string
	try     func(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error
}

func publish(subject string) action {
	return action{"publish " + subject, subject, func(_ context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		if err := nc.Publish(subject, []byte("forged")); err != nil {
			return err
		}
		return nc.Flush()
	}}
}

func subscribe(subject string) action {
	return action{"subscribe " + subject, subject, func(_ context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		_, err := nc.SubscribeSync(subject)
		if err == nil {
			err = nc.Flush()
		}
		return err
	}}
}

func createStream(name string) action {
	return action{"create stream " + name, "$JS.API.STREAM.CREATE." + name, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{"evil.>"}})
		return err
	}}
}

func deleteStream(name string) action {
	return action{"delete stream " + name, "$JS.API.STREAM.DELETE." + name, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		return js.DeleteStream(ctx, name)
	}}
}

func kvPut(bucket, key string) action {
	return action{"write " + bucket + "/" + key, "$KV." + bucket + "." + key, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		_, err := js.Publish(ctx, "$KV."+bucket+"."+key, []byte(`{"contact_id":"attacker"}`))
		return err
	}}
}

// kvGet reads a key's latest value the way a KV Get does (a direct get
// of the key's last message).
func kvGet(bucket, key string) action {
	subject := "$JS.API.DIRECT.GET.KV_" + bucket + ".$KV." + bucket + "." + key
	return action{"read " + bucket + "/" + key, subject, func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		_, err := nc.RequestWithContext(ctx, subject, nil)
		return err
	}}
}

func changeConsumer(spec bus.ConsumerSpec) action {
	subject := "$JS.API.CONSUMER.CREATE." + spec.Stream + "." + spec.Durable
	return action{"change consumer " + spec.Durable, subject, func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		_, err := nc.RequestWithContext(ctx, subject, []byte(`{"stream_name":"`+spec.Stream+`","config":{"durable_name":"`+spec.Durable+`","ack_policy":"none"}}`))
		return err
	}}
}

func redrive(service string) action { return publish(bus.RedriveSubject(service)) }

func readMessage(stream string) action {
	subject := "$JS.API.DIRECT.GET." + stream
	return action{"read a message of " + stream, subject, func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		_, err := nc.RequestWithContext(ctx, subject, []byte(`{"seq":1}`))
		return err
	}}
}

func streamInfo(stream string) action {
	subject := "$JS.API.STREAM.INFO." + stream
	return action{"read the info of " + stream, subject, func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		_, err := nc.RequestWithContext(ctx, subject, nil)
		return err
	}}
}

func TestPermissions_eachUserIsRefusedWhatIsNotItsOwn(t *testing.T) {
	t.Parallel()
	srv, creds := natstest.StartSecured(t)
	{
		_, js := natstest.ConnectAs(t, srv, creds, bus.UserOperator)
		natstest.Apply(t, js, bus.DefaultTopology())
	}
	tests := []struct {
		user    string
		refused []action
	}{
		{bus.ServiceGateway, []action{
			publish("lead.normalized.idx"), publish("crm.contact.synced"), publish("ops.failure.crm-sync"),
			createStream("EVIL"), deleteStream(bus.StreamLeads), kvPut("identity", "followupboss.email.x"),
			redrive(bus.ServiceCRMSync), subscribe("webhook.received.>"), changeConsumer(bus.NormalizerWebhooks),
			// It watches how full LEADS is, and reads none of its messages.
			readMessage(bus.StreamLeads), streamInfo(bus.StreamCRM),
		}},
		{bus.ServiceNormalizer, []action{
			publish("webhook.received.lead.idx"), publish("crm.contact.synced"), publish("ops.failure.crm-sync"),
			createStream("EVIL"), kvPut("identity", "followupboss.email.x"), kvPut("idempotency", "crm-sync.lead.x"),
			redrive(bus.ServiceNormalizer), changeConsumer(bus.NormalizerWebhooks), subscribe("_INBOX.>"),
		}},
		{bus.ServiceCRMSync, []action{
			publish("webhook.received.lead.idx"), publish("lead.normalized.idx"), publish("ops.failure.normalizer"),
			createStream("EVIL"), deleteStream("KV_identity"), kvPut("idempotency", "normalizer.x"),
			redrive(bus.ServiceCRMSync), changeConsumer(bus.CRMSyncLeads), subscribe("_INBOX_normalizer.>"),
		}},
		{bus.ServiceTMSSync, []action{
			publish("crm.contact.stage_changed"), publish("webhook.received.tms.dotloop"), publish("ops.failure.crm-sync"),
			createStream("EVIL"), kvPut("identity", "followupboss.email.x"), kvPut("idempotency", "crm-sync.lead.x"),
			kvPut("crm_contacts", "followupboss.1"), redrive(bus.ServiceTMSSync), changeConsumer(bus.TMSSyncCRM),
			readMessage(bus.StreamReporting), subscribe("_INBOX.>"),
		}},
		{bus.ServiceLedgerSync, []action{
			publish("tms.transaction.closed"), publish("crm.contact.synced"), publish("ops.failure.tms-sync"),
			createStream("EVIL"), kvPut("identity", "followupboss.email.x"), kvPut("idempotency", "tms-sync.tx.dotloop.1"),
			redrive(bus.ServiceTMSSync), changeConsumer(bus.LedgerSyncClosings), readMessage(bus.StreamLeads),
			readMessage(bus.StreamCRM), subscribe("_INBOX.>"), publish("webhook.received.ledger.other"),
			publish("webhook.received.lead.idx"), kvPut("cursors", "crm-sync.liondesk"), changeConsumer(bus.LedgerSyncPayments),
		}},
		{bus.ServiceReporting, []action{
			publish("lead.normalized.idx"), publish("crm.contact.synced"), publish(bus.SpendSubject("zillow", "2026-03")),
			publish("ops.failure.crm-sync"), publish("tms.transaction.closed"), createStream("EVIL"), deleteStream(bus.StreamLeads),
			kvPut("identity", "followupboss.email.x"), kvPut("idempotency", "reporting.x"), redrive(bus.ServiceReporting),
			changeConsumer(bus.ReportingLeads), publish("$JS.API.CONSUMER.MSG.NEXT.LEADS.crm-sync"), subscribe("_INBOX.>"),
		}},
		// The alerter reads the pollers' health in cursors, and writes none of
		// it; it reads the last message of the event streams' subjects (a
		// silent source, a stuck consumer), and no bucket's records beyond
		// its own and the health: not the OAuth tokens, not the identities.
		{bus.ServiceAlerter, []action{
			kvPut("cursors", "crm-sync.health.liondesk"), kvPut("cursors", "crm-sync.liondesk"), publish("crm.contact.synced"),
			kvGet("oauth_tokens", "quickbooks"), kvGet("identity", "followupboss.email.x"), kvGet("crm_contacts", "followupboss.1"),
		}},
		{bus.UserAnalyst, []action{
			publish("webhook.received.lead.idx"), publish("lead.normalized.idx"), kvPut("identity", "followupboss.email.x"),
			publish(bus.SpendSubject("zillow", "2026-03")),
			createStream("EVIL"), deleteStream(bus.StreamWebhooks), redrive(bus.ServiceCRMSync),
			changeConsumer(bus.CRMSyncLeads), publish("$JS.ACK.LEADS.crm-sync.1.1.1.1.1.0"),
		}},
		{bus.UserOperator, []action{
			publish("webhook.received.lead.idx"), publish("lead.normalized.idx"), publish("crm.contact.synced"),
			kvPut("identity", "followupboss.email.x"), publish(bus.RedriveDoneSubject(bus.ServiceCRMSync)),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			t.Parallel()
			for _, a := range tt.refused {
				t.Run(strings.ReplaceAll(a.name, " ", "_"), func(t *testing.T) {
					var v violations
					nc, js := natstest.ConnectAs(t, srv, creds, tt.user, nats.ErrorHandler(v.handler))
					// A refused request gets no answer; the refusal is the
					// server's error, so the request is given up once it came.
					ctx, cancel := context.WithTimeout(context.Background(), natstest.Scale(10*time.Second))
					defer cancel()
					tried := make(chan struct{})
					go func() { defer close(tried); _ = a.try(ctx, nc, js) }()
					natstest.Eventually(t, 10*time.Second, "the server's refusal of "+a.subject, func() bool { return v.about(a.subject) })
					cancel()
					<-tried
				})
			}
		})
	}
}

// The refusals above must not be the whole story: each user can still do
// its own work. (The end-to-end tests run every service on its own user.)
func TestPermissions_eachUserCanDoItsOwnWork(t *testing.T) {
	t.Parallel()
	srv, creds := natstest.StartSecured(t)
	_, ojs := natstest.ConnectAs(t, srv, creds, bus.UserOperator)
	natstest.Apply(t, ojs, bus.DefaultTopology())
	ctx := natstest.Context(t, 30*time.Second)

	_, gjs := natstest.ConnectAs(t, srv, creds, bus.ServiceGateway)
	if _, err := gjs.Publish(ctx, "webhook.received.lead.idx", []byte("lead")); err != nil {
		t.Fatalf("gateway publishes a webhook: %v", err)
	}
	for _, stream := range []string{bus.StreamWebhooks, bus.StreamLeads} {
		if _, err := gjs.Stream(ctx, stream); err != nil {
			t.Fatalf("gateway reads how full %s is: %v", stream, err)
		}
	}
	_, cjs := natstest.ConnectAs(t, srv, creds, bus.ServiceCRMSync)
	kv, err := cjs.KeyValue(ctx, "identity")
	if err != nil {
		t.Fatalf("crm-sync binds the identity bucket: %v", err)
	}
	if _, err := kv.Create(ctx, "followupboss.email.abc", []byte("claim")); err != nil {
		t.Fatalf("crm-sync claims an identity: %v", err)
	}
	if _, err := kv.Get(ctx, "followupboss.email.abc"); err != nil {
		t.Fatalf("crm-sync reads an identity: %v", err)
	}
	// ledger-sync stores a polled change as a ledger webhook and moves its cursor.
	_, ljs := natstest.ConnectAs(t, srv, creds, bus.ServiceLedgerSync)
	if _, err := ljs.Publish(ctx, "webhook.received.ledger.quickbooks", []byte("change")); err != nil {
		t.Fatalf("ledger-sync stores a polled change: %v", err)
	}
	lkv, err := ljs.KeyValue(ctx, "cursors")
	if err != nil {
		t.Fatalf("ledger-sync binds the cursors bucket: %v", err)
	}
	if _, err := lkv.Put(ctx, "ledger-sync.quickbooks.cdc", []byte("2026-03-01T00:00:00Z")); err != nil {
		t.Fatalf("ledger-sync moves its cursor: %v", err)
	}
	// ... and keeps its poller's health there, which the alerter reads.
	if _, err := lkv.Put(ctx, service.HealthKey("ledger-sync.quickbooks.cdc"), []byte(`{"service":"ledger-sync","consecutive_failures":3}`)); err != nil {
		t.Fatalf("ledger-sync records its poller's health: %v", err)
	}
	_, alertjs := natstest.ConnectAs(t, srv, creds, bus.ServiceAlerter)
	health, err := service.ReadPollHealth(ctx, alertjs)
	if h := health["ledger-sync.health.quickbooks.cdc"]; err != nil || h.Service != "ledger-sync" || h.Failures != 3 {
		t.Fatalf("the alerter reads the pollers' health: %+v, %v", health, err)
	}
	_, ajs := natstest.ConnectAs(t, srv, creds, bus.UserAnalyst)
	oc, err := ajs.OrderedConsumer(ctx, bus.StreamWebhooks, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("analyst replays a stream: %v", err)
	}
	msg, err := oc.Next(jetstream.FetchMaxWait(natstest.Scale(5 * time.Second)))
	if err != nil || string(msg.Data()) != "lead" {
		t.Fatalf("analyst reads the webhook: %v", err)
	}
	if _, err := bus.RequestRedrive(ctx, bus.NewPublisher(ojs, "brokerflow-cli", nil), bus.ServiceCRMSync, bus.StreamLeads, 1, "test"); err != nil {
		t.Fatalf("operator requests a redrive: %v", err)
	}
	if _, err := ojs.Publish(ctx, bus.SpendSubject("zillow", "2026-03"), []byte("spend")); err != nil {
		t.Fatalf("operator sets a source's spend: %v", err)
	}
	// reporting pulls from its own consumer and reads a message by sequence (redrive, catch-up).
	_, rjs := natstest.ConnectAs(t, srv, creds, bus.ServiceReporting)
	rc, err := rjs.Consumer(ctx, bus.StreamReporting, bus.ReportingSpend.Durable)
	if err != nil {
		t.Fatalf("reporting binds its consumer: %v", err)
	}
	if m, err := rc.Next(jetstream.FetchMaxWait(natstest.Scale(5 * time.Second))); err != nil || string(m.Data()) != "spend" {
		t.Fatalf("reporting pulls the spend: %v", err)
	}
	rs, err := rjs.Stream(ctx, bus.StreamReporting)
	if err != nil {
		t.Fatalf("reporting reads its stream's info: %v", err)
	}
	if _, err := rs.GetMsg(ctx, 1); err != nil {
		t.Fatalf("reporting reads a message by sequence: %v", err)
	}
}

func TestEnsure_seedsAreTheOwnersAlone(t *testing.T) {
	t.Parallel()
	dir := t.TempDir() + "/creds"
	if err := natsauth.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	first, err := natsauth.PublicKey(dir, bus.ServiceGateway)
	if err != nil {
		t.Fatal(err)
	}
	if err := natsauth.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	again, err := natsauth.PublicKey(dir, bus.ServiceGateway)
	if err != nil || again != first {
		t.Fatalf("a second Ensure changed the key: %v", err)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("credentials dir mode %v, %v; want 0700", st.Mode().Perm(), err)
	}
	for _, user := range bus.Users() {
		st, err := os.Stat(natsauth.SeedFile(dir, user))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s seed mode %v, %v; want 0600", user, st.Mode().Perm(), err)
		}
	}
}
