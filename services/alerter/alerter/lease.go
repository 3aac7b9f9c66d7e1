package alerter

import (
	"context"
	"time"

	"github.com/brokerflow/brokerflow/pkg/service"
)

// The tick's work (summaries and checks) is one replica's at a time: two
// replicas ticking at once would each send a summary that is due, and each
// alert on a check that starts firing. The replica that holds the lease in
// the alerts bucket does it; the others only consume, which the bucket's
// compare-and-swap records keep right (a group's first alert is decided by
// the write that makes it first).
const leaseKey = "lease.tick"

// leaseFor is how long the tick's lease holds without renewal: three
// ticks, plus the longest one alert's delivery may take (each channel's
// call its HTTP timeout). The holder renews it before each alert a tick
// sends, so a live holder's lease never lapses in the middle of a send.
func (a *Alerter) leaseFor() time.Duration {
	return 3*a.cfg.Tick + time.Duration(len(a.channels))*a.cfg.HTTPTimeout
}

// leading renews the tick's lease before an alert of the tick is sent;
// false (another replica holds it, or the bucket cannot be reached) stops
// the tick's work until the next tick.
func (a *Alerter) leading(ctx context.Context) bool {
	if a.lease == nil {
		kv, err := a.bucket(ctx)
		if err != nil {
			a.log.Warn("the tick's lease could not be taken; its work waits for the next tick", "err", err)
			return false
		}
		a.lease = service.NewLease(kv, leaseKey, a.leaseFor())
	}
	ok, err := a.lease.Hold(ctx)
	if err != nil && ctx.Err() == nil {
		a.log.Warn("the tick's lease could not be renewed; its work waits for the next tick", "err", err)
	}
	return ok
}

// release gives the lease back on a clean shutdown, so that another
// replica (or this one restarted) ticks at once rather than when it lapses.
func (a *Alerter) release() {
	if a.lease == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.lease.Release(ctx); err != nil {
		a.log.Debug("tick lease not released; it lapses", "err", err)
	}
}
