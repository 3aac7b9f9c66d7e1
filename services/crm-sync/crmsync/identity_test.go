package crmsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
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
			ids := &identities{kv: kvs[i%len(kvs)], keyer: testKeyer, staleAfter: time.Minute, poll: 20 * time.Millisecond, now: time.Now}
			leadID := "ld_" + string(rune('a'+i))
			f := fence{lead: leadID, sequence: uint64(i + 1), delivery: 1}
			held, err := ids.acquire(ctx, f, person)
			if err != nil {
				t.Error(err)
				return
			}
			if held[0].claimed() && held[1].claimed() {
				mu.Lock()
				creators = append(creators, leadID)
				mu.Unlock()
				// The creator makes the contact in the CRM, then records it.
				if err := ids.stillHeld(ctx, f, held); err != nil {
					t.Error(err)
				}
				if err := ids.settle(ctx, f, held, func(heldKey) string { return "contact-42" }); err != nil {
					t.Error(err)
				}
				return
			}
			if held[0].claimed() || held[1].claimed() {
				t.Errorf("lead %s holds one key of the person and not the other: %+v", leadID, held)
				return
			}
			mu.Lock()
			contacts = append(contacts, held[0].contactID, held[1].contactID)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(creators) != 1 {
		t.Fatalf("%d leads claimed the person's creation (%v), want exactly 1", len(creators), creators)
	}
	if len(contacts) != 2*(leads-1) {
		t.Fatalf("%d keys resolved to a contact, want %d", len(contacts), 2*(leads-1))
	}
	for _, c := range contacts {
		if c != "contact-42" {
			t.Fatalf("a lead got contact %q, want the creator's", c)
		}
	}
}

var testKeyer = keyer{crm: "followupboss", pepper: []byte("test-pepper-0123456789abcdef")}

func TestIdentities_claimsAreFencedByDelivery(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx := natstest.Context(t, 30*time.Second)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: identityBucket})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ids := &identities{kv: kv, keyer: testKeyer, staleAfter: time.Minute, poll: time.Millisecond, now: func() time.Time { return now }}
	person := crm.Identity{Email: "grace@example.org", Phone: "+14155550199"}
	first := fence{lead: "ld_crashed", sequence: 7, delivery: 1}
	held1, err := ids.acquire(ctx, first, person)
	if err != nil || !held1[0].claimed() || !held1[1].claimed() {
		t.Fatalf("first claim: %+v %v", held1, err)
	}
	// The same delivery resumes its claim.
	if again, err := ids.acquire(ctx, first, person); err != nil || again[0].rev != held1[0].rev {
		t.Fatalf("same delivery: %+v %v", again, err)
	}
	// A redelivery of the lead supersedes the first delivery at once; the
	// first one, if it still runs, is fenced out before its CRM call.
	second := fence{lead: "ld_crashed", sequence: 7, delivery: 2}
	held2, err := ids.acquire(ctx, second, person)
	if err != nil || !held2[0].claimed() {
		t.Fatalf("redelivery: %+v %v", held2, err)
	}
	if err := ids.stillHeld(ctx, first, held1); err == nil {
		t.Fatal("the superseded delivery still holds its claim")
	}
	if err := ids.stillHeld(ctx, second, held2); err != nil {
		t.Fatalf("the redelivery lost its claim: %v", err)
	}
	// Another lead waits while the claim is fresh...
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := ids.acquire(short, fence{lead: "ld_next", sequence: 9, delivery: 1}, person); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("another lead did not wait for a fresh claim: %v", err)
	}
	// ...and takes it over once stale, fencing the old holder out.
	now = now.Add(2 * time.Minute)
	next := fence{lead: "ld_next", sequence: 9, delivery: 1}
	held3, err := ids.acquire(ctx, next, person)
	if err != nil || !held3[0].claimed() {
		t.Fatalf("takeover: %+v %v", held3, err)
	}
	if err := ids.stillHeld(ctx, second, held2); err == nil {
		t.Fatal("the stale holder still holds its claim")
	}
	// The stale holder's settle leaves the keys to their new holder.
	if err := ids.settle(ctx, second, held2, func(heldKey) string { return "contact-stale" }); err != nil {
		t.Fatal(err)
	}
	if err := ids.settle(ctx, next, held3, func(heldKey) string { return "contact-1" }); err != nil {
		t.Fatal(err)
	}
	got, err := ids.acquire(ctx, fence{lead: "ld_later", sequence: 11, delivery: 1}, person)
	if err != nil || got[0].contactID != "contact-1" || got[1].contactID != "contact-1" {
		t.Fatalf("after settling: %+v %v", got, err)
	}
}

// Keys written unsalted (before the pepper) or under a previous pepper
// are still read, and rewritten under the current pepper.
func TestIdentities_olderKeysAreReadAndRewritten(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := natstest.Connect(t, s)
	ctx := natstest.Context(t, 30*time.Second)
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: identityBucket})
	if err != nil {
		t.Fatal(err)
	}
	old := keyer{crm: "followupboss", pepper: []byte("old-pepper-0123456789abcdef")}
	k := keyer{crm: "followupboss", pepper: []byte("new-pepper-0123456789abcdef"), previous: [][]byte{old.pepper}}
	ids := &identities{kv: kv, keyer: k, staleAfter: time.Minute, poll: time.Millisecond, now: time.Now}
	sum := sha256.Sum256([]byte("ada@example.com"))
	unsalted := "followupboss.email." + hex.EncodeToString(sum[:16])
	if _, err := kv.Put(ctx, unsalted, ids.encode(identityRecord{CRM: "followupboss", ContactID: "c-unsalted"})); err != nil {
		t.Fatal(err)
	}
	peppered := old.keys(crm.Identity{Phone: "+14155550134"})[0].key
	if _, err := kv.Put(ctx, peppered, ids.encode(identityRecord{CRM: "followupboss", ContactID: "c-old-pepper"})); err != nil {
		t.Fatal(err)
	}
	held, err := ids.acquire(ctx, fence{lead: "ld_1", sequence: 1, delivery: 1}, crm.Identity{Email: "ada@example.com", Phone: "+14155550134"})
	if err != nil || held[0].contactID != "c-unsalted" || held[1].contactID != "c-old-pepper" {
		t.Fatalf("held %+v, %v", held, err)
	}
	for _, ik := range k.keys(crm.Identity{Email: "ada@example.com", Phone: "+14155550134"}) {
		if strings.Contains(ik.key, hex.EncodeToString(sum[:16])) || ik.key == peppered {
			t.Fatalf("current key %s is an older key", ik.key)
		}
		if _, err := kv.Get(ctx, ik.key); err != nil {
			t.Fatalf("%s not rewritten under the current pepper: %v", ik.kind, err)
		}
	}
}
