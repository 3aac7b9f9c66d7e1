package crmsync_test

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// reconcileInterval is the tests' reconcile poll interval.
const reconcileInterval = 30 * time.Millisecond

// setupReconcile is crm-sync (replicas of it) with webhooks and the
// reconcile poll every reconcileInterval; the events in lost never reach it
// (the sandbox gives up on them after its retries). It returns once the
// first poll has set the cursor, the sandbox's clock has moved a minute past
// it, so that every later change is after the cursor, and crm-sync knows
// Ada, whom it returns, at stage Lead from her peopleCreated webhook.
func setupReconcile(t *testing.T, replicas int, lost ...string) (*changesEnv, int64) {
	t.Helper()
	e := setupChangesWith(t, func(e *changesEnv) {
		e.cfg.FUBReconcileInterval = reconcileInterval
		e.refuseEvent = map[string]bool{}
		for _, ev := range lost {
			e.refuseEvent[ev] = true
		}
	})
	for range replicas - 1 {
		e.replica(t)
	}
	natstest.Eventually(t, 30*time.Second, "the reconcile cursor set", func() bool {
		_, ok := e.reconcileCursor(t)
		return ok
	})
	e.clock.Advance(time.Minute)
	id := e.createPerson(t, "Ada", "Lovelace", "ada@example.com")
	e.settle(t, 1)
	return e, id
}

func (e *changesEnv) reconcileCursor(t *testing.T) (time.Time, bool) {
	t.Helper()
	kv, err := e.js.KeyValue(t.Context(), service.CursorBucket)
	if err != nil {
		return time.Time{}, false
	}
	entry, err := kv.Get(t.Context(), "crm-sync.followupboss")
	if err != nil {
		return time.Time{}, false
	}
	at, err := time.Parse(time.RFC3339Nano, string(entry.Value()))
	return at, err == nil
}

// afterPolls waits until n more reconcile listings have been answered.
func (e *changesEnv) afterPolls(t *testing.T, n int64) {
	t.Helper()
	from := e.lists.Load()
	natstest.Eventually(t, 30*time.Second, fmt.Sprintf("%d more reconcile polls", n), func() bool {
		return e.lists.Load() >= from+n
	})
}

// lost waits until the sandbox has given up on every delivery of event
// about person id: its webhooks are lost for good.
func (e *changesEnv) lost(t *testing.T, id int64, event string) {
	t.Helper()
	natstest.Eventually(t, 30*time.Second, event+" given up", func() bool {
		n := 0
		for _, d := range e.fub.WebhookDeliveries() {
			if d.Payload.Event == event && slices.Contains(d.Payload.ResourceIDs, id) {
				if d.State != sandbox.FUBDeliveryFailed {
					return false
				}
				n++
			}
		}
		return n > 0
	})
}

// A stage change whose webhooks Follow Up Boss gave up on is announced once
// by the reconcile poll, as the webhook would have announced it, and the
// polls after it announce nothing more.
func TestReconcile_aStageChangeWhoseWebhookIsLostIsAnnouncedOnce(t *testing.T) {
	t.Parallel()
	e, id := setupReconcile(t, 1, sandbox.FUBPeopleStageUpdated, sandbox.FUBPeopleUpdated)

	e.clock.Advance(time.Minute)
	moved, err := e.fub.SetStage(id, "Active Client")
	if err != nil {
		t.Fatal(err)
	}
	e.lost(t, id, sandbox.FUBPeopleStageUpdated)
	e.lost(t, id, sandbox.FUBPeopleUpdated)
	natstest.Eventually(t, 30*time.Second, "the stage change announced", func() bool {
		return len(e.stageChanges(t)) > 0
	})
	e.afterPolls(t, 3)
	got := e.stageChanges(t)
	if len(got) != 1 {
		t.Fatalf("%d stage changes announced, want 1: %v", len(got), got)
	}
	ev := got[0]
	if ev.GetContactId() != strconv.FormatInt(id, 10) || ev.GetCrm() != "followupboss" || ev.GetOldStage() != "Lead" ||
		ev.GetNewStage() != "Active Client" || !ev.GetActiveClient() || !ev.GetChangedAt().AsTime().Equal(moved.Updated) ||
		ev.GetFirstName() != "Ada" || !slices.Equal(ev.GetEmails(), []string{"ada@example.com"}) ||
		ev.GetCorrelation().GetContactId() != ev.GetContactId() || ev.GetCorrelation().GetSource() != "idx" {
		t.Fatalf("stage change = %v", ev)
	}
	if u := e.updates(t); len(u) != 0 {
		t.Fatalf("updates announced for a stage change: %v", u)
	}
}

// A change whose webhook came is not announced again by the reconcile
// polls that list the person after it, and costs them no read of the
// person.
func TestReconcile_aChangeThatCameByWebhookIsNotAnnouncedAgain(t *testing.T) {
	t.Parallel()
	e, id := setupReconcile(t, 1)
	e.afterPolls(t, 1)
	cursor, _ := e.reconcileCursor(t)
	e.clock.Advance(time.Minute)
	if _, err := e.fub.UpdatePerson(id, sandbox.FUBPersonUpdate{Stage: ptr("Active Client"), LastName: ptr("King")}); err != nil {
		t.Fatal(err)
	}
	e.settle(t, 3) // peopleStageUpdated and peopleUpdated
	if n, u := len(e.stageChanges(t)), len(e.updates(t)); n != 1 || u != 1 {
		t.Fatalf("%d stage changes and %d updates from the webhooks, want 1 and 1", n, u)
	}
	// A poll may have taken the change before its webhook (then it read the
	// person): two polls later, every poll under way lists it as known.
	e.afterPolls(t, 2)
	reads := e.reads.Load()
	e.afterPolls(t, 3)
	if at, _ := e.reconcileCursor(t); !at.After(cursor) {
		t.Fatalf("the cursor stayed at %s: the polls did not list the person", at)
	}
	if n, u := len(e.stageChanges(t)), len(e.updates(t)); n != 1 || u != 1 {
		t.Fatalf("%d stage changes and %d updates after the polls, want 1 and 1", n, u)
	}
	if n := e.reads.Load() - reads; n != 0 {
		t.Fatalf("the polls read the person %d times; a listing equal to the record needs no read", n)
	}
}

// Two replicas whose polls list one lost change at the same moment
// announce it once.
func TestReconcile_twoReplicasPollingAtOnceAnnounceOnce(t *testing.T) {
	t.Parallel()
	e, id := setupReconcile(t, 2, sandbox.FUBPeopleStageUpdated, sandbox.FUBPeopleUpdated)

	// The first two listings that show the change are answered together,
	// so both replicas hold it at once.
	e.beforeAnswer.Store(pairUp(func(list bool, body []byte) bool {
		return list && bytes.Contains(body, []byte(`"Active Client"`))
	}))
	e.clock.Advance(time.Minute)
	if _, err := e.fub.SetStage(id, "Active Client"); err != nil {
		t.Fatal(err)
	}
	e.lost(t, id, sandbox.FUBPeopleStageUpdated)
	e.afterPolls(t, 4)
	if got := e.stageChanges(t); len(got) != 1 {
		t.Fatalf("%d stage changes announced by two replicas, want 1: %v", len(got), got)
	}
}

// A listing older than a change a webhook brought meanwhile does not move
// the person back: the poll reads them again and finds nothing new.
func TestReconcile_aListingOlderThanAWebhookAnnouncesNothing(t *testing.T) {
	t.Parallel()
	e, id := setupReconcile(t, 1)
	if _, err := e.fub.SetStage(id, "Active Client"); err != nil {
		t.Fatal(err)
	}
	e.settle(t, 3)

	// The next listing (Ada at Active Client) is held until a later move
	// to Closed has come by webhook and been announced.
	held, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func(list bool, _ []byte) {
		if !list {
			return
		}
		first := false
		once.Do(func() { first = true })
		if first {
			close(held)
			<-release
		}
	}
	e.beforeAnswer.Store(&hold)
	<-held
	e.clock.Advance(time.Minute)
	if _, err := e.fub.SetStage(id, "Closed"); err != nil {
		close(release)
		t.Fatal(err)
	}
	e.settle(t, 5)
	close(release)
	e.afterPolls(t, 3)
	var moves []string
	for _, ev := range e.stageChanges(t) {
		moves = append(moves, ev.GetOldStage()+" -> "+ev.GetNewStage())
	}
	if want := []string{"Lead -> Active Client", "Active Client -> Closed"}; !slices.Equal(moves, want) {
		t.Fatalf("stage changes %q, want %q", moves, want)
	}
}

// The first reconcile poll starts from now: a change made before it, whose
// webhook was lost, is history and is not announced.
func TestReconcile_theFirstPollStartsFromNow(t *testing.T) {
	t.Parallel()
	e := setupChangesWith(t, func(e *changesEnv) {
		e.refuseEvent = map[string]bool{sandbox.FUBPeopleStageUpdated: true, sandbox.FUBPeopleUpdated: true}
	})
	e.clock.Advance(-time.Hour) // the history: an hour ago
	id := e.createPerson(t, "Ada", "Lovelace", "ada@example.com")
	e.settle(t, 1) // crm-sync knows the person at stage Lead
	if _, err := e.fub.SetStage(id, "Active Client"); err != nil {
		t.Fatal(err)
	}
	e.lost(t, id, sandbox.FUBPeopleStageUpdated)

	e.cfg.FUBReconcileInterval = reconcileInterval
	e.replica(t) // the first replica that reconciles
	natstest.Eventually(t, 30*time.Second, "the reconcile cursor set", func() bool {
		_, ok := e.reconcileCursor(t)
		return ok
	})
	e.afterPolls(t, 3)
	if got := e.stageChanges(t); len(got) != 0 {
		t.Fatalf("a change made before the first poll was announced: %v", got)
	}
}

// A webhook's read of the person and a poll's listing that show one change
// at the same moment announce it once.
func TestReconcile_aWebhookAndAPollSeeingOneChangeAnnounceOnce(t *testing.T) {
	t.Parallel()
	e, id := setupReconcile(t, 1)
	// The first listing and the first read that show the change are
	// answered together.
	e.beforeAnswer.Store(pairUp(func(list bool, body []byte) bool {
		return bytes.Contains(body, []byte(`"Active Client"`))
	}, true, false))
	e.clock.Advance(time.Minute)
	if _, err := e.fub.SetStage(id, "Active Client"); err != nil {
		t.Fatal(err)
	}
	e.settle(t, 3)
	e.afterPolls(t, 3)
	if got := e.stageChanges(t); len(got) != 1 {
		t.Fatalf("%d stage changes announced by a webhook and a poll, want 1: %v", len(got), got)
	}
}

// pairUp returns a beforeAnswer hook that holds the first answers match
// picks, one of each kind in kinds (list or read; two lists by default),
// until all have come, then lets every later answer pass.
func pairUp(match func(list bool, body []byte) bool, kinds ...bool) *func(bool, []byte) {
	if len(kinds) == 0 {
		kinds = []bool{true, true}
	}
	var mu sync.Mutex
	var all sync.WaitGroup
	all.Add(len(kinds))
	hook := func(list bool, body []byte) {
		mu.Lock()
		i := slices.Index(kinds, list)
		if i < 0 || !match(list, body) {
			mu.Unlock()
			return
		}
		kinds = slices.Delete(kinds, i, i+1)
		mu.Unlock()
		all.Done()
		all.Wait()
	}
	return &hook
}

func ptr[T any](v T) *T { return &v }
