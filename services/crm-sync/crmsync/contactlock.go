package crmsync

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
)

// contactLock is held while a lead adds its details to a contact. Both
// CRMs add an email or a phone by reading the contact and writing it back
// (Follow Up Boss replaces the contact's whole list; LionDesk fills the
// first empty phone field), so two leads adding one detail each at once
// would keep only the one written last. Leads of one person on other keys
// hold no common identity claim, so the contact gets a lock of its own.
type contactLock struct {
	Lead  string    `json:"lead"`
	Fence string    `json:"fence"`
	At    time.Time `json:"at"`
}

// lockKey names contactID's lock in the identity bucket.
func (ids *identities) lockKey(contactID string) string {
	sum := sha256.Sum256([]byte(contactID))
	return ids.keyer.name("contact-lock", sum[:16])
}

// lockContact takes contactID's lock for delivery f, waiting while another
// lead holds it. A later delivery of the same lead takes it over at once,
// and another lead's lock once it is stale, as identity claims are.
// unlock removes the lock unless it was taken over meanwhile.
func (ids *identities) lockContact(ctx context.Context, f fence, contactID string) (unlock func(), err error) {
	key := ids.lockKey(contactID)
	mine, _ := json.Marshal(contactLock{Lead: f.lead, Fence: f.String(), At: ids.now()})
	unlockAt := func(rev uint64) func() {
		return func() {
			err := ids.kv.Delete(context.WithoutCancel(ctx), key, jetstream.LastRevision(rev))
			if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				logging.FromContext(ctx).Debug("contact lock not released; it goes stale", "contact_id", contactID, "err", err)
			}
		}
	}
	for {
		rev, err := ids.kv.Create(ctx, key, mine)
		if err == nil {
			return unlockAt(rev), nil
		}
		if !bus.Conflict(err) {
			return nil, fmt.Errorf("lock contact %s: %w", contactID, err)
		}
		e, err := ids.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // released since
		}
		if err != nil {
			return nil, fmt.Errorf("read the lock of contact %s: %w", contactID, err)
		}
		var held contactLock
		if err := json.Unmarshal(e.Value(), &held); err != nil {
			return nil, fmt.Errorf("decode the lock of contact %s: %w", contactID, err)
		}
		if held.Lead == f.lead || ids.now().Sub(held.At) > ids.staleAfter {
			if rev, err := ids.kv.Update(ctx, key, mine, e.Revision()); err == nil {
				return unlockAt(rev), nil
			}
			continue // another took it first, or it was released
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(ids.poll):
		}
	}
}
