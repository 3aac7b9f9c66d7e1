package sandbox

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"time"
)

// DeliveryOptions configures the asynchronous, retried delivery of a vendor's webhooks. Zero
// fields take the defaults.
type DeliveryOptions struct {
	// Retries is how many times a delivery that got no 2xx is tried again. Default 5; negative
	// means none.
	Retries int
	// Backoff is the wait before the first retry; it doubles before each next one. Default 1s.
	Backoff time.Duration
	// Timeout bounds each attempt. Default 10s.
	Timeout time.Duration
	// Client sends the deliveries. Default: an http.Client with Timeout.
	Client *http.Client
}

// WebhookOptions is how a vendor signs and delivers the webhooks it sends.
type WebhookOptions struct {
	// SignatureHeader carries Sign(body) on every delivery, and Delivery.Signature records it.
	SignatureHeader string
	Sign            func(body []byte) string
	// Header, when set, returns more headers for a delivery of body (a User-Agent, a legacy
	// signature). Content-Type is always application/json.
	Header func(body []byte) map[string]string
	// Delivery configures the retries.
	Delivery DeliveryOptions
}

// Delivery states.
const (
	DeliveryPending   = "pending"
	DeliveryDelivered = "delivered"
	DeliveryFailed    = "failed"
)

// Delivery is the record of one webhook posted to one URL. A vendor's own record embeds it
// beside what the vendor adds (which webhook, which leads).
type Delivery struct {
	URL string `json:"url"`
	// Body is the exact body posted, and Signature its signature header.
	Body      string `json:"body"`
	Signature string `json:"signature"`
	// State is pending, delivered or failed (every attempt spent).
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	// LastStatus is the last HTTP status received (0 when none), LastError the last error.
	LastStatus int    `json:"lastStatus"`
	LastError  string `json:"lastError,omitempty"`
}

// NewDelivery returns the record of a webhook that posts body to url: signed, pending. Send
// posts it.
func (k *Kit) NewDelivery(url string, body []byte) Delivery {
	d := Delivery{URL: url, Body: string(body), State: DeliveryPending}
	if k.opts.Webhooks.Sign != nil {
		d.Signature = k.opts.Webhooks.Sign(body)
	}
	return d
}

// Send posts d in the background, signed, retried as WebhookOptions.Delivery says, and never
// holds up the caller. After each attempt it records the outcome in d under mu, the lock under
// which the vendor reads d; the caller must not hold mu. After Close, d fails at once.
func (k *Kit) Send(d *Delivery, mu sync.Locker) {
	body := []byte(d.Body)
	header := map[string]string{}
	if k.opts.Webhooks.Header != nil {
		header = k.opts.Webhooks.Header(body)
	}
	header["Content-Type"] = "application/json"
	if name := k.opts.Webhooks.SignatureHeader; name != "" {
		header[name] = d.Signature
	}
	k.sender.send(d.URL, body, header, func(a deliveryAttempt) {
		mu.Lock()
		defer mu.Unlock()
		if a.number > 0 {
			d.Attempts = a.number
		}
		d.LastStatus, d.LastError = a.status, a.errText
		switch {
		case a.delivered:
			d.State = DeliveryDelivered
		case a.final:
			d.State = DeliveryFailed
		}
	})
}

// webhookSender delivers signed webhook bodies asynchronously, retrying with a doubling
// backoff until a 2xx or the retries are spent. It knows nothing of any vendor: the caller
// gives the headers and records each attempt. Every vendor's webhooks go through one, its
// Kit's (Kit.Send).
type webhookSender struct {
	opts     DeliveryOptions
	stop     context.Context
	cancel   context.CancelFunc
	inflight sync.WaitGroup

	mu     sync.Mutex
	closed bool
}

// deliveryAttempt is what one attempt came to.
type deliveryAttempt struct {
	number    int // 1-based
	status    int // 0 when no answer
	errText   string
	delivered bool
	final     bool // no attempt follows
}

func newWebhookSender(o DeliveryOptions) *webhookSender {
	if o.Retries < 0 {
		o.Retries = 0
	} else if o.Retries == 0 {
		o.Retries = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &webhookSender{opts: o, stop: ctx, cancel: cancel}
}

// send posts body to target in the background. record is called after every attempt, and
// once with final set; after close it is called once, at once, as a failure.
func (s *webhookSender) send(target string, body []byte, header map[string]string, record func(deliveryAttempt)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		record(deliveryAttempt{errText: "sandbox closed", final: true})
		return
	}
	s.inflight.Add(1)
	go s.run(target, body, header, record)
}

func (s *webhookSender) run(target string, body []byte, header map[string]string, record func(deliveryAttempt)) {
	defer s.inflight.Done()
	backoff := s.opts.Backoff
	for attempt := 1; ; attempt++ {
		status, err := s.post(target, body, header)
		a := deliveryAttempt{number: attempt, status: status, delivered: err == nil && status >= 200 && status <= 299}
		if err != nil {
			a.errText = err.Error()
		}
		a.final = a.delivered || attempt > s.opts.Retries
		record(a)
		if a.final {
			return
		}
		t := time.NewTimer(backoff)
		select {
		case <-s.stop.Done():
			t.Stop()
			record(deliveryAttempt{number: attempt, status: status, errText: "sandbox closed before the delivery succeeded", final: true})
			return
		case <-t.C:
		}
		backoff *= 2
	}
}

// post sends one attempt and returns the status.
func (s *webhookSender) post(target string, body []byte, header map[string]string) (int, error) {
	ctx, cancel := context.WithTimeout(s.stop, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, nil
}

// close stops retrying and waits for the attempts in flight.
func (s *webhookSender) close() {
	s.mu.Lock()
	s.closed = true
	s.cancel()
	s.mu.Unlock()
	s.inflight.Wait()
}
