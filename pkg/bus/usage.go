package bus

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// usageTimeout bounds the reads of one scrape.
const usageTimeout = 2 * time.Second

// StreamUsage is a Prometheus collector of how full streams are, read from
// the server at each scrape:
//
//   - brokerflow_bus_stream_full_ratio{stream}: the stream's messages and
//     bytes against its limits (MaxMsgs, MaxBytes), the higher of the two,
//     from 0 to 1; 0 when it has no limit. A stream declared KeepUnprocessed
//     refuses new messages at 1: alert well before (0.8).
//   - brokerflow_bus_stream_messages{stream} and
//     brokerflow_bus_stream_bytes{stream}: what it holds.
//
// A stream that cannot be read (NATS is down) is left out of that scrape;
// readiness reports the outage.
type StreamUsage struct {
	js      jetstream.JetStream
	streams []string
	log     *slog.Logger

	ratio, messages, bytes *prometheus.Desc
}

var _ prometheus.Collector = (*StreamUsage)(nil)

// NewStreamUsage collects the usage of streams through js; the caller's
// NATS user needs their stream info ($JS.API.STREAM.INFO.<stream>).
func NewStreamUsage(js jetstream.JetStream, log *slog.Logger, streams ...string) *StreamUsage {
	labels := []string{"stream"}
	return &StreamUsage{
		js:      js,
		streams: streams,
		log:     log,
		ratio: prometheus.NewDesc("brokerflow_bus_stream_full_ratio",
			"How full the stream is against its limits (the higher of messages/max messages and bytes/max bytes); 0 without limits.", labels, nil),
		messages: prometheus.NewDesc("brokerflow_bus_stream_messages", "Messages the stream holds.", labels, nil),
		bytes:    prometheus.NewDesc("brokerflow_bus_stream_bytes", "Bytes the stream holds.", labels, nil),
	}
}

// Describe implements prometheus.Collector.
func (u *StreamUsage) Describe(ch chan<- *prometheus.Desc) {
	ch <- u.ratio
	ch <- u.messages
	ch <- u.bytes
}

// Collect implements prometheus.Collector.
func (u *StreamUsage) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), usageTimeout)
	defer cancel()
	for _, name := range u.streams {
		s, err := u.js.Stream(ctx, name)
		if err != nil {
			u.log.Debug("stream usage: cannot read the stream", "stream", name, "err", err)
			continue
		}
		info := s.CachedInfo()
		ch <- prometheus.MustNewConstMetric(u.ratio, prometheus.GaugeValue, FullRatio(info), name)
		ch <- prometheus.MustNewConstMetric(u.messages, prometheus.GaugeValue, float64(info.State.Msgs), name)
		ch <- prometheus.MustNewConstMetric(u.bytes, prometheus.GaugeValue, float64(info.State.Bytes), name)
	}
}

// FullRatio is how full a stream is against its message and byte limits,
// the higher of the two; 0 when it has neither.
func FullRatio(info *jetstream.StreamInfo) float64 {
	var r float64
	if limit := info.Config.MaxMsgs; limit > 0 {
		r = float64(info.State.Msgs) / float64(limit)
	}
	if limit := info.Config.MaxBytes; limit > 0 {
		r = max(r, float64(info.State.Bytes)/float64(limit))
	}
	return r
}

// errCodeStoreFailed is JetStream's JSStreamStoreFailedF, which a stream
// that discards new messages answers when it is at a limit.
const errCodeStoreFailed jetstream.ErrorCode = 10077

// IsStreamFull reports whether err is a stream at its size limit refusing
// a message (a KeepUnprocessed stream, "maximum bytes exceeded" or
// "maximum messages exceeded").
func IsStreamFull(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeStoreFailed &&
		strings.HasPrefix(apiErr.Description, "maximum ")
}
