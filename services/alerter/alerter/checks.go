package alerter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/service"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

// The checks of the bus, run every Tick. Each alerts once when it starts
// failing (PagerDuty: a trigger) and once when it passes again (a resolve).
const (
	CheckStuck  = "consumer_stuck"
	CheckFull   = "stream_full"
	CheckSilent = "source_silent"
	CheckPoll   = "poll_failing"
)

// pollFailuresToAlert is the fewest failed polls in a row that alert: a
// poller whose interval is longer than PollFailingAfter is retried once
// before a person is told.
const pollFailuresToAlert = 2

// checkState is a firing check, in the alerts bucket.
type checkState struct {
	Since time.Time `json:"since"`
	Alert Alert     `json:"alert"`
}

// finding is one check's verdict on one subject.
type finding struct {
	check, subject string
	firing         bool
	title, reason  string
	service        string
	source         string
}

// check runs every check and alerts on what changed.
func (a *Alerter) check(ctx context.Context) error {
	var found []finding
	var errs []error
	if a.cfg.StuckAfter > 0 {
		f, err := a.checkStuck(ctx)
		found, errs = append(found, f...), append(errs, err)
	}
	if a.cfg.StreamFullRatio > 0 {
		f, err := a.checkFull(ctx)
		found, errs = append(found, f...), append(errs, err)
	}
	if len(a.silent) > 0 {
		f, err := a.checkSilent(ctx)
		found, errs = append(found, f...), append(errs, err)
	}
	if a.cfg.PollFailingAfter > 0 {
		f, err := a.checkPolls(ctx)
		found, errs = append(found, f...), append(errs, err)
	}
	for _, f := range found {
		errs = append(errs, a.settleCheck(ctx, f))
	}
	return errors.Join(errs...)
}

// settleCheck alerts when f starts or stops firing.
func (a *Alerter) settleCheck(ctx context.Context, f finding) error {
	kv, err := a.bucket(ctx)
	if err != nil {
		return err
	}
	key := "check." + keySafe(f.check) + "." + keySafe(f.subject)
	st, err := readJSON[checkState](ctx, kv, key)
	if err != nil {
		return err
	}
	switch {
	case f.firing && st == nil:
		if !a.leading(ctx) {
			return nil
		}
		now := a.now()
		al := &Alert{
			Kind: opsv1.AlertKind_ALERT_KIND_CHECK, Group: "check/" + f.check + "/" + keySafe(f.subject),
			Title: f.title, Reason: f.reason, Service: f.service, Source: f.source, ReasonCode: "check." + f.check, At: now,
		}
		al.ID = al.Group + "/" + now.UTC().Format("20060102T150405Z")
		// Recorded before it is sent, so that a crash repeats the same id.
		if err := putJSON(ctx, kv, key, checkState{Since: now, Alert: *al}); err != nil {
			return err
		}
		st = &checkState{Since: now, Alert: *al}
		fallthrough
	case f.firing && st != nil:
		if _, err := kv.Get(ctx, "sent."+keySafe(st.Alert.ID)+".done"); err == nil || !a.leading(ctx) {
			return nil
		}
		reached, err := a.deliver(ctx, kv, &st.Alert)
		if err != nil {
			return err
		}
		if _, err := kv.Put(ctx, "sent."+keySafe(st.Alert.ID)+".done", nil); err != nil {
			return err
		}
		return a.announce(ctx, &st.Alert, reached)
	case !f.firing && st != nil:
		r := st.Alert
		r.Kind, r.ID, r.At = opsv1.AlertKind_ALERT_KIND_RESOLVED, st.Alert.ID+"/resolved", a.now()
		r.Title = "Resolved: " + st.Alert.Title
		if !a.leading(ctx) {
			return nil
		}
		reached, err := a.deliver(ctx, kv, &r)
		if err != nil {
			return err
		}
		if err := kv.Delete(ctx, key); err != nil {
			return err
		}
		return a.announce(ctx, &r, reached)
	}
	return nil
}

// checkStuck finds consumers whose oldest unprocessed message is older than StuckAfter.
func (a *Alerter) checkStuck(ctx context.Context) ([]finding, error) {
	js := a.w.JetStream()
	var out []finding
	var errs []error
	for _, spec := range bus.AllConsumers() {
		c, err := js.Consumer(ctx, spec.Stream, spec.Durable)
		if err != nil {
			errs = append(errs, fmt.Errorf("consumer %s: %w", spec.Durable, err))
			continue
		}
		info, err := c.Info(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("consumer %s: %w", spec.Durable, err))
			continue
		}
		f := finding{check: CheckStuck, subject: spec.Durable, service: spec.Service}
		if info.NumPending+uint64(info.NumAckPending) > 0 {
			oldest, err := oldestUnprocessed(ctx, js, spec, info.AckFloor.Stream+1)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if age := a.now().Sub(oldest); !oldest.IsZero() && age > a.cfg.StuckAfter {
				f.firing = true
				f.title = fmt.Sprintf("Consumer %s is stuck: its oldest unprocessed message is %s old", spec.Durable, roughly(age))
				f.reason = fmt.Sprintf("%s of %s has %d messages waiting and %d in flight; the oldest arrived %s ago (threshold %s).",
					spec.Durable, spec.Stream, info.NumPending, info.NumAckPending, roughly(age), a.cfg.StuckAfter)
			}
		}
		out = append(out, f)
	}
	return out, errors.Join(errs...)
}

// oldestUnprocessed is the time of the first message from seq on that spec's filters match.
func oldestUnprocessed(ctx context.Context, js jetstream.JetStream, spec bus.ConsumerSpec, seq uint64) (time.Time, error) {
	s, err := js.Stream(ctx, spec.Stream)
	if err != nil {
		return time.Time{}, err
	}
	var times []time.Time
	for _, filter := range spec.FilterSubjects {
		m, err := s.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return time.Time{}, fmt.Errorf("oldest message of %s: %w", spec.Durable, err)
		}
		times = append(times, m.Time)
	}
	if len(times) == 0 {
		return time.Time{}, nil
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	return times[0], nil
}

// checkFull finds streams at StreamFullRatio of their limits or more.
func (a *Alerter) checkFull(ctx context.Context) ([]finding, error) {
	var out []finding
	var errs []error
	for _, spec := range bus.Streams {
		s, err := a.w.JetStream().Stream(ctx, spec.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("stream %s: %w", spec.Name, err))
			continue
		}
		ratio := bus.FullRatio(s.CachedInfo())
		f := finding{check: CheckFull, subject: spec.Name}
		if ratio >= a.cfg.StreamFullRatio {
			f.firing = true
			f.title = fmt.Sprintf("Stream %s is %.0f%% full", spec.Name, ratio*100)
			what := "it drops its oldest messages at its limit"
			if spec.KeepUnprocessed {
				what = "at its limit it refuses new messages (the gateway answers 503)"
			}
			f.reason = fmt.Sprintf("%s holds %d messages, %d bytes, against its limits; %s.", spec.Name, s.CachedInfo().State.Msgs, s.CachedInfo().State.Bytes, what)
		}
		out = append(out, f)
	}
	return out, errors.Join(errs...)
}

// checkSilent finds sources that sent no lead webhook for their configured time.
func (a *Alerter) checkSilent(ctx context.Context) ([]finding, error) {
	s, err := a.w.JetStream().Stream(ctx, bus.StreamWebhooks)
	if err != nil {
		return nil, err
	}
	var out []finding
	var errs []error
	for source, after := range a.silent {
		last := a.started
		m, err := s.GetLastMsgForSubject(ctx, "webhook.received.lead."+source)
		switch {
		case err == nil:
			last = m.Time
		case !errors.Is(err, jetstream.ErrMsgNotFound):
			errs = append(errs, fmt.Errorf("last lead of %s: %w", source, err))
			continue
		}
		f := finding{check: CheckSilent, subject: source, source: source, service: bus.ServiceGateway}
		if silence := a.now().Sub(last); silence >= after {
			f.firing = true
			f.title = fmt.Sprintf("No lead from source %s for %s", source, roughly(silence))
			f.reason = fmt.Sprintf("The last lead webhook from %s arrived %s ago (threshold %s). A vendor whose webhook broke is silent.", source, roughly(silence), after)
		}
		out = append(out, f)
	}
	return out, errors.Join(errs...)
}

// checkPolls finds pollers whose every poll has failed for PollFailingAfter
// or longer, at least pollFailuresToAlert times in a row, from the health
// records the pollers keep in the cursors bucket.
func (a *Alerter) checkPolls(ctx context.Context) ([]finding, error) {
	records, err := service.ReadPollHealth(ctx, a.w.JetStream())
	out := make([]finding, 0, len(records))
	for key, h := range records {
		f := finding{check: CheckPoll, subject: key, service: h.Service}
		if failing := a.now().Sub(h.FailingSince); h.Failures >= pollFailuresToAlert && failing >= a.cfg.PollFailingAfter {
			f.firing = true
			f.title = fmt.Sprintf("%s: the poll of %s has failed for %s", h.Service, h.Polled, roughly(failing))
			last := "none recorded"
			if !h.LastSuccess.IsZero() {
				last = h.LastSuccess.UTC().Format(time.RFC3339)
			}
			f.reason = fmt.Sprintf("%s polls %s every %s; every poll since %s has failed (%d in a row, threshold %s). Last success: %s. Last error: %s",
				h.Service, h.Polled, h.Interval, h.FailingSince.UTC().Format(time.RFC3339), h.Failures, a.cfg.PollFailingAfter, last, h.LastError)
		}
		out = append(out, f)
	}
	return out, err
}

// roughly is d for a person: to the second, or to 100 ms under a minute.
func roughly(d time.Duration) time.Duration {
	if d < time.Minute {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Second)
}
