package crmsync

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/logging"
)

// identityBucket maps a person's identity keys (an email, a phone) to their
// CRM contact. Key names are keyed hashes of the normalized email and the
// E.164 phone (see keyer), so no personal data sits in them.
const identityBucket = "identity"

// identityRecord is the value of an identity key: either the contact that
// holds the email or phone, or a claim by the delivery of a lead that is
// finding or creating that contact right now.
type identityRecord struct {
	CRM       string `json:"crm"`
	ContactID string `json:"contact_id,omitempty"`
	ClaimedBy string `json:"claimed_by,omitempty"`
	// Fence is the claiming delivery: "<stream sequence>.<delivery count>".
	// The holder re-reads it right before the CRM call; a delivery that
	// finds another fence there has been superseded and calls nothing.
	Fence     string    `json:"fence,omitempty"`
	ClaimedAt time.Time `json:"claimed_at,omitzero"`
}

// fence identifies one delivery of one lead.
type fence struct {
	lead     string
	sequence uint64
	delivery int
}

func fenceOf(leadID string, m *bus.Message) fence {
	return fence{lead: leadID, sequence: m.Sequence, delivery: m.Attempt}
}

func (f fence) String() string {
	return strconv.FormatUint(f.sequence, 10) + "." + strconv.Itoa(f.delivery)
}

// keyer names a person's keys: an HMAC-SHA256 of the value under a secret
// pepper, so that the bucket's key names cannot be reversed by hashing
// every phone number. Keys made with a previous pepper, and the unsalted
// SHA-256 keys of earlier versions, are still read (and rewritten under
// the current pepper when found); see docs/crm.md for the rotation.
type keyer struct {
	crm      string
	pepper   []byte
	previous [][]byte
}

// identityKey is one key of a person in the bucket.
type identityKey struct {
	kind  string // "email" or "phone"
	value string
	key   string
}

// keys are the keys of id under the current pepper, in the one order in
// which every lead claims them: email, then phone. A fixed order means two
// leads never wait for each other's keys in a cycle.
func (k keyer) keys(id crm.Identity) []identityKey {
	var keys []identityKey
	for _, p := range []struct{ kind, value string }{{"email", id.Email}, {"phone", id.Phone}} {
		if p.value == "" {
			continue
		}
		keys = append(keys, identityKey{kind: p.kind, value: p.value, key: k.name(p.kind, hmacSum(k.pepper, p.value))})
	}
	return keys
}

// older are the names the key had under previous peppers, newest first,
// then its unsalted name.
func (k keyer) older(ik identityKey) []string {
	var names []string
	for _, p := range k.previous {
		names = append(names, k.name(ik.kind, hmacSum(p, ik.value)))
	}
	sum := sha256.Sum256([]byte(ik.value))
	return append(names, k.name(ik.kind, sum[:16]))
}

func (k keyer) name(kind string, sum []byte) string {
	return k.crm + "." + kind + "." + hex.EncodeToString(sum)
}

func hmacSum(pepper []byte, value string) []byte {
	m := hmac.New(sha256.New, pepper)
	m.Write([]byte(value))
	return m.Sum(nil)[:16]
}

// identities keeps "one contact per person" across leads, replicas and
// crashes. A lead claims every key of its person, in order, with
// create-if-absent; every other lead for the same person, on any replica,
// either finds the contact under a key or waits for the claim's holder.
type identities struct {
	kv    jetstream.KeyValue
	keyer keyer
	// staleAfter is how long a claim holds without becoming a contact;
	// after that its holder is presumed dead and another lead takes it
	// over (the old holder, if alive, is fenced out).
	staleAfter time.Duration
	poll       time.Duration
	now        func() time.Time
}

// heldKey is one key of the person as a lead holds it: the contact known
// under it, or the lead's own claim at revision rev.
type heldKey struct {
	identityKey
	contactID string
	rev       uint64
}

func (h heldKey) claimed() bool { return h.contactID == "" }

// acquire reads or claims every key of id for the delivery f. It waits
// while another live lead holds a key: the runner keeps the message in
// progress meanwhile.
func (ids *identities) acquire(ctx context.Context, f fence, id crm.Identity) ([]heldKey, error) {
	keys := ids.keyer.keys(id)
	if len(keys) == 0 {
		return nil, bus.WithCode("lead.no_identity", bus.Permanentf("lead %s has neither email nor phone", f.lead))
	}
	held := make([]heldKey, 0, len(keys))
	for _, k := range keys {
		h, err := ids.acquireKey(ctx, f, k)
		if err != nil {
			return nil, err
		}
		held = append(held, h)
	}
	return held, nil
}

func (ids *identities) acquireKey(ctx context.Context, f fence, k identityKey) (heldKey, error) {
	log := logging.FromContext(ctx)
	mine := ids.encode(identityRecord{CRM: ids.keyer.crm, ClaimedBy: f.lead, Fence: f.String(), ClaimedAt: ids.now()})
	waited := false
	for {
		rec, rev, err := ids.get(ctx, k.key)
		if err != nil {
			return heldKey{}, err
		}
		switch {
		case rec == nil:
			if contactID, err := ids.migrate(ctx, k); err != nil {
				return heldKey{}, err
			} else if contactID != "" {
				continue // now under the current name: read it there
			}
			rev, err := ids.kv.Create(ctx, k.key, mine)
			if bus.Conflict(err) {
				continue // someone was faster: read what they wrote
			}
			if err != nil {
				return heldKey{}, fmt.Errorf("claim identity: %w", err)
			}
			return heldKey{identityKey: k, rev: rev}, nil
		case rec.ContactID != "":
			return heldKey{identityKey: k, contactID: rec.ContactID}, nil
		case rec.ClaimedBy == f.lead && rec.Fence == f.String():
			return heldKey{identityKey: k, rev: rev}, nil
		case rec.ClaimedBy == f.lead, ids.now().Sub(rec.ClaimedAt) > ids.staleAfter:
			// A later delivery of the same lead supersedes the earlier
			// one at once: JetStream redelivers only a message whose
			// holder stopped reporting progress. Another lead's claim is
			// taken over only once stale. Either way the old holder's
			// fence no longer matches, and it calls nothing.
			rev, err := ids.kv.Update(ctx, k.key, mine, rev)
			if err != nil {
				continue // another delivery took it first, or it resolved
			}
			if rec.ClaimedBy != f.lead {
				log.Warn("took over a stale identity claim", "lead_id", f.lead, "stale_claim_by", rec.ClaimedBy)
			}
			return heldKey{identityKey: k, rev: rev}, nil
		default:
			if !waited {
				log.Info("person is being resolved by another lead; waiting", "lead_id", f.lead, "holder", rec.ClaimedBy)
				waited = true
			}
			select {
			case <-ctx.Done():
				return heldKey{}, ctx.Err()
			case <-time.After(ids.poll):
			}
		}
	}
}

// migrate looks for k under its older names. A contact found there is
// written under the current name (create-if-absent) and returned.
func (ids *identities) migrate(ctx context.Context, k identityKey) (string, error) {
	for _, old := range ids.keyer.older(k) {
		rec, _, err := ids.get(ctx, old)
		if err != nil {
			return "", err
		}
		if rec == nil || rec.ContactID == "" {
			continue
		}
		_, err = ids.kv.Create(ctx, k.key, ids.encode(identityRecord{CRM: ids.keyer.crm, ContactID: rec.ContactID}))
		if err != nil && !bus.Conflict(err) {
			return "", fmt.Errorf("rewrite identity under the current pepper: %w", err)
		}
		return rec.ContactID, nil
	}
	return "", nil
}

// stillHeld re-reads the lead's claims right before the CRM call. A claim
// that moved on (a later delivery of the lead, or a takeover after this
// holder looked dead) fences this delivery out; so does losing NATS.
func (ids *identities) stillHeld(ctx context.Context, f fence, held []heldKey) error {
	for _, h := range held {
		if !h.claimed() {
			continue
		}
		rec, rev, err := ids.get(ctx, h.key)
		if err != nil {
			return err
		}
		if rec == nil || rev != h.rev {
			holder := "nobody"
			if rec != nil {
				holder = rec.ClaimedBy + "@" + rec.Fence
			}
			return bus.WithCode("crm.fenced", fmt.Errorf("delivery %s of lead %s lost its claim on the person's %s (now %s): not calling the CRM", f, f.lead, h.kind, holder))
		}
	}
	return nil
}

// settle maps each claimed key to its contact, with compare-and-swap on
// the claim: a key whose claim was taken over meanwhile is left to its new
// holder. A key known under a contact is never rewritten: the first
// contact that held an email or a phone keeps it.
func (ids *identities) settle(ctx context.Context, f fence, held []heldKey, contactOf func(heldKey) string) error {
	for _, h := range held {
		if !h.claimed() {
			continue
		}
		contactID := contactOf(h)
		_, err := ids.kv.Update(ctx, h.key, ids.encode(identityRecord{CRM: ids.keyer.crm, ContactID: contactID}), h.rev)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
				logging.FromContext(ctx).Warn("identity claim moved on before it was settled; left to its new holder",
					"lead_id", f.lead, "kind", h.kind, "contact_id", contactID)
				continue
			}
			return fmt.Errorf("record identity: %w", err)
		}
	}
	return nil
}

// release gives the lead's claims back when its CRM call certainly did
// not happen, so that the next lead for the person does not wait for them
// to go stale. A claim that moved on is not ours to delete.
func (ids *identities) release(ctx context.Context, held []heldKey) {
	for _, h := range held {
		if !h.claimed() {
			continue
		}
		if err := ids.kv.Delete(ctx, h.key, jetstream.LastRevision(h.rev)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			logging.FromContext(ctx).Debug("identity claim not released", "err", err)
		}
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
