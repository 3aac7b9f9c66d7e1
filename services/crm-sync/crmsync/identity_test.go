package crmsync

import (
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/natstest"
)

// On a 3-node cluster with an R3 bucket, where compare-and-swap matters:
// of many leads for one person resolving at once through different
// servers, exactly one may create the person; every other one waits and
// gets the contact the creator recorded.
func TestIdentities_oneCreatorPerPersonOnACluster(t *testing.T) {
	t.Parallel()
	servers := natstest.StartCluster(t, 3)
	ctx := natstest.Context(t, time.Minute)
	kvs := make([]jetstream.KeyValue, len(servers))
	for i, s := range servers {
		nc, err := nats.Connect(s.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if _, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: identityBucket, Replicas: 3, History: 1}); err != nil {
				t.Fatal(err)
			}
		}
		natstest.Eventually(t, 30*time.Second, "the bucket on every server", func() bool {
			kv, err := js.KeyValue(ctx, identityBucket)
			kvs[i] = kv
			return err == nil
		})
	}
	person := crm.Identity{Email: "ada@example.com", Phone: "+14155550134"}
	const leads = 12
	var (
		mu       sync.Mutex
		creators []string
		contacts []string
		wg       sync.WaitGroup
	)
	for i := range leads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids := &identities{kv: kvs[i%len(kvs)], crm: "followupboss", staleAfter: time.Minute, poll: 20 * time.Millisecond, now: time.Now}
			leadID := "ld_" + string(rune('a'+i))
			known, c, err := ids.resolve(ctx, leadID, person)
			if err != nil {
				t.Error(err)
				return
			}
			if c != nil {
				mu.Lock()
				creators = append(creators, leadID)
				mu.Unlock()
				// The creator makes the contact in the CRM, then records it.
				if err := ids.settle(ctx, person, "contact-42"); err != nil {
					t.Error(err)
				}
				return
			}
			mu.Lock()
			contacts = append(contacts, known.ContactID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(creators) != 1 {
		t.Fatalf("%d leads claimed the person's creation (%v), want exactly 1", len(creators), creators)
	}
	if len(contacts) != leads-1 {
		t.Fatalf("%d leads got the contact, want %d", len(contacts), leads-1)
	}
	for _, c := range contacts {
		if c != "contact-42" {
			t.Fatalf("a lead got contact %q, want the creator's", c)
		}
	}
}

func TestIdentities_staleClaimIsTakenOverAndOwnClaimResumed(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx := natstest.Context(t, 30*time.Second)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: identityBucket})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	clock := func() time.Time { return now }
	ids := &identities{kv: kv, crm: "followupboss", staleAfter: time.Minute, poll: time.Millisecond, now: clock}
	person := crm.Identity{Email: "grace@example.org"}
	if _, c, err := ids.resolve(ctx, "ld_crashed", person); err != nil || c == nil {
		t.Fatalf("first claim: %v %v", c, err)
	}
	// The same lead, redelivered after a crash, still owns the creation.
	if _, c, err := ids.resolve(ctx, "ld_crashed", person); err != nil || c == nil {
		t.Fatalf("resumed claim: %v %v", c, err)
	}
	// Past staleAfter another lead takes the claim over.
	now = now.Add(2 * time.Minute)
	if _, c, err := ids.resolve(ctx, "ld_next", person); err != nil || c == nil {
		t.Fatalf("takeover: %v %v", c, err)
	}
}
