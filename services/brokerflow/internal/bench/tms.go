package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// StageToTransaction measures, for contacts moved to Active Client one a
// second, the time from the stage change in the sandbox's Follow Up
// Boss to the loop in its Dotloop: the FUB webhook, the gateway, crm-sync's
// read of the person and its stage_changed, tms-sync's read of the assigned
// agent and its Loop-It.
func StageToTransaction(ctx context.Context, o Options, w io.Writer) error {
	a, stop, err := startSystem(ctx, o)
	if err != nil {
		return err
	}
	defer stop()
	n := o.StageChanges
	fub, dl := a.Sandbox.FUB(), a.Sandbox.Dotloop()
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range n {
		body := fmt.Sprintf(`{"type":"lead.created","data":{"name":"Stage Client%03d","email":"client%03d@stage.example","inquiry_type":"buy"}}`, i, i)
		if !postSigned(ctx, client, a.WebhookURL+"/webhooks/idx", app.DevIDXSecret, fmt.Sprintf("msg_stt_%d", i), body) {
			return fmt.Errorf("stage_to_transaction: lead %d was not accepted", i)
		}
	}
	deadline := time.Now().Add(2 * time.Minute)
	for len(fub.People()) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("stage_to_transaction: %d of %d people in the CRM after 2 minutes", len(fub.People()), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
	var (
		mu     sync.Mutex
		opened = map[string]chan time.Time{}
	)
	dl.OnLoopCreated(func(l sandbox.DotloopLoop) {
		now := time.Now()
		mu.Lock()
		ch := opened[l.Name]
		mu.Unlock()
		if ch != nil {
			ch <- now
		}
	})
	var lat []time.Duration
	for _, p := range fub.People() {
		ch := make(chan time.Time, 1)
		mu.Lock()
		opened[p.Name] = ch
		mu.Unlock()
		t0 := time.Now()
		if _, err := fub.SetStage(p.ID, "Active Client"); err != nil {
			return err
		}
		select {
		case t1 := <-ch:
			lat = append(lat, t1.Sub(t0))
		case <-time.After(30 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
		// One move a second, under Dotloop's 100 calls a minute: moved back
		// to back, each would wait its turn in the pacer (85% of the quota,
		// a call every 0.7 s) and the figure would be the pacer's spacing.
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	slices.Sort(lat)
	r := result{latencies: lat}
	fmt.Fprintf(w, "bench: stage_to_transaction_opened %d count\n", len(lat))
	fmt.Fprintf(w, "bench: stage_to_transaction_moved %d count\n", n)
	fmt.Fprintf(w, "bench: stage_to_transaction_p50_ms %.1f ms\n", r.percentile(0.50))
	fmt.Fprintf(w, "bench: stage_to_transaction_p99_ms %.1f ms\n", r.percentile(0.99))
	return nil
}
