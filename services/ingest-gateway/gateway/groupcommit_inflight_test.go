package gateway_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

// inFlight serves a gateway that commits up to n batches at once.
func inFlight(t *testing.T, n int) *env {
	t.Helper()
	cfg := testConfig()
	cfg.GroupCommitInFlight = n
	return setupWith(t, cfg, testTopology())
}

// postAsync posts ids at once and returns a wait for their answers, in the
// order of ids.
func postAsync(e *env, ids ...string) (wait func() []reply) {
	out := make([]reply, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { out[i] = postIDX(e.url, id) })
	}
	return func() []reply {
		wg.Wait()
		return out
	}
}

// startBatch commits ids as one batch, held in flight (StallCommits), and
// returns the wait for their answers.
func startBatch(t *testing.T, e *env, ids ...string) (wait func() []reply) {
	t.Helper()
	release := e.g.HoldCommits()
	wait = postAsync(e, ids...)
	natstest.Eventually(t, 10*time.Second, fmt.Sprintf("%d deliveries waiting for the batch", len(ids)), func() bool {
		return e.g.QueuedCommits() == len(ids)
	})
	release()
	natstest.Eventually(t, 10*time.Second, "the batch in flight", func() bool { return e.g.CommitsInFlight() == 1 })
	return wait
}

func wantCodes(t *testing.T, got []reply, want map[string]int) {
	t.Helper()
	for _, r := range got {
		if r.err != nil {
			t.Errorf("%s: %v", r.id, r.err)
			continue
		}
		w := want[r.id]
		if r.code != w || r.resp.Duplicate != (w == http.StatusOK) {
			t.Errorf("%s: %d %+v, want %d", r.id, r.code, r.resp, w)
		}
	}
}

// twoBatchesInFlight commits first as one batch, held in flight, posts
// second meanwhile (whose first delivery starts a second batch), and
// resumes both once every delivery waits. It returns all the answers.
func twoBatchesInFlight(t *testing.T, e *env, first, second []string) []reply {
	t.Helper()
	resume := e.g.StallCommits()
	firstDone := startBatch(t, e, first...)
	secondDone := postAsync(e, second...)
	natstest.Eventually(t, 10*time.Second, "the deliveries waiting", func() bool {
		return e.g.PendingCommits() == len(first)+len(second)
	})
	resume()
	return append(firstDone(), secondDone()...)
}

// wantStored checks how many messages WEBHOOKS holds and how many batches
// were refused for a stored id.
func wantStored(t *testing.T, e *env, messages int, refused float64) {
	t.Helper()
	if n := e.stored(t); n != messages {
		t.Errorf("WEBHOOKS holds %d messages, want %d", n, messages)
	}
	if n := fallbacks(t, e.reg); n != refused {
		t.Errorf("fallbacks = %v, want %v", n, refused)
	}
}

// A provider's quick retry arrives while the first copy's batch is in
// flight and a second batch can start: the retry waits for the first
// copy's commit and is its duplicate, rather than racing it in the other
// batch (which the server refuses whole, or, on a cluster, refuses with
// "duplicate message id is in process").
func TestGroupCommit_aCopyOfADeliveryInFlightIsItsDuplicateNotAnotherBatchs(t *testing.T) {
	t.Parallel()
	e := inFlight(t, 2)
	got := twoBatchesInFlight(t, e, []string{"msg_copied", "msg_a"}, []string{"msg_copied", "msg_b"})
	wantCodes(t, got[:2], map[string]int{"msg_copied": http.StatusAccepted, "msg_a": http.StatusAccepted})
	wantCodes(t, got[2:], map[string]int{"msg_copied": http.StatusOK, "msg_b": http.StatusAccepted})
	wantStored(t, e, 3, 0)
}

// A batch refused for a stored id, while another batch is in flight: it is
// published one by one, and every delivery of both is answered right.
func TestGroupCommit_aRefusedBatchBesideAnotherInFlightAnswersEachDelivery(t *testing.T) {
	t.Parallel()
	e := inFlight(t, 2)
	if r := postIDX(e.url, "msg_stored"); r.code != http.StatusAccepted {
		t.Fatalf("first delivery: %d %+v", r.code, r.resp)
	}
	got := twoBatchesInFlight(t, e, []string{"msg_new_1", "msg_stored"}, []string{"msg_new_2", "msg_new_3"})
	wantCodes(t, got, map[string]int{"msg_new_1": http.StatusAccepted, "msg_stored": http.StatusOK, "msg_new_2": http.StatusAccepted, "msg_new_3": http.StatusAccepted})
	wantStored(t, e, 4, 1)
}

// Two batches in flight can fail at once: each of their deliveries gets 503.
func TestGroupCommit_batchesInFlightThatCannotBePersistedAre503ForEachDelivery(t *testing.T) {
	t.Parallel()
	e := inFlight(t, 2)
	resume := e.g.StallCommits()
	first := startBatch(t, e, "msg_lost_1", "msg_lost_2")
	second := postAsync(e, "msg_lost_3", "msg_lost_4")
	natstest.Eventually(t, 10*time.Second, "the second batch in flight", func() bool { return e.g.CommitsInFlight() == 2 })
	if err := e.js.DeleteStream(natstest.Context(t, 10*time.Second), bus.StreamWebhooks); err != nil {
		t.Fatal(err)
	}
	resume()
	for _, r := range append(first(), second()...) {
		if r.err != nil || r.code != http.StatusServiceUnavailable {
			t.Errorf("%s: %d %+v %v, want 503", r.id, r.code, r.resp, r.err)
		}
	}
}

// JetStream stops under load with several batches in flight: no webhook
// is answered 2xx unless it is stored.
func TestGroupCommit_stoppingJetStreamUnderLoadWithBatchesInFlight(t *testing.T) {
	t.Parallel()
	stopJetStreamUnderLoad(t, inFlight(t, 4))
}

func TestConfigFromEnv_groupCommitInFlight(t *testing.T) {
	t.Parallel()
	cfg, err := gateway.ConfigFromEnv([]string{"GATEWAY_IDX_SECRETS=" + secret})
	if err != nil || cfg.GroupCommitInFlight != gateway.DefaultGroupCommitInFlight {
		t.Fatalf("default = %d, %v; want %d", cfg.GroupCommitInFlight, err, gateway.DefaultGroupCommitInFlight)
	}
	cfg, err = gateway.ConfigFromEnv([]string{"GATEWAY_IDX_SECRETS=" + secret, "GATEWAY_GROUP_COMMIT_IN_FLIGHT=3"})
	if err != nil || cfg.GroupCommitInFlight != 3 {
		t.Fatalf("GATEWAY_GROUP_COMMIT_IN_FLIGHT=3: %d, %v", cfg.GroupCommitInFlight, err)
	}
	for _, bad := range []string{"GATEWAY_GROUP_COMMIT_IN_FLIGHT=-1", fmt.Sprintf("GATEWAY_GROUP_COMMIT_IN_FLIGHT=%d", gateway.MaxGroupCommitInFlight+1)} {
		if _, err := gateway.ConfigFromEnv([]string{"GATEWAY_IDX_SECRETS=" + secret, bad}); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}
