package bench

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
)

// rawMessages makes the messages the gateway would store for the bench's
// lead: the same WebhookReceived, the same contract headers, distinct ids.
type rawMessages struct {
	pub   *bus.Publisher
	start string
	seq   atomic.Int64
}

func (m *rawMessages) next(ctx context.Context) (*nats.Msg, error) {
	id := "msg_raw_" + strconv.FormatInt(m.seq.Add(1), 10) + "_" + m.start
	event := &webhookv1.WebhookReceived{
		Body: []byte(`{"id":"` + id + `",` + leadBody[1:]), Source: "idx", Kind: webhookv1.Kind_KIND_LEAD, DeliveryId: id,
		ReceivedAt: timestamppb.Now(), Method: "POST", Path: "/webhooks/idx", ContentType: "application/json",
	}
	out, err := m.pub.Prepare(ctx, "webhook.received.lead.idx", "webhook:idx:"+id, event)
	if err != nil {
		return nil, err
	}
	out.Done(false, nil)
	return out.Msg, nil
}

// measureSyncPublish is JetStream alone, without HTTP: o.Concurrency
// publishers, each waiting for the ack of its message before the next, as
// the gateway without group commit does for each request.
func measureSyncPublish(ctx context.Context, policy app.SyncPolicy) (*meter, error) {
	_, js, cleanup, err := startJetStream(ctx, policy)
	if err != nil {
		return nil, err
	}
	msgs := &rawMessages{pub: bus.NewPublisher(js, bus.ServiceGateway, nil), start: strconv.FormatInt(time.Now().UnixNano(), 36)}
	return &meter{close: cleanup, slice: func(ctx context.Context, o Options) (result, error) {
		return syncPublishes(ctx, o, js, msgs)
	}}, nil
}

// syncPublishes is one slice of measureSyncPublish.
func syncPublishes(ctx context.Context, o Options, js jetstream.JetStream, msgs *rawMessages) (result, error) {
	var (
		ok, failed atomic.Int64
		wg         sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(o.Duration)
	for range o.Concurrency {
		wg.Go(func() {
			for time.Now().Before(deadline) && ctx.Err() == nil {
				msg, err := msgs.next(ctx)
				if err == nil {
					_, err = js.PublishMsg(ctx, msg)
				}
				if err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	return result{ok: ok.Load(), errors: failed.Load(), elapsed: time.Since(start)}, ctx.Err()
}

// measureAtomicBatch is JetStream alone with as many messages in flight as
// there are clients: one publisher storing atomic batches of o.Concurrency
// messages back to back, the most a group commit of that many requests can
// reach.
func measureAtomicBatch(ctx context.Context, policy app.SyncPolicy) (*meter, error) {
	_, js, cleanup, err := startJetStream(ctx, policy)
	if err != nil {
		return nil, err
	}
	msgs := &rawMessages{pub: bus.NewPublisher(js, bus.ServiceGateway, nil), start: strconv.FormatInt(time.Now().UnixNano(), 36)}
	return &meter{close: cleanup, slice: func(ctx context.Context, o Options) (result, error) {
		return atomicBatches(ctx, o, js, msgs)
	}}, nil
}

// measureAtomicBatchInFlight is measureAtomicBatch with inFlight publishers
// at once, each storing batches of o.Concurrency/inFlight messages: as
// many messages in flight as there are clients, in as many batches as the
// gateway may commit at once.
func measureAtomicBatchInFlight(ctx context.Context, policy app.SyncPolicy, inFlight int) (*meter, error) {
	_, js, cleanup, err := startJetStream(ctx, policy)
	if err != nil {
		return nil, err
	}
	msgs := &rawMessages{pub: bus.NewPublisher(js, bus.ServiceGateway, nil), start: strconv.FormatInt(time.Now().UnixNano(), 36)}
	return &meter{close: cleanup, slice: func(ctx context.Context, o Options) (result, error) {
		each := o
		each.Concurrency = max(o.Concurrency/inFlight, 1)
		var (
			mu    sync.Mutex
			total result
			first error
			wg    sync.WaitGroup
		)
		for range inFlight {
			wg.Go(func() {
				r, err := atomicBatches(ctx, each, js, msgs)
				mu.Lock()
				defer mu.Unlock()
				total.ok, total.errors = total.ok+r.ok, total.errors+r.errors
				total.elapsed = max(total.elapsed, r.elapsed)
				if first == nil {
					first = err
				}
			})
		}
		wg.Wait()
		return total, first
	}}, nil
}

// atomicBatches is one slice of measureAtomicBatch.
func atomicBatches(ctx context.Context, o Options, js jetstream.JetStream, msgs *rawMessages) (_ result, err error) {
	var ok, failed int64
	start := time.Now()
	deadline := start.Add(o.Duration)
	batch := make([]*nats.Msg, o.Concurrency)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for i := range batch {
			if batch[i], err = msgs.next(ctx); err != nil {
				return result{}, err
			}
		}
		if _, err := jetstreamext.PublishMsgBatch(ctx, js, batch, jetstreamext.BatchFlowControl{}); err != nil {
			failed += int64(len(batch))
			continue
		}
		ok += int64(len(batch))
	}
	return result{ok: ok, errors: failed, elapsed: time.Since(start)}, ctx.Err()
}

// batchMean is the mean size of the gateway's group commit publishes, from
// its metrics on reg; 0 when it made none (group commit off).
func batchMean(reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != "brokerflow_gateway_commit_batch_size" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h.GetSampleCount() > 0 {
				return h.GetSampleSum() / float64(h.GetSampleCount())
			}
		}
	}
	return 0
}

// meter is a measurement whose system is started once and measured in
// slices, so that several can be measured in turns, each slice of one close
// in time to a slice of the others: on a shared machine whose load changes
// from one second to the next, their ratio is then a fair one.
type meter struct {
	slice func(ctx context.Context, o Options) (result, error)
	close func()
	total result
}

// inTurns measures each meter for o.Duration in all, in rounds turns of
// o.Duration/rounds each, one meter after the other.
func inTurns(ctx context.Context, o Options, rounds int, meters ...*meter) error {
	turn := o
	turn.Duration = o.Duration / time.Duration(rounds)
	for range rounds {
		for _, m := range meters {
			r, err := m.slice(ctx, turn)
			if err != nil {
				return err
			}
			m.total.ok += r.ok
			m.total.errors += r.errors
			m.total.elapsed += r.elapsed
			m.total.latencies = append(m.total.latencies, r.latencies...)
		}
	}
	return nil
}
