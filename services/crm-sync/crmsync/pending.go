package crmsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
)

// pendingRecord is kept in the outcome bucket while a lead is between its
// first delivery and its outcome record. It fences the lead's deliveries
// against each other, and it says whether a CRM call may have had its
// effect without the outcome saying so: then a later delivery asks the CRM
// before calling again.
type pendingRecord struct {
	Fence string `json:"fence"`
	// ContactID is the contact the lead is recorded on; empty when the
	// call creates the person.
	ContactID string `json:"contact_id,omitempty"`
	// Calling is when the last CRM call began.
	Calling time.Time `json:"calling,omitzero"`
	// Ended is set when that call's end was recorded; until then the
	// delivery that made it may still be waiting for its answer.
	Ended bool `json:"ended,omitempty"`
	// Doubt is set when the call ended with an error that may have had its
	// effect (a timeout, a reset, a 5xx).
	Doubt bool `json:"doubt,omitempty"`
}

// inFlight reports whether the last call's end is not recorded.
func (r pendingRecord) inFlight() bool { return !r.Calling.IsZero() && !r.Ended }

// inDoubt reports whether an earlier CRM call may have recorded the lead.
func (r pendingRecord) inDoubt() bool { return r.Doubt || r.inFlight() }

// pendingKey is the KV key of a lead's pending record.
func pendingKey(leadID string) string { return "crm-sync.pending." + leadID }

// pendingLead is one delivery's hold on its lead's pending record.
type pendingLead struct {
	kv   jetstream.KeyValue
	key  string
	f    fence
	rev  uint64
	rec  pendingRecord
	now  func() time.Time
	prev pendingRecord
}

// beginPending takes the lead's pending record for delivery f. A record
// left by an earlier delivery whose CRM call may still be in flight (it
// began less than inFlight ago) makes this delivery retry later: two
// deliveries never call the CRM for one lead at once.
func beginPending(ctx context.Context, kv jetstream.KeyValue, f fence, inFlight time.Duration, now func() time.Time) (*pendingLead, error) {
	p := &pendingLead{kv: kv, key: pendingKey(f.lead), f: f, now: now}
	for {
		// A lead's first delivery finds no record: create it at once,
		// and read what is there only when that fails.
		p.rec, p.prev = pendingRecord{Fence: f.String()}, pendingRecord{}
		rev, err := kv.Create(ctx, p.key, encodePending(p.rec))
		if err == nil {
			p.rev = rev
			return p, nil
		}
		if !bus.Conflict(err) {
			return nil, fmt.Errorf("keep pending lead: %w", err)
		}
		e, err := kv.Get(ctx, p.key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // removed since: create it again
		}
		if err != nil {
			return nil, fmt.Errorf("read pending lead: %w", err)
		}
		if err := json.Unmarshal(e.Value(), &p.prev); err != nil {
			return nil, fmt.Errorf("decode pending lead %s: %w", f.lead, err)
		}
		if wait := inFlight - now().Sub(p.prev.Calling); p.prev.Fence != f.String() && p.prev.inFlight() && wait > 0 {
			return nil, bus.RetryAfter(bus.WithCode("crm.call_in_flight", fmt.Errorf(
				"lead %s: delivery %s may still be calling the CRM (since %s); retrying once that call must have ended",
				f.lead, p.prev.Fence, p.prev.Calling.Format(time.RFC3339))), wait)
		}
		p.rec = p.prev
		p.rec.Fence = f.String()
		rev, err = kv.Update(ctx, p.key, encodePending(p.rec), e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("keep pending lead: %w", err)
		}
		p.rev = rev
		return p, nil
	}
}

// calling records, right before the CRM call, that it is about to happen
// and on which contact. Compare-and-swap on the record fences out a
// superseded delivery.
func (p *pendingLead) calling(ctx context.Context, contactID string) error {
	rec := pendingRecord{Fence: p.f.String(), ContactID: contactID, Calling: p.now()}
	return p.write(ctx, rec)
}

// ended records how the CRM call ended when it failed: in doubt, or
// certainly without effect.
func (p *pendingLead) ended(ctx context.Context, doubt bool) {
	rec := p.rec
	rec.Ended, rec.Doubt = true, doubt
	if err := p.write(ctx, rec); err != nil {
		// The call stays in flight: the next delivery waits for its
		// window to pass, then asks the CRM.
		logging.FromContext(ctx).Warn("the end of a CRM call was not recorded", "lead_id", p.f.lead, "err", err)
	}
}

func (p *pendingLead) write(ctx context.Context, rec pendingRecord) error {
	rev, err := p.kv.Update(ctx, p.key, encodePending(rec), p.rev)
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return bus.WithCode("crm.fenced", fmt.Errorf("delivery %s of lead %s was superseded by a later delivery: not calling the CRM", p.f, p.f.lead))
	}
	if err != nil {
		return fmt.Errorf("keep pending lead: %w", err)
	}
	p.rev, p.rec = rev, rec
	return nil
}

// done removes the record once the lead's outcome is kept.
func (p *pendingLead) done(ctx context.Context) {
	if err := p.kv.Delete(ctx, p.key, jetstream.LastRevision(p.rev)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		logging.FromContext(ctx).Debug("pending lead not removed", "lead_id", p.f.lead, "err", err)
	}
}

func encodePending(r pendingRecord) []byte {
	b, _ := json.Marshal(r) // strings, a time and a bool cannot fail
	return b
}
