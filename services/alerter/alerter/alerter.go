// Package alerter tells a person when something failed: every failure
// record (ops.failure.>), every dead-letter advisory without one (a handler
// that crashed), rejected leads per source, and the checks of the bus
// (a stuck consumer, a stream nearly full, a silent source) become alerts,
// grouped and throttled, routed to Slack, PagerDuty or a signed webhook.
// A redrive that succeeded (ops.redrive.done.>) or a failure resolved by
// hand (ops.resolved.>) resolves its group once every failure of it was
// redriven or resolved.
package alerter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/service"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

// CrashAfterSend is the alerter's crash point, one per channel: an alert
// reached the channel, and the alerts bucket does not say so yet. A
// redelivery sends it to that channel again, with the same id.
func CrashAfterSend(channel string) bus.CrashPoint {
	return bus.CrashPoint("alerter.after_send." + channel)
}

// Reason codes the alerter gives the failures it learns of from advisories.
const (
	CodeMaxDeliveries = "consumer.max_deliveries"
	CodeTerminated    = "consumer.terminated"
	CodeRejected      = "lead.rejected"
)

// Alerter is the alerter service.
type Alerter struct {
	w        *service.Worker
	cfg      Config
	channels []Channel
	now      func() time.Time
	silent   map[string]time.Duration
	started  time.Time
	// lease is this replica's hold on the tick's work, made at the first
	// tick (only the tick's goroutine uses it).
	lease *service.Lease
	own   *prometheus.CounterVec
	log   *slog.Logger

	mu sync.Mutex
	kv jetstream.KeyValue
}

// New returns the alerter of cfg.
func New(cfg Config, deps service.Deps) (*Alerter, error) {
	channels, err := Channels(cfg)
	if err != nil {
		return nil, err
	}
	silent, err := cfg.silentSources()
	if err != nil {
		return nil, err
	}
	// One message at a time: a group's first alert and its count are
	// decided in order, and a channel's pace is not outrun.
	w, err := service.NewWorker(service.WorkerConfig{
		Service:         bus.ServiceAlerter,
		Consume:         cfg.Bus,
		Concurrency:     1,
		OpsAddr:         cfg.OpsAddr,
		ShutdownTimeout: cfg.ShutdownTimeout,
	}, deps)
	if err != nil {
		return nil, err
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Alerter{w: w, cfg: cfg, channels: channels, now: time.Now, silent: silent, started: time.Now(), log: log.With("service", bus.ServiceAlerter)}
	a.own = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "brokerflow_alerter_own_failures_total",
		Help:        "The alerter's own failures and terminated deliveries, which it logs and never alerts on.",
		ConstLabels: prometheus.Labels{"service": bus.ServiceAlerter},
	}, []string{"reason_code"})
	if deps.Registerer != nil {
		if err := deps.Registerer.Register(a.own); err != nil {
			return nil, err
		}
	}
	w.Handle(bus.AlerterFailures, a.HandleFailure)
	w.Handle(bus.AlerterAdvisories, a.HandleAdvisory)
	w.Handle(bus.AlerterRedrives, a.HandleRedriveDone)
	w.Handle(bus.AlerterRejected, a.HandleRejected)
	w.Handle(bus.AlerterResolved, a.HandleResolved)
	w.Go(a.tick)
	return a, nil
}

// Run consumes until ctx is done, then drains.
func (a *Alerter) Run(ctx context.Context) error { return a.w.Run(ctx) }

// Ready reports whether the alerter can reach NATS.
func (a *Alerter) Ready(ctx context.Context) error { return a.w.Ready(ctx) }

func (a *Alerter) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.kv != nil {
		return a.kv, nil
	}
	kv, err := a.w.JetStream().KeyValue(ctx, bus.AlertsBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bus.AlertsBucket, err)
	}
	a.kv = kv
	return kv, nil
}

// HandleFailure alerts on a failure record, once per failed message.
func (a *Alerter) HandleFailure(ctx context.Context, m *bus.Message) error {
	var f opsv1.Failure
	if err := proto.Unmarshal(m.Data, &f); err != nil {
		return bus.Undecodable("decode Failure at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	if f.GetService() == bus.ServiceAlerter {
		// Never back into itself: logged and counted only.
		a.own.WithLabelValues(f.GetReasonCode()).Inc()
		logging.FromContext(ctx).Error("the alerter failed to deliver an alert; it is in its failure record, for a redrive",
			"reason_code", f.GetReasonCode(), "reason", f.GetReason(), "target_stream", f.GetMessage().GetStream(), "target_seq", f.GetMessage().GetSequence())
		return nil
	}
	ref := f.GetMessage()
	al := &Alert{
		Kind: opsv1.AlertKind_ALERT_KIND_FAILURE, Service: f.GetService(), Consumer: f.GetConsumer(),
		ReasonCode: orDefault(f.GetReasonCode(), bus.CodePermanent), Reason: f.GetReason(),
		Stream: ref.GetStream(), Sequence: ref.GetSequence(), Subject: ref.GetSubject(), EventType: f.GetEventType(),
		Attempts: int(f.GetAttempts()), Redrive: RedriveCommand(f.GetService(), ref.GetStream(), ref.GetSequence()),
	}
	return a.failed(ctx, al)
}

// advisory is what JetStream publishes on MAX_DELIVERIES and MSG_TERMINATED.
type advisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries int    `json:"deliveries"`
	Reason     string `json:"reason"`
}

// errWaitForRecord delays an advisory until its failure record had its chance.
var errWaitForRecord = errors.New("advisory: waiting for the failure record")

// HandleAdvisory alerts on a message that JetStream gave up on, unless a
// failure record of it was alerted on: a handler that crashed on its last
// delivery writes none. It waits the grace period, and for the failure
// consumer to catch up, before it decides.
func (a *Alerter) HandleAdvisory(ctx context.Context, m *bus.Message) error {
	var adv advisory
	if err := json.Unmarshal(m.Data, &adv); err != nil || adv.Stream == "" || adv.StreamSeq == 0 {
		return bus.Undecodable("decode advisory at %s/%d: %v", m.Stream, m.Sequence, err)
	}
	if strings.HasPrefix(adv.Consumer, bus.ServiceAlerter+"-") {
		a.own.WithLabelValues(CodeMaxDeliveries).Inc()
		logging.FromContext(ctx).Error("the alerter gave up on a message of its own", "consumer", adv.Consumer, "target_stream", adv.Stream, "target_seq", adv.StreamSeq)
		return nil
	}
	if done, err := a.awaitRecord(ctx, m, msgKey(adv.Stream, adv.StreamSeq)); err != nil || done {
		return err
	}
	svc := adv.Consumer
	for _, c := range bus.AllConsumers() {
		if c.Durable == adv.Consumer {
			svc = c.Service
		}
	}
	al := &Alert{
		Kind: opsv1.AlertKind_ALERT_KIND_FAILURE, Service: svc, Consumer: adv.Consumer,
		Stream: adv.Stream, Sequence: adv.StreamSeq, Attempts: adv.Deliveries,
		Redrive: RedriveCommand(svc, adv.Stream, adv.StreamSeq),
	}
	if strings.Contains(m.Subject, ".MAX_DELIVERIES.") {
		al.ReasonCode = CodeMaxDeliveries
		al.Reason = fmt.Sprintf("JetStream stopped delivering the message after %d deliveries, and no failure record was written: the handler crashed, hung past the ack wait, or its process was killed each time.", adv.Deliveries)
	} else {
		al.ReasonCode = CodeTerminated
		al.Reason = "The message was terminated without a failure record: " + logging.RedactString(adv.Reason)
	}
	return a.failed(ctx, al)
}

// maxAwait bounds one delivery's wait for a failure record; past it the
// advisory is retried later (a delivery of its own), and on its last
// delivery it alerts whatever it found.
const maxAwait = time.Minute

// awaitRecord waits, inside the delivery (the consume loop keeps it alive),
// until the grace period since the advisory has passed and the failure
// consumer has nothing left to handle. done says a record of the message
// was alerted on or counted: the advisory adds nothing.
func (a *Alerter) awaitRecord(ctx context.Context, m *bus.Message, key string) (done bool, err error) {
	kv, err := a.bucket(ctx)
	if err != nil {
		return false, err
	}
	start := a.now()
	for {
		if e, err := readJSON[msgEntry](ctx, kv, key); err != nil || e != nil {
			return e != nil, err
		}
		if m.LastAttempt {
			return false, nil
		}
		if a.now().Sub(m.Time) >= a.cfg.AdvisoryGrace {
			behind, err := a.failuresBehind(ctx)
			if err != nil {
				return false, err
			}
			if !behind {
				return false, nil
			}
		}
		if a.now().Sub(start) > maxAwait {
			return false, bus.RetryAfter(errWaitForRecord, time.Second)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// failuresBehind reports whether the failure consumer has records still to handle.
func (a *Alerter) failuresBehind(ctx context.Context) (bool, error) {
	c, err := a.w.JetStream().Consumer(ctx, bus.AlerterFailures.Stream, bus.AlerterFailures.Durable)
	if err != nil {
		return false, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return false, err
	}
	// NumRedelivered: a record whose delivery crashed, waiting for its redelivery.
	return info.NumPending > 0 || info.NumAckPending > 0 || info.NumRedelivered > 0, nil
}

// HandleRejected alerts on rejected leads, grouped per source.
func (a *Alerter) HandleRejected(ctx context.Context, m *bus.Message) error {
	var r leadv1.LeadRejected
	if err := proto.Unmarshal(m.Data, &r); err != nil {
		return bus.Undecodable("decode LeadRejected at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	al := &Alert{
		Kind: opsv1.AlertKind_ALERT_KIND_REJECTED, Service: bus.ServiceNormalizer, Source: r.GetLeadSource(),
		ReasonCode: CodeRejected, Reason: logging.RedactString(r.GetReason()),
		Stream: m.Stream, Sequence: m.Sequence,
	}
	if w := r.GetWebhook(); w.GetSequence() > 0 {
		al.Redrive = fmt.Sprintf("the webhook is kept at %s/%d: fix the source's mapping, then replay it", w.GetStream(), w.GetSequence())
	}
	return a.failed(ctx, al)
}

// msgEntry is the alerts bucket's record of one failed message.
type msgEntry struct {
	Group    string `json:"group"`
	Resolved bool   `json:"resolved,omitempty"`
	// Round counts the times the message was redriven successfully; a
	// failure after one is a new alert.
	Round int `json:"round,omitempty"`
}

// group is one alert group's state: its burst's first alert, the failures
// counted since the last alert, the failures not yet redriven.
type group struct {
	Group      string    `json:"group"`
	First      string    `json:"first"`
	FirstSent  bool      `json:"first_sent"`
	LastSentAt time.Time `json:"last_sent_at"`
	LastSeen   time.Time `json:"last_seen"`
	// Pending are the failures counted since the last alert, for the summary.
	Pending []string `json:"pending,omitempty"`
	// Open are the failures not yet redriven successfully.
	Open []string `json:"open,omitempty"`
	// Incident says a trigger went to PagerDuty and no resolve since.
	Incident bool `json:"incident,omitempty"`
	// Resolving is when the group's resolve was decided; zero once it is
	// recorded as sent. A failure of the group that comes meanwhile waits
	// for it (up to resolveHold), and then opens a new incident.
	Resolving time.Time `json:"resolving,omitempty"`
	// Template is the first alert, for the summaries and the resolve;
	// Kind is its kind, which its JSON leaves out.
	Template Alert           `json:"template"`
	Kind     opsv1.AlertKind `json:"kind"`
}

// template is the group's first alert, its kind restored.
func (g *group) template() Alert {
	t := g.Template
	t.Kind = g.Kind
	return t
}

// resolveHold bounds how long a failure waits for its group's resolve to
// be recorded (a crashed resolve is redelivered within the ack wait);
// resolvePoll is how often it looks.
const (
	resolveHold = 2 * time.Minute
	resolvePoll = 50 * time.Millisecond
)

// failed admits one failed message into its group: the first of a burst is
// sent at once, the others are counted for the group's summary. The
// message is acked only once its alert was delivered, or its count kept.
func (a *Alerter) failed(ctx context.Context, al *Alert) error {
	kv, err := a.bucket(ctx)
	if err != nil {
		return err
	}
	key := msgKey(al.Stream, al.Sequence)
	e, err := readJSON[msgEntry](ctx, kv, key)
	if err != nil {
		return err
	}
	if e != nil && !e.Resolved {
		return nil // alerted or counted already
	}
	// A message redriven successfully that fails again is a new failure:
	// its round tells its alert from the first one's.
	round, tag := 0, key
	if e != nil {
		round = e.Round
		tag = fmt.Sprintf("%s-r%d", key, round)
	}
	switch al.Kind {
	case opsv1.AlertKind_ALERT_KIND_REJECTED:
		al.Group = "rejected/" + keySafe(al.Source)
		al.Title = fmt.Sprintf("Lead rejected from source %s", al.Source)
	default:
		al.Group = "failure/" + keySafe(al.Service) + "/" + keySafe(al.ReasonCode)
		al.Title = fmt.Sprintf("%s failed: %s", al.Service, al.ReasonCode)
	}
	al.ID = al.Group + "/" + tag
	al.At = a.now()
	if err := describe(ctx, a.w.JetStream(), al, a.cfg.PII); err != nil {
		return err
	}
	gkey := "group." + al.Group
	for {
		g, rev, err := readJSONRev[group](ctx, kv, gkey)
		if err != nil {
			return err
		}
		now := a.now()
		if g != nil && !g.Resolving.IsZero() && now.Sub(g.Resolving) < resolveHold {
			// PagerDuty may have the group's resolve already: counted into
			// the group, this failure would page no one.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(resolvePoll):
			}
			continue
		}
		if g == nil {
			g = &group{Group: al.Group}
			if err := a.index(ctx, kv, gkey); err != nil {
				return err
			}
		}
		first := g.First == tag && !g.FirstSent
		resolved := len(g.Open) == 0 && !g.Incident // every failure of it redriven
		if !first && g.First != tag && len(g.Pending) == 0 && (resolved || g.LastSeen.IsZero() || now.Sub(g.LastSeen) >= a.cfg.QuietPeriod) {
			// A new burst: this failure is its first alert.
			g.First, g.FirstSent, g.Template, g.Kind = tag, false, *al, al.Kind
			first = true
		}
		if !first && !slices.Contains(g.Pending, tag) && g.First != tag {
			g.Pending = append(g.Pending, tag)
		}
		if !slices.Contains(g.Open, key) {
			g.Open = append(g.Open, key)
		}
		g.LastSeen = now
		if err := writeJSON(ctx, kv, gkey, g, rev); errors.Is(err, errConflict) {
			continue
		} else if err != nil {
			return err
		}
		if first {
			t := g.template()
			return a.sendFirst(ctx, kv, gkey, tag, key, round, &t)
		}
		return putJSON(ctx, kv, key, msgEntry{Group: al.Group, Round: round})
	}
}

// sendFirst delivers a group's first alert, then records it.
func (a *Alerter) sendFirst(ctx context.Context, kv jetstream.KeyValue, gkey, tag, key string, round int, al *Alert) error {
	reached, err := a.deliver(ctx, kv, al)
	if err != nil {
		return err
	}
	if err := a.updateGroup(ctx, kv, gkey, func(g *group) {
		if g.First == tag {
			g.FirstSent = true
		}
		g.LastSentAt = al.At
		g.Incident = g.Incident || slices.Contains(reached, ChannelPagerDuty)
	}); err != nil {
		return err
	}
	if err := putJSON(ctx, kv, key, msgEntry{Group: al.Group, Round: round}); err != nil {
		return err
	}
	return a.announce(ctx, al, reached)
}

// deliver sends al to every channel whose route takes it and that has not
// had it yet; it returns the channels that have it. A channel that fails
// fails the delivery, to be retried; the others are not sent it again.
func (a *Alerter) deliver(ctx context.Context, kv jetstream.KeyValue, al *Alert) ([]string, error) {
	var reached []string
	var errs []error
	for _, ch := range a.channels {
		if !ch.Takes(al) {
			continue
		}
		mark := "sent." + keySafe(al.ID) + "." + ch.Name()
		if _, err := kv.Get(ctx, mark); err == nil {
			reached = append(reached, ch.Name())
			continue
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("read %s: %w", mark, err)
		}
		if err := ch.Send(ctx, al); err != nil {
			errs = append(errs, fmt.Errorf("alert %s to %s: %w", al.ID, ch.Name(), err))
			continue
		}
		bus.Crash(ctx, CrashAfterSend(ch.Name()))
		if _, err := kv.Put(ctx, mark, []byte(a.now().UTC().Format(time.RFC3339Nano))); err != nil {
			return nil, fmt.Errorf("record %s: %w", mark, err)
		}
		reached = append(reached, ch.Name())
	}
	return reached, errors.Join(errs...)
}

// announce publishes ops.alert.sent.
func (a *Alerter) announce(ctx context.Context, al *Alert, reached []string) error {
	ev := &opsv1.AlertSent{
		AlertId: al.ID, Kind: al.Kind, Group: al.Group, Service: al.Service, Consumer: al.Consumer,
		ReasonCode: al.ReasonCode, Count: uint32(max(al.Count, 1)), Channels: reached,
		SentAt: timestamppb.New(al.At), Summary: al.Title,
		Correlation: &commonv1.Correlation{LeadId: al.LeadID, ContactId: al.ContactID, TransactionId: al.TransactionID, Source: al.Source},
	}
	if al.Stream != "" {
		ev.Message = &commonv1.MessageRef{Stream: al.Stream, Sequence: al.Sequence, Subject: al.Subject}
	}
	_, err := a.w.Publisher().Publish(ctx, bus.AlertSentSubject, "alert-sent:"+al.ID, ev)
	return err
}

// HandleRedriveDone takes a redriven message out of its group; once none
// is left, the group is resolved: PagerDuty's incident and a message.
func (a *Alerter) HandleRedriveDone(ctx context.Context, m *bus.Message) error {
	var done opsv1.RedriveDone
	if err := proto.Unmarshal(m.Data, &done); err != nil {
		return bus.Undecodable("decode RedriveDone at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	return a.settle(ctx, done.GetMessage())
}

// HandleResolved takes a failure a person resolved by hand out of its
// group, as a good redrive does.
func (a *Alerter) HandleResolved(ctx context.Context, m *bus.Message) error {
	var r opsv1.FailureResolved
	if err := proto.Unmarshal(m.Data, &r); err != nil {
		return bus.Undecodable("decode FailureResolved at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	return a.settle(ctx, r.GetMessage())
}

// settle takes a failed message out of its group, redriven or resolved by
// hand; once no failure of the group is open, the group is resolved.
func (a *Alerter) settle(ctx context.Context, ref *commonv1.MessageRef) error {
	kv, err := a.bucket(ctx)
	if err != nil {
		return err
	}
	key := msgKey(ref.GetStream(), ref.GetSequence())
	e, err := readJSON[msgEntry](ctx, kv, key)
	if err != nil || e == nil {
		return err // never alerted on: nothing to resolve
	}
	gkey := "group." + e.Group
	if !e.Resolved {
		// The message leaves its group, and is marked resolved, before
		// the resolve is sent: a failure of it that arrives meanwhile is
		// a new round, never taken for the one just resolved.
		if err := a.updateGroup(ctx, kv, gkey, func(g *group) {
			g.Open = slices.DeleteFunc(g.Open, func(k string) bool { return k == key })
		}); err != nil {
			return err
		}
		e.Resolved, e.Round = true, e.Round+1
		if err := putJSON(ctx, kv, key, e); err != nil {
			return err
		}
	}
	// A group with no open failure left and an incident is resolved; a
	// redelivery after a crash here sends the same resolve again.
	var resolve *Alert
	if err := a.updateGroup(ctx, kv, gkey, func(g *group) {
		resolve = nil
		if len(g.Open) == 0 && g.Incident {
			g.Resolving = a.now()
			r := g.template()
			r.Kind, r.ID, r.At = opsv1.AlertKind_ALERT_KIND_RESOLVED, g.Group+"/resolved/"+key, a.now()
			r.Title = "Resolved: " + g.Template.Title + " (every failure redriven or resolved)"
			r.Reason, r.Data, r.Redrive, r.Stream, r.Sequence, r.Subject = "", nil, "", "", 0, ""
			resolve = &r
		}
	}); err != nil || resolve == nil {
		return err
	}
	reached, err := a.deliver(ctx, kv, resolve)
	if err != nil {
		return err
	}
	if err := a.updateGroup(ctx, kv, gkey, func(g *group) {
		if len(g.Open) == 0 {
			g.Incident = false
		}
		g.Resolving = time.Time{}
	}); err != nil {
		return err
	}
	return a.announce(ctx, resolve, reached)
}

// summarize sends the summary of every group whose window has passed with
// failures counted in it.
func (a *Alerter) summarize(ctx context.Context) error {
	kv, err := a.bucket(ctx)
	if err != nil {
		return err
	}
	idx, err := readJSON[[]string](ctx, kv, indexKey)
	if err != nil || idx == nil {
		return err
	}
	var errs []error
	for _, gkey := range *idx {
		g, _, err := readJSONRev[group](ctx, kv, gkey)
		// A first alert that cannot be delivered holds its summary back
		// for a window at most.
		if err != nil || g == nil || len(g.Pending) == 0 || a.now().Sub(g.LastSentAt) < a.cfg.GroupWindow ||
			(!g.FirstSent && a.now().Sub(g.Template.At) < a.cfg.GroupWindow) {
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		s := g.template()
		s.Kind, s.Count, s.At = opsv1.AlertKind_ALERT_KIND_SUMMARY, len(g.Pending), a.now()
		s.ID = g.Group + "/summary/" + g.Pending[0]
		s.Title = fmt.Sprintf("%d more: %s, since the last alert", len(g.Pending), g.Template.Title)
		if g.Kind == opsv1.AlertKind_ALERT_KIND_REJECTED {
			s.Title = fmt.Sprintf("%d more leads rejected from source %s since the last alert", len(g.Pending), s.Source)
		}
		s.Reason = "The first alert of this group told the details; these failed the same way. `brokerflow failures ls --service " + s.Service + "` lists them."
		if g.Kind == opsv1.AlertKind_ALERT_KIND_REJECTED {
			s.Reason = "The first alert of this source told why; these were rejected too. A source whose fields changed makes every lead a rejection."
		}
		s.Data, s.Redrive, s.Stream, s.Sequence, s.Subject, s.LeadID, s.ContactID, s.TransactionID, s.Attempts = nil, "", "", 0, "", "", "", "", 0
		s.Redrives = nil
		if g.Kind == opsv1.AlertKind_ALERT_KIND_FAILURE {
			for _, k := range g.Pending[:min(len(g.Pending), 5)] {
				if stream, seq, ok := parseMsgKey(k); ok {
					s.Redrives = append(s.Redrives, RedriveCommand(s.Service, stream, seq))
				}
			}
		}
		if !a.leading(ctx) {
			break
		}
		reached, err := a.deliver(ctx, kv, &s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		summarized := slices.Clone(g.Pending)
		if err := a.updateGroup(ctx, kv, gkey, func(g *group) {
			g.Pending = slices.DeleteFunc(g.Pending, func(k string) bool { return slices.Contains(summarized, k) })
			// When this summary was due and went out: the next is a window later.
			g.LastSentAt = s.At
		}); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, a.announce(ctx, &s, reached))
	}
	return errors.Join(errs...)
}

// tick sends the summaries and runs the checks, every Tick.
func (a *Alerter) tick(ctx context.Context) error {
	t := time.NewTicker(a.cfg.Tick)
	defer t.Stop()
	defer a.release()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if !a.leading(ctx) {
			continue
		}
		if err := a.summarize(ctx); err != nil && ctx.Err() == nil {
			a.own.WithLabelValues("alerter.summary").Inc()
			a.log.Warn("summaries not sent; retried at the next tick", "err", err)
		}
		if err := a.check(ctx); err != nil && ctx.Err() == nil {
			a.own.WithLabelValues("alerter.check").Inc()
			a.log.Warn("checks failed; retried at the next tick", "err", err)
		}
	}
}
