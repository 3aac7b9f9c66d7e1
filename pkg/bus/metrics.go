package bus

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the consume loop's Prometheus metrics for one service. Every
// series carries a constant service label, so several services can register
// on one registry in the all-in-one binary.
type Metrics struct {
	handled   *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	throttled *prometheus.CounterVec
}

// NewMetrics registers the metrics of service on reg. A nil reg registers nothing.
func NewMetrics(reg prometheus.Registerer, service string) (*Metrics, error) {
	labels := prometheus.Labels{"service": service}
	m := &Metrics{
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "brokerflow_bus_messages_handled_total",
			Help:        "Messages handled, by consumer and outcome (ack, retry, failed, requeue, crashed).",
			ConstLabels: labels,
		}, []string{"consumer", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:        "brokerflow_bus_handler_duration_seconds",
			Help:        "Time spent in a handler.",
			ConstLabels: labels,
			Buckets:     prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"consumer"}),
		throttled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name:        "brokerflow_bus_consumer_pauses_total",
			Help:        "Times a consumer was paused because a vendor throttled it (429).",
			ConstLabels: labels,
		}, []string{"consumer"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.handled, m.duration, m.throttled} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) observe(consumer, outcome string, d time.Duration) {
	m.handled.WithLabelValues(consumer, outcome).Inc()
	m.duration.WithLabelValues(consumer).Observe(d.Seconds())
}
