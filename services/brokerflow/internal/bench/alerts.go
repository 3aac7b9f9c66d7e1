package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// alertWindow is the alerter's group window in this measurement.
const alertWindow = 10 * time.Second

// AlerterOutage is a CRM outage: Follow Up Boss answers 400 to every lead
// of a burst, and each becomes a failure record. It measures how long the
// alerter took, after the last record, to have alerted on or counted every
// failure, and how many messages and PagerDuty triggers it sent for them:
// one alert, then one summary per window.
func AlerterOutage(ctx context.Context, o Options, w io.Writer) error {
	a, stop, err := startSystem(ctx, o, "ALERTER_GROUP_WINDOW="+alertWindow.String(), "ALERTER_TICK=1s")
	if err != nil {
		return err
	}
	defer stop()
	fub := a.Sandbox.FUB()
	fub.InjectFault(sandbox.Fault{Method: http.MethodPost, Path: "/v1/events", Status: http.StatusBadRequest, Count: o.AlertLeads, Body: `{"errorMessage":"Invalid person"}`})
	start := time.Now()
	postBurst(ctx, a, o.AlertLeads, "outage")
	nc, js, err := connectAs(a, bus.UserAnalyst)
	if err != nil {
		return err
	}
	defer nc.Close()
	counted := func() int {
		n := 0
		for _, m := range a.Sandbox.Slack().Messages() {
			var more int
			if _, err := fmt.Sscanf(m.Text, "%d more:", &more); err == nil {
				n += more
			} else {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(20 * time.Minute)
	for counted() < o.AlertLeads {
		if time.Now().After(deadline) {
			return fmt.Errorf("alerter outage: %d of %d failures alerted after 20 min", counted(), o.AlertLeads)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	done := time.Now()
	ops, err := js.Stream(ctx, bus.StreamOps)
	if err != nil {
		return err
	}
	last, err := ops.GetLastMsgForSubject(ctx, bus.FailureSubject(bus.ServiceCRMSync))
	if err != nil {
		return fmt.Errorf("last failure record: %w", err)
	}
	triggers := 0
	for _, ev := range a.Sandbox.PagerDuty().Events() {
		if ev.EventAction == "trigger" {
			triggers++
		}
	}
	fmt.Fprintf(w, "bench: alerter_outage_failures %d count\n", o.AlertLeads)
	fmt.Fprintf(w, "bench: alerter_outage_failures_recorded_s %.1f s\n", last.Time.Sub(start).Seconds())
	fmt.Fprintf(w, "bench: alerter_outage_lag_after_last_record_s %.1f s\n", done.Sub(last.Time).Seconds())
	fmt.Fprintf(w, "bench: alerter_outage_slack_messages %d count\n", len(a.Sandbox.Slack().Messages()))
	fmt.Fprintf(w, "bench: alerter_outage_windows %.1f count\n", done.Sub(start).Seconds()/alertWindow.Seconds())
	fmt.Fprintf(w, "bench: alerter_outage_pagerduty_triggers %d count\n", triggers)
	return nil
}

// connectAs opens a connection to a's NATS as user.
func connectAs(a *app.App, user string) (*nats.Conn, jetstream.JetStream, error) {
	opts, err := a.ConnectOptions(user)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(a.NATSURL, opts...)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}
