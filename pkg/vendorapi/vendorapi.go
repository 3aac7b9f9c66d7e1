// Package vendorapi is the one HTTP client every vendor adapter uses: Follow
// Up Boss, LionDesk, the Facebook Graph lead read, and the adapters to come
// (Dotloop, SkySlope, QuickBooks Online, Slack, PagerDuty).
//
// It sends JSON requests and decodes a bounded 2xx answer; it authenticates
// each request (Basic, Bearer, OAuth with one refresh after a 401, or a
// signed header); it paces calls to the account's quota (Pacer); and it
// turns every other answer into an error classified for the bus, with a
// stable reason code "<area>.<what>": "<area>.http_<status>",
// "<area>.rate_limited" (bus.Throttled), "<area>.unreachable". How an answer
// maps to a class is the Classifier's: DefaultClassifier, or a vendor's own
// (GraphClassifier, QuickBooksClassifier).
//
// Errors name the vendor, the operation, the status and the vendor's code,
// never the request URL: a search query holds a person's email and phone,
// and percent-encoded they would pass the log redaction.
package vendorapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
)

// DefaultMaxAnswer bounds an answer the client reads when Config.MaxAnswer
// is not set.
const DefaultMaxAnswer = 1 << 20

// maxMessage bounds the vendor's message kept in an Error.
const maxMessage = 300

// Config describes one vendor API.
type Config struct {
	// Vendor names the vendor in errors, e.g. "followupboss".
	Vendor string
	// Area is the first part of every reason code, e.g. "crm" for
	// crm.http_400, crm.rate_limited and crm.unreachable.
	Area string
	// BaseURL is prefixed to every path, e.g. https://api.followupboss.com.
	BaseURL string
	// Timeout bounds each call, answer included; 0 means none.
	Timeout time.Duration
	// Auth sets the credentials of every request; nil sends none.
	Auth Auth
	// Header is sent with every request (e.g. Follow Up Boss's X-System).
	Header http.Header
	// Classify maps a non-2xx answer to its verdict; nil means
	// DefaultClassifier().
	Classify Classifier
	// Pacer, when set, keeps the calls within the account's quota. Several
	// clients of one account may share it.
	Pacer *Pacer
	// Transport sends the requests; nil means a transport of the client's
	// own: http.DefaultTransport's settings, keeping up to MaxIdleConns
	// connections to the vendor open between calls.
	Transport http.RoundTripper
	// MaxAnswer bounds the answer read; 0 means DefaultMaxAnswer. A larger
	// answer is a permanent error ("<area>.answer_too_large").
	MaxAnswer int64
}

// Client calls one vendor's API. It is safe for concurrent use.
type Client struct {
	cfg  Config
	base string
	http *http.Client
}

// New returns a client for cfg.
func New(cfg Config) *Client {
	if cfg.Classify == nil {
		cfg.Classify = DefaultClassifier()
	}
	if cfg.MaxAnswer <= 0 {
		cfg.MaxAnswer = DefaultMaxAnswer
	}
	if cfg.Transport == nil {
		cfg.Transport = newTransport()
	}
	return &Client{
		cfg:  cfg,
		base: strings.TrimRight(cfg.BaseURL, "/"),
		http: &http.Client{Timeout: cfg.Timeout, Transport: cfg.Transport},
	}
}

// MaxIdleConns is how many connections to its vendor a client keeps open
// between calls: as many as a service's handlers call at once. Go's default
// keeps 2 per host, so with more handlers most calls closed their
// connection after the answer and the next call dialed again (and, against
// the real vendor, shook hands with TLS again).
const MaxIdleConns = 32

func newTransport() *http.Transport {
	t := &http.Transport{}
	if d, ok := http.DefaultTransport.(*http.Transport); ok {
		t = d.Clone()
	}
	t.MaxIdleConns, t.MaxIdleConnsPerHost = MaxIdleConns, MaxIdleConns
	return t
}

// Error is a vendor's non-2xx answer. Adapters return it wrapped, with the
// bus class and the reason code around it; match it with errors.As.
type Error struct {
	// Vendor and Op say who was asked what, e.g. "liondesk", "search
	// contacts by email".
	Vendor string
	Op     string
	Status int
	// Code is the vendor's own error code, when its answer has one (Graph's
	// "17", QuickBooks' "3001").
	Code string
	// Message is the vendor's message, or the start of its answer.
	Message string
	// RetryAfter is what the vendor asked to wait, when it said.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: HTTP %d", e.Vendor, e.Op, e.Status)
	if e.Code != "" {
		b.WriteString(" (code " + e.Code + ")")
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// ErrUnreachable is wrapped by the error of a call that got no answer: a
// refused connection, a timeout, a connection lost before the answer was
// read. It is transient, with the reason code "<area>.unreachable".
var ErrUnreachable = errors.New("vendor unreachable")

// Do sends one request to path (below the base URL; a query included) with
// in, when not nil, as its JSON body, and decodes a 2xx answer into out,
// when not nil. It returns the answer's status (0 without one) and an error
// classified for the bus:
//
//   - no answer: transient, wrapping ErrUnreachable, "<area>.unreachable";
//   - a non-2xx answer: an *Error, classified by the Classifier;
//   - an answer over the bound: permanent, "<area>.answer_too_large";
//   - a 2xx answer that does not decode: transient, "<area>.bad_answer".
//
// op names the call in errors, e.g. "search people by email".
func (c *Client) Do(ctx context.Context, op, method, path string, in, out any) (int, error) {
	var body []byte
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return 0, bus.AsPermanent(c.errorf(op, "encode request: %w", err))
		}
		body = b
	}
	status, header, raw, err := c.send(ctx, op, method, path, body)
	if err != nil {
		return status, err
	}
	if status < 200 || status > 299 {
		return status, c.answerError(op, Answer{Status: status, Header: header, Body: raw})
	}
	if out != nil && status != http.StatusNoContent && len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return status, bus.WithCode(c.code("bad_answer"), c.errorf(op, "decode answer: %w", err))
		}
	}
	return status, nil
}

// tracerName names the spans of vendor calls.
const tracerName = "github.com/brokerflow/brokerflow/pkg/vendorapi"

// send makes the call: the pacer's wait, the credentials, and after a 401,
// when the Auth can renew them, one refresh and a second try. Inside a
// traced handler the call is a client span "<vendor> <op>", and the pacer's
// wait a span "pace <vendor>" of its own (neither names the URL: a search
// query holds personal data).
func (c *Client) send(ctx context.Context, op, method, path string, body []byte) (status int, _ http.Header, _ []byte, err error) {
	tracer := trace.SpanFromContext(ctx).TracerProvider().Tracer(tracerName)
	ctx, span := tracer.Start(ctx, c.cfg.Vendor+" "+op, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("brokerflow.vendor", c.cfg.Vendor)))
	defer func() {
		if status != 0 {
			span.SetAttributes(attribute.Int("http.response.status_code", status))
		}
		if err != nil {
			span.SetStatus(codes.Error, "call failed")
		}
		span.End()
	}()
	refreshed := false
	for {
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, bodyReader(body))
		if err != nil {
			return 0, nil, nil, bus.AsPermanent(c.errorf(op, "build request: %w", withoutURL(err)))
		}
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		for k, vs := range c.cfg.Header {
			req.Header[k] = vs
		}
		if c.cfg.Auth != nil {
			if err := c.cfg.Auth.Authorize(req, body); err != nil {
				return 0, nil, nil, bus.WithCode(c.code("auth"), c.errorf(op, "credentials: %w", err))
			}
		}
		paced := c.cfg.Pacer != nil && c.cfg.Pacer.counts(req)
		var sent time.Time
		if paced {
			_, pace := tracer.Start(ctx, "pace "+c.cfg.Vendor)
			sent, err = c.cfg.Pacer.wait(ctx)
			pace.End()
			if err != nil {
				return 0, nil, nil, c.unreachable(op, err)
			}
		}
		resp, err := c.http.Do(req)
		if err != nil {
			if paced {
				c.cfg.Pacer.done(sent, nil)
			}
			return 0, nil, nil, c.unreachable(op, err)
		}
		if paced {
			c.cfg.Pacer.done(sent, resp.Header)
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxAnswer+1))
		resp.Body.Close()
		if err != nil {
			return resp.StatusCode, resp.Header, nil, c.unreachable(op, fmt.Errorf("read answer: %w", err))
		}
		if int64(len(raw)) > c.cfg.MaxAnswer {
			return resp.StatusCode, resp.Header, nil, bus.WithCode(c.code("answer_too_large"),
				bus.AsPermanent(c.errorf(op, "HTTP %d: the answer is larger than %d bytes", resp.StatusCode, c.cfg.MaxAnswer)))
		}
		r, canRefresh := c.cfg.Auth.(Refresher)
		if resp.StatusCode != http.StatusUnauthorized || !canRefresh || refreshed {
			return resp.StatusCode, resp.Header, raw, nil
		}
		refreshed = true
		if err := r.Refresh(ctx, req); err != nil {
			return 0, nil, nil, bus.WithCode(c.code("auth"), c.errorf(op, "refresh credentials after HTTP 401: %w", err))
		}
	}
}

// answerError turns a non-2xx answer into the classified *Error.
func (c *Client) answerError(op string, a Answer) error {
	v := c.cfg.Classify(a)
	msg := strings.TrimSpace(v.Message)
	if cut := logging.Truncate(msg, maxMessage); cut != msg {
		msg = cut + "…"
	}
	e := &Error{Vendor: c.cfg.Vendor, Op: op, Status: a.Status, Code: v.Code, Message: msg, RetryAfter: v.RetryAfter}
	reason := v.Reason
	if reason == "" {
		reason = fmt.Sprintf("http_%d", a.Status)
	}
	var err error = e
	switch v.Class {
	case Throttled:
		if c.cfg.Pacer != nil {
			c.cfg.Pacer.Pause(v.RetryAfter)
		}
		err = bus.Throttled(e, v.RetryAfter)
	case Permanent:
		err = bus.AsPermanent(e)
	default:
		if v.RetryAfter > 0 {
			err = bus.RetryAfter(e, v.RetryAfter)
		}
	}
	return bus.WithCode(c.code(reason), err)
}

// unreachable is a call that got no answer: transient, its cause kept and
// the URL dropped.
func (c *Client) unreachable(op string, err error) error {
	return bus.WithCode(c.code("unreachable"), c.errorf(op, "%w: %w", ErrUnreachable, withoutURL(err)))
}

func (c *Client) errorf(op, format string, args ...any) error {
	return fmt.Errorf("%s %s: "+format, append([]any{c.cfg.Vendor, op}, args...)...)
}

func (c *Client) code(what string) string { return c.cfg.Area + "." + what }

func bodyReader(body []byte) io.Reader {
	if body == nil {
		return http.NoBody
	}
	return bytes.NewReader(body)
}

// withoutURL drops the request URL that Go's *url.Error quotes ("Get
// \"https://…?email=ada%40example.com\": dial tcp …: connection refused"),
// keeping its cause. The URL may carry personal data in its query, and
// percent-encoded it passes the log redaction into logs, failure records and
// termination reasons.
func withoutURL(err error) error {
	for {
		var ue *url.Error
		if !errors.As(err, &ue) {
			return err
		}
		if ue.Err == nil {
			return errors.New(strings.ToLower(ue.Op) + " failed")
		}
		err = ue.Err
	}
}

// CheckEndpoint reports a base URL that is not an absolute http(s) URL, or
// a timeout that is not positive, naming the setting as prefix+BASE_URL or
// prefix+TIMEOUT (e.g. CRMSYNC_FUB_BASE_URL): every adapter's Config has
// both.
func CheckEndpoint(prefix, baseURL string, timeout time.Duration) error {
	if u, err := url.Parse(baseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%sBASE_URL %q is not an absolute http(s) URL", prefix, baseURL)
	}
	if timeout <= 0 {
		return fmt.Errorf("%sTIMEOUT must be positive", prefix)
	}
	return nil
}
