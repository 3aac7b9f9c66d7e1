package crmsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/logging"
)

// identityBucket maps a person's identity to their CRM contact. Keys are
// hashes of the normalized email and the E.164 phone, so no personal data
// sits in key names.
const identityBucket = "identity"

// identityRecord is the value of an identity key: either the contact, or a
// claim by the lead that is creating the person right now.
type identityRecord struct {
	CRM       string    `json:"crm"`
	ContactID string    `json:"contact_id,omitempty"`
	ClaimedBy string    `json:"claimed_by,omitempty"`
	ClaimedAt time.Time `json:"claimed_at,omitzero"`
}

// identities is the first line of "never two contacts for one person":
// before a lead may create a person, it takes that person's identity key
// with create-if-absent. Every other lead for the same person, on any
// replica, either finds the contact there or waits for the creator.
type identities struct {
	kv  jetstream.KeyValue
	crm string
	// staleAfter is how long a claim holds without becoming a contact;
	// after that the creator is presumed dead and the claim is taken over.
	staleAfter time.Duration
	poll       time.Duration
	now        func() time.Time
}

// identityKey is one key of a person in the bucket.
type identityKey struct {
	kind string // "email" or "phone"
	key  string
}

// identityKeys are the keys of id in the bucket, email first.
func identityKeys(crmName string, id crm.Identity) []identityKey {
	var keys []identityKey
	for _, p := range []struct{ kind, value string }{{"email", id.Email}, {"phone", id.Phone}} {
		if p.value == "" {
			continue
		}
		sum := sha256.Sum256([]byte(p.value))
		keys = append(keys, identityKey{kind: p.kind, key: crmName + "." + p.kind + "." + hex.EncodeToString(sum[:16])})
	}
	return keys
}

// claim is a lead's hold on a person's identity.
type claim struct {
	key string
	rev uint64
}

// resolve returns the person's contact, and the kind of key it was known
// by, when one is known. Otherwise it returns a claim: the lead now owns the
// person's creation. A lead for a person someone else is creating waits (the
// runner keeps its message in progress meanwhile) until the contact is known
// or the claim goes stale.
func (ids *identities) resolve(ctx context.Context, leadID string, id crm.Identity) (known crm.Match, c *claim, err error) {
	keys := identityKeys(ids.crm, id)
	if len(keys) == 0 {
		return crm.Match{}, nil, errors.New("lead has neither email nor phone")
	}
	// A known contact under any of the keys wins.
	for _, k := range keys[1:] {
		if rec, _, err := ids.get(ctx, k.key); err != nil {
			return crm.Match{}, nil, err
		} else if rec != nil && rec.ContactID != "" {
			return crm.Match{ContactID: rec.ContactID, By: k.kind}, nil, nil
		}
	}
	key, kind := keys[0].key, keys[0].kind
	waited := false
	for {
		rec, rev, err := ids.get(ctx, key)
		if err != nil {
			return crm.Match{}, nil, err
		}
		switch {
		case rec == nil:
			rev, err := ids.kv.Create(ctx, key, ids.encode(identityRecord{CRM: ids.crm, ClaimedBy: leadID, ClaimedAt: ids.now()}))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // someone was faster: read what they wrote
			}
			if err != nil {
				return crm.Match{}, nil, fmt.Errorf("claim identity: %w", err)
			}
			return crm.Match{}, &claim{key: key, rev: rev}, nil
		case rec.ContactID != "":
			return crm.Match{ContactID: rec.ContactID, By: kind}, nil, nil
		case rec.ClaimedBy == leadID:
			// This lead claimed before and did not finish (a crash): it
			// owns the creation still, and searches the CRM first.
			return crm.Match{}, &claim{key: key, rev: rev}, nil
		case ids.now().Sub(rec.ClaimedAt) > ids.staleAfter:
			rev, err := ids.kv.Update(ctx, key, ids.encode(identityRecord{CRM: ids.crm, ClaimedBy: leadID, ClaimedAt: ids.now()}), rev)
			if err != nil {
				continue // another lead took it over first, or it resolved
			}
			logging.FromContext(ctx).Warn("took over a stale identity claim", "lead_id", leadID, "stale_claim_by", rec.ClaimedBy)
			return crm.Match{}, &claim{key: key, rev: rev}, nil
		default:
			if !waited {
				logging.FromContext(ctx).Info("person is being created by another lead; waiting", "lead_id", leadID, "creator", rec.ClaimedBy)
				waited = true
			}
			select {
			case <-ctx.Done():
				return crm.Match{}, nil, ctx.Err()
			case <-time.After(ids.poll):
			}
		}
	}
}

// settle records contactID under every key of id, releasing the claim.
func (ids *identities) settle(ctx context.Context, id crm.Identity, contactID string) error {
	for _, k := range identityKeys(ids.crm, id) {
		if _, err := ids.kv.Put(ctx, k.key, ids.encode(identityRecord{CRM: ids.crm, ContactID: contactID})); err != nil {
			return fmt.Errorf("record identity: %w", err)
		}
	}
	return nil
}

// release gives a claim back after a failure, if it is still ours, so the
// next lead for the person does not wait for it to go stale.
func (ids *identities) release(ctx context.Context, c *claim) {
	if c == nil {
		return
	}
	if err := ids.kv.Delete(ctx, c.key, jetstream.LastRevision(c.rev)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		logging.FromContext(ctx).Debug("identity claim not released", "err", err)
	}
}

func (ids *identities) get(ctx context.Context, key string) (*identityRecord, uint64, error) {
	e, err := ids.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read identity: %w", err)
	}
	var rec identityRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		// A deleted key (a released claim) reads as not found. Anything
		// else unreadable is an error, not an absent key: nothing overwrites
		// it, and the lead is retried on the schedule and then recorded as a
		// failure, so that a person never gets a second contact because
		// their record could not be read.
		return nil, 0, fmt.Errorf("decode identity %s: %w", key, err)
	}
	return &rec, e.Revision(), nil
}

func (ids *identities) encode(rec identityRecord) []byte {
	b, _ := json.Marshal(rec) // a struct of strings and a time cannot fail
	return b
}
