package alerter

import (
	"context"
	"errors"
	"time"
)

// The tick's work (summaries and checks) is one replica's at a time: two
// replicas ticking at once would each send a summary that is due, and each
// alert on a check that starts firing. The replica that holds the lease in
// the alerts bucket does it; the others only consume, which the bucket's
// compare-and-swap records keep right (a group's first alert is decided by
// the write that makes it first).
const leaseKey = "lease.tick"

// tickLease is the lease record: who holds it, and until when.
type tickLease struct {
	Holder string    `json:"holder"`
	Until  time.Time `json:"until"`
}

// leaseFor is how long a lease holds without renewal: three ticks, plus
// the longest one alert's delivery may take (each channel's call its HTTP
// timeout). The holder renews it before each alert it sends from a tick,
// so a live holder's lease never runs out in the middle of a send.
func (a *Alerter) leaseFor() time.Duration {
	return 3*a.cfg.Tick + time.Duration(len(a.channels))*a.cfg.HTTPTimeout
}

// leading renews the lease before an alert of the tick is sent; false
// (another replica took the lease, or the bucket cannot be reached) stops
// the tick's work until the next tick.
func (a *Alerter) leading(ctx context.Context) bool {
	ok, err := a.lead(ctx)
	if err != nil && ctx.Err() == nil {
		a.log.Warn("the tick's lease could not be renewed; its work waits for the next tick", "err", err)
	}
	return ok
}

// lead takes or renews the tick's lease, and reports whether this replica
// holds it for at least the next tick's work.
func (a *Alerter) lead(ctx context.Context) (bool, error) {
	kv, err := a.bucket(ctx)
	if err != nil {
		return false, err
	}
	for {
		cur, rev, err := readJSONRev[tickLease](ctx, kv, leaseKey)
		if err != nil {
			return false, err
		}
		now := a.now()
		if cur != nil && cur.Holder != a.id && now.Before(cur.Until) {
			return false, nil
		}
		err = writeJSON(ctx, kv, leaseKey, tickLease{Holder: a.id, Until: now.Add(a.leaseFor())}, rev)
		if errors.Is(err, errConflict) {
			continue // another replica renewed or took it: read again
		}
		return err == nil, err
	}
}

// release gives the lease up on a clean shutdown, so that another replica
// (or this one restarted) ticks at once rather than when it expires.
func (a *Alerter) release() {
	kv, err := a.bucket(context.Background())
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cur, rev, err := readJSONRev[tickLease](ctx, kv, leaseKey)
	if err != nil || cur == nil || cur.Holder != a.id {
		return
	}
	if err := writeJSON(ctx, kv, leaseKey, tickLease{Holder: a.id}, rev); err != nil {
		a.log.Debug("tick lease not released; it expires", "err", err)
	}
}
