package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/service"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	"github.com/brokerflow/brokerflow/services/ingest-gateway/gateway"
)

// reply is one answer, from any goroutine.
type reply struct {
	id   string
	code int
	resp gateway.Response
	err  error
}

// postIDX posts a signed IDX lead whose delivery id is id; safe to call
// from any goroutine.
func postIDX(url, id string) reply {
	body := strings.Replace(leadBody, `"type"`, `"id":"`+id+`","type"`, 1)
	h, err := webhooksigHeaders(id, body)
	if err != nil {
		return reply{id: id, err: err}
	}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url+"/webhooks/idx", strings.NewReader(body))
	if err != nil {
		return reply{id: id, err: err}
	}
	req.Header = h
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{id: id, err: err}
	}
	defer resp.Body.Close()
	r := reply{id: id, code: resp.StatusCode}
	r.err = json.NewDecoder(resp.Body).Decode(&r.resp)
	return r
}

func webhooksigHeaders(id, body string) (http.Header, error) {
	h, err := webhooksig.SignedHeaders(secret, id, time.Now(), []byte(body))
	if err != nil {
		return nil, err
	}
	h.Set("Content-Type", "application/json")
	return h, nil
}

// gather returns the series of the metric family name on reg.
func gather(t *testing.T, reg *prometheus.Registry, name string) []*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

// postHeld posts ids at once while the group commit is held, waits until
// every one of them waits for the next batch, then releases it: the ids
// share one batch. It returns the answers by id, in the order of ids.
func postHeld(t *testing.T, e *env, ids ...string) []reply {
	t.Helper()
	release := e.g.HoldCommits()
	out := make([]reply, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { out[i] = postIDX(e.url, id) })
	}
	natstest.Eventually(t, 10*time.Second, fmt.Sprintf("%d deliveries waiting for the batch", len(ids)), func() bool {
		return e.g.QueuedCommits() == len(ids)
	})
	release()
	wg.Wait()
	for _, r := range out {
		if r.err != nil {
			t.Fatalf("%s: %v", r.id, r.err)
		}
	}
	return out
}

// batches reads the batch size histogram: how many publishes, and how many
// messages they stored in all.
func batches(t *testing.T, reg *prometheus.Registry) (publishes uint64, messages float64) {
	t.Helper()
	for _, mf := range gather(t, reg, "brokerflow_gateway_commit_batch_size") {
		h := mf.GetHistogram()
		publishes, messages = publishes+h.GetSampleCount(), messages+h.GetSampleSum()
	}
	return publishes, messages
}

func fallbacks(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	var n float64
	for _, m := range gather(t, reg, "brokerflow_gateway_commit_fallbacks_total") {
		n += m.GetCounter().GetValue()
	}
	return n
}

func TestGroupCommit_aDeliveryThatFindsNothingInFlightIsPublishedAtOnceAlone(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if r := postIDX(e.url, "msg_alone"); r.code != http.StatusAccepted {
		t.Fatalf("answer = %d %+v", r.code, r.resp)
	}
	if publishes, messages := batches(t, e.reg); publishes != 1 || messages != 1 {
		t.Fatalf("%d publishes of %v messages, want one publish of the delivery alone", publishes, messages)
	}
}

func TestGroupCommit_deliveriesThatWaitAreStoredAsOneBatch(t *testing.T) {
	t.Parallel()
	e := setup(t)
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = fmt.Sprintf("msg_batch_%02d", i)
	}
	for _, r := range postHeld(t, e, ids...) {
		if r.code != http.StatusAccepted || r.resp.Duplicate || r.resp.DeliveryID != r.id {
			t.Errorf("%s: %d %+v, want 202", r.id, r.code, r.resp)
		}
	}
	if publishes, messages := batches(t, e.reg); publishes != 1 || messages != 20 {
		t.Fatalf("%d publishes of %v messages, want one batch of 20", publishes, messages)
	}
	stored := natstest.All(t, e.js, bus.StreamWebhooks, ">")
	if len(stored) != len(ids) {
		t.Fatalf("WEBHOOKS holds %d messages, want %d", len(stored), len(ids))
	}
	// A message of a batch carries the contract's headers, and those
	// JetStream keeps of the batch (docs/events.md), and no others.
	for _, m := range stored {
		for k := range m.Headers() {
			switch k {
			case bus.HeaderMsgID, bus.HeaderContentType, bus.HeaderSpecVersion, bus.HeaderID, bus.HeaderSource,
				bus.HeaderType, bus.HeaderTime, "traceparent", "tracestate",
				"Nats-Batch-Id", "Nats-Batch-Sequence", "Nats-Batch-Commit":
			default:
				t.Fatalf("stored message carries header %s: %v", k, m.Headers())
			}
		}
	}
}

// A provider's retry of a delivery already stored, in a batch with new
// deliveries: the server refuses the batch whole, and its messages are
// published one by one, so the retry is told it is a duplicate and the
// others are stored.
func TestGroupCommit_aBatchHoldingAStoredDeliveryIsPublishedOneByOne(t *testing.T) {
	t.Parallel()
	e := setup(t)
	if r := postIDX(e.url, "msg_stored"); r.code != http.StatusAccepted {
		t.Fatalf("first delivery: %d %+v", r.code, r.resp)
	}
	got := postHeld(t, e, "msg_new_1", "msg_stored", "msg_new_2")
	for _, r := range got {
		want := http.StatusAccepted
		if r.id == "msg_stored" {
			want = http.StatusOK
		}
		if r.code != want || r.resp.Duplicate != (want == http.StatusOK) {
			t.Errorf("%s: %d %+v, want %d", r.id, r.code, r.resp, want)
		}
	}
	if n := e.stored(t); n != 3 {
		t.Fatalf("WEBHOOKS holds %d messages, want 3", n)
	}
	if n := fallbacks(t, e.reg); n != 1 {
		t.Fatalf("fallbacks = %v, want 1", n)
	}
}

// Two deliveries with one id in one batch (a provider retrying quickly):
// resolved before the batch is sent, which the server would refuse.
func TestGroupCommit_oneDeliveryTwiceInABatchIsStoredOnce(t *testing.T) {
	t.Parallel()
	e := setup(t)
	got := postHeld(t, e, "msg_twice", "msg_other", "msg_twice")
	if got[1].code != http.StatusAccepted {
		t.Errorf("msg_other: %d %+v", got[1].code, got[1].resp)
	}
	first, second := got[0], got[2]
	if first.code == http.StatusOK {
		first, second = second, first // the goroutines queue in any order
	}
	if first.code != http.StatusAccepted || second.code != http.StatusOK || !second.resp.Duplicate {
		t.Fatalf("msg_twice answered %d and %d %+v, want 202 and 200 duplicate", first.code, second.code, second.resp)
	}
	if n := e.stored(t); n != 2 {
		t.Fatalf("WEBHOOKS holds %d messages, want 2", n)
	}
	if publishes, messages := batches(t, e.reg); publishes != 1 || messages != 2 || fallbacks(t, e.reg) != 0 {
		t.Fatalf("%d publishes of %v messages, %v fallbacks; want one batch of 2 accepted as is", publishes, messages, fallbacks(t, e.reg))
	}
}

func TestGroupCommit_aBatchThatCannotBePersistedIs503ForEachDelivery(t *testing.T) {
	t.Parallel()
	e := setup(t)
	release := e.g.HoldCommits()
	ids := []string{"msg_lost_1", "msg_lost_2", "msg_lost_3", "msg_lost_4"}
	out := make([]reply, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() { out[i] = postIDX(e.url, id) })
	}
	natstest.Eventually(t, 10*time.Second, "the deliveries waiting for the batch", func() bool { return e.g.QueuedCommits() == len(ids) })
	// Gone at once, rather than after a timeout: the batch itself fails.
	if err := e.js.DeleteStream(natstest.Context(t, 10*time.Second), bus.StreamWebhooks); err != nil {
		t.Fatal(err)
	}
	release()
	wg.Wait()
	for _, r := range out {
		if r.err != nil || r.code != http.StatusServiceUnavailable {
			t.Errorf("%s: %d %+v %v, want 503", r.id, r.code, r.resp, r.err)
		}
	}
}

// JetStream stops while webhooks pour in: whatever was answered 2xx is
// stored, and found there once the server is back on the same storage.
func TestGroupCommit_stoppingJetStreamUnderLoadAnswers2xxOnlyForWhatIsStored(t *testing.T) {
	t.Parallel()
	stopJetStreamUnderLoad(t, setup(t))
}

// stopJetStreamUnderLoad posts webhooks from 16 clients, stops JetStream,
// and checks that each webhook answered 2xx is stored.
func stopJetStreamUnderLoad(t *testing.T, e *env) {
	t.Helper()
	const clients = 16
	var (
		accepted, refused atomic.Int64
		stop              atomic.Bool
		mu                sync.Mutex
		answered2xx       []string
		wg                sync.WaitGroup
	)
	for c := range clients {
		wg.Go(func() {
			for i := 0; !stop.Load() && i < 100_000; i++ {
				r := postIDX(e.url, fmt.Sprintf("msg_load_%02d_%05d", c, i))
				switch {
				case r.err != nil:
					t.Errorf("%s: %v", r.id, r.err)
					return
				case r.code == http.StatusAccepted || r.code == http.StatusOK:
					accepted.Add(1)
					mu.Lock()
					answered2xx = append(answered2xx, r.id)
					mu.Unlock()
				case r.code == http.StatusServiceUnavailable:
					refused.Add(1)
				default:
					t.Errorf("%s: %d %+v", r.id, r.code, r.resp)
					return
				}
			}
		})
	}
	natstest.Eventually(t, 60*time.Second, "webhooks accepted under load", func() bool { return accepted.Load() >= 300 })
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
	natstest.Eventually(t, 60*time.Second, "503s once JetStream is gone", func() bool { return refused.Load() >= clients })
	stop.Store(true)
	wg.Wait()
	if publishes, messages := batches(t, e.reg); messages <= float64(publishes) {
		t.Logf("no batch of more than one message formed (%d publishes of %v messages)", publishes, messages)
	}

	s := natstest.StartAt(t, e.srv.StoreDir, -1)
	_, js := natstest.Connect(t, s)
	stored := map[string]bool{}
	for _, m := range natstest.All(t, js, bus.StreamWebhooks, ">") {
		stored[m.Headers().Get(bus.HeaderMsgID)] = true
	}
	for _, id := range answered2xx {
		if !stored[gateway.MsgID("idx", id)] {
			t.Errorf("%s was answered 2xx but is not stored", id)
		}
	}
	t.Logf("%d answered 2xx, %d answered 503, %d stored", len(answered2xx), refused.Load(), len(stored))
}

func TestConfigFromEnv_groupCommit(t *testing.T) {
	t.Parallel()
	cfg, err := gateway.ConfigFromEnv([]string{"GATEWAY_IDX_SECRETS=" + secret})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.GroupCommit || cfg.GroupCommitMaxMsgs != gateway.MaxGroupCommitMsgs || cfg.GroupCommitMaxBytes != gateway.DefaultGroupCommitMaxBytes {
		t.Fatalf("group commit defaults = %v, %d, %d", cfg.GroupCommit, cfg.GroupCommitMaxMsgs, cfg.GroupCommitMaxBytes)
	}
	cfg, err = gateway.ConfigFromEnv([]string{"GATEWAY_IDX_SECRETS=" + secret, "GATEWAY_GROUP_COMMIT=false"})
	if err != nil || cfg.GroupCommit {
		t.Fatalf("GATEWAY_GROUP_COMMIT=false: %v, %v", cfg.GroupCommit, err)
	}
	for _, bad := range []string{"GATEWAY_GROUP_COMMIT_MAX_MSGS=1001", "GATEWAY_GROUP_COMMIT_MAX_MSGS=-1", "GATEWAY_GROUP_COMMIT_MAX_BYTES=-1"} {
		if _, err := gateway.ConfigFromEnv([]string{"GATEWAY_IDX_SECRETS=" + secret, bad}); err == nil {
			t.Errorf("%s: want an error", bad)
		}
	}
}

func TestGroupCommit_offPublishesEachDeliveryAlone(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.GroupCommit = false
	e := setupWith(t, cfg, testTopology())
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			if r := postIDX(e.url, fmt.Sprintf("msg_off_%d", i)); r.code != http.StatusAccepted {
				t.Errorf("%s: %d %v", r.id, r.code, r.err)
			}
		})
	}
	wg.Wait()
	if n := e.stored(t); n != 8 {
		t.Fatalf("WEBHOOKS holds %d messages, want 8", n)
	}
	if mfs := gather(t, e.reg, "brokerflow_gateway_commit_batch_size"); len(mfs) != 0 {
		t.Fatalf("group commit off, yet batch sizes are reported")
	}
}

// The gateway's own NATS user, with only its declared subjects, may
// publish an atomic batch: its messages go to webhook.received.* and the
// commit's ack to its own inbox.
func TestGroupCommit_asTheGatewaysOwnNATSUser(t *testing.T) {
	t.Parallel()
	s, creds := natstest.StartSecured(t)
	_, ojs := natstest.ConnectAs(t, s, creds, bus.UserOperator)
	natstest.Apply(t, ojs, testTopology())
	nc, _ := natstest.ConnectAs(t, s, creds, bus.ServiceGateway)
	reg := prometheus.NewRegistry()
	g, err := gateway.New(testConfig(), service.Deps{NATS: nc, Registerer: reg, Gatherer: reg})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(g.Handler())
	t.Cleanup(hs.Close)
	e := &env{srv: s, js: ojs, url: hs.URL, g: g, reg: reg}
	for _, r := range postHeld(t, e, "msg_user_1", "msg_user_2", "msg_user_3") {
		if r.code != http.StatusAccepted {
			t.Errorf("%s: %d %+v", r.id, r.code, r.resp)
		}
	}
	if publishes, messages := batches(t, reg); publishes != 1 || messages != 3 {
		t.Fatalf("%d publishes of %v messages, want one batch of 3", publishes, messages)
	}
	if n := e.stored(t); n != 3 {
		t.Fatalf("WEBHOOKS holds %d messages, want 3", n)
	}
}
