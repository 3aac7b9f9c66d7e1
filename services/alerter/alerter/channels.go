package alerter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/vendorapi"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	opsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ops/v1"
)

// Channel names, in AlertSent.channels and the alerts bucket.
const (
	ChannelSlack     = "slack"
	ChannelPagerDuty = "pagerduty"
	ChannelWebhook   = "webhook"
)

// Channel delivers alerts to one place.
type Channel interface {
	Name() string
	// Takes reports whether the channel's route takes a.
	Takes(a *Alert) bool
	// Send delivers a; its error is classified for the bus (a 429 is
	// bus.Throttled with the channel's Retry-After).
	Send(ctx context.Context, a *Alert) error
}

// Channels builds the channels cfg configures, through the vendor client.
func Channels(cfg Config) ([]Channel, error) {
	var out []Channel
	if cfg.SlackWebhookURL != "" {
		r, err := ParseRoute(cfg.SlackRoute)
		if err != nil {
			return nil, err
		}
		out = append(out, &slack{route: r, c: vendorapi.New(vendorapi.Config{
			Vendor: "slack", Area: "slack", BaseURL: cfg.SlackWebhookURL, Timeout: cfg.HTTPTimeout,
		})})
	}
	if cfg.PagerDutyRoutingKey != "" {
		r, err := ParseRoute(cfg.PagerDutyRoute)
		if err != nil {
			return nil, err
		}
		out = append(out, &pagerDuty{route: r, key: cfg.PagerDutyRoutingKey, c: vendorapi.New(vendorapi.Config{
			Vendor: "pagerduty", Area: "pagerduty", BaseURL: cfg.PagerDutyURL, Timeout: cfg.HTTPTimeout,
			Classify: vendorapi.DefaultClassifier("message"),
		})})
	}
	if cfg.WebhookURL != "" {
		r, err := ParseRoute(cfg.WebhookRoute)
		if err != nil {
			return nil, err
		}
		secret := cfg.WebhookSecret
		out = append(out, &webhook{route: r, c: vendorapi.New(vendorapi.Config{
			Vendor: "webhook", Area: "webhook", BaseURL: cfg.WebhookURL, Timeout: cfg.HTTPTimeout,
			Auth: standardWebhooks{secret: secret, now: time.Now},
		})})
	}
	return out, nil
}

// slack posts Block Kit messages to an incoming webhook. Slack has no
// idempotency key: a repeated alert is a second message.
type slack struct {
	route Route
	c     *vendorapi.Client
}

func (s *slack) Name() string        { return ChannelSlack }
func (s *slack) Takes(a *Alert) bool { return s.route.Matches(a) }
func (s *slack) Send(ctx context.Context, a *Alert) error {
	_, err := s.c.Do(ctx, "post message", http.MethodPost, "", slackMessage(a), nil)
	return err
}

// slackMessage is a's Block Kit message; text is its fallback for
// notifications.
func slackMessage(a *Alert) map[string]any {
	text := func(s string) map[string]any { return map[string]any{"type": "mrkdwn", "text": s} }
	var fields []any
	add := func(label, v string) {
		if v != "" {
			fields = append(fields, text("*"+label+"*\n"+v))
		}
	}
	step := a.Service
	if a.Consumer != "" {
		step += " / " + a.Consumer
	}
	add("Step", step)
	add("Reason code", codeSpan(a.ReasonCode))
	add("Source", a.Source)
	add("Lead", a.LeadID)
	add("Contact", a.ContactID)
	add("Transaction", a.TransactionID)
	if a.Stream != "" {
		add("Message", fmt.Sprintf("%s/%d %s", a.Stream, a.Sequence, a.Subject))
	}
	if a.Attempts > 0 {
		add("Attempts", fmt.Sprint(a.Attempts))
	}
	if a.Count > 0 {
		add("Count", fmt.Sprint(a.Count))
	}
	blocks := []any{
		map[string]any{"type": "header", "text": map[string]any{"type": "plain_text", "text": logging.Truncate(a.Title, 150)}},
	}
	if len(fields) > 0 {
		blocks = append(blocks, map[string]any{"type": "section", "fields": fields[:min(len(fields), 10)]})
	}
	if a.Reason != "" {
		blocks = append(blocks, map[string]any{"type": "section", "text": text(logging.Truncate(a.Reason, 2900))})
	}
	if a.Data != nil {
		b, _ := json.MarshalIndent(a.Data, "", "  ")
		blocks = append(blocks, map[string]any{"type": "section", "text": text("*Data*\n```" + logging.Truncate(string(b), 2800) + "```")})
	}
	cmds := a.Redrives
	if a.Redrive != "" {
		cmds = append([]string{a.Redrive}, cmds...)
	}
	if len(cmds) > 0 {
		blocks = append(blocks, map[string]any{"type": "section", "text": text("*Retry it*\n```" + logging.Truncate(strings.Join(cmds, "\n"), 2800) + "```")})
	}
	blocks = append(blocks, map[string]any{"type": "context", "elements": []any{text("alert " + codeSpan(a.ID) + " · runbook docs/runbooks/" + Runbook(a) + ".md")}})
	return map[string]any{"text": a.Title, "blocks": blocks}
}

func codeSpan(s string) string {
	if s == "" {
		return ""
	}
	return "`" + s + "`"
}

// pagerDuty sends Events API v2 events: a trigger per alert, with the
// group's dedup_key, and a resolve when the group is resolved. A summary
// adds nothing there: the group's incident is open already.
type pagerDuty struct {
	route Route
	key   string
	c     *vendorapi.Client
}

func (p *pagerDuty) Name() string { return ChannelPagerDuty }
func (p *pagerDuty) Takes(a *Alert) bool {
	return a.Kind != opsv1.AlertKind_ALERT_KIND_SUMMARY && p.route.Matches(a)
}

func (p *pagerDuty) Send(ctx context.Context, a *Alert) error {
	ev := map[string]any{"routing_key": p.key, "dedup_key": a.DedupKey()}
	if a.Kind == opsv1.AlertKind_ALERT_KIND_RESOLVED {
		ev["event_action"] = "resolve"
	} else {
		severity := "error"
		if a.Kind == opsv1.AlertKind_ALERT_KIND_REJECTED || a.Kind == opsv1.AlertKind_ALERT_KIND_TEST {
			severity = "warning"
		}
		ev["event_action"] = "trigger"
		ev["payload"] = map[string]any{
			"summary":        logging.Truncate(a.Title, 1024),
			"source":         "brokerflow/" + orDefault(a.Service, "alerter"),
			"severity":       severity,
			"component":      a.Service,
			"group":          a.ReasonCode,
			"class":          a.KindName(),
			"timestamp":      a.At.UTC().Format(time.RFC3339),
			"custom_details": a,
		}
	}
	var answer struct {
		DedupKey string `json:"dedup_key"`
	}
	_, err := p.c.Do(ctx, "enqueue "+ev["event_action"].(string), http.MethodPost, "", ev, &answer)
	return err
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// webhook posts the alert as JSON, signed with Standard Webhooks; its
// webhook-id is the alert's id, so a receiver drops a repeat.
type webhook struct {
	route Route
	c     *vendorapi.Client
}

func (w *webhook) Name() string        { return ChannelWebhook }
func (w *webhook) Takes(a *Alert) bool { return w.route.Matches(a) }
func (w *webhook) Send(ctx context.Context, a *Alert) error {
	_, err := w.c.Do(withAlertID(ctx, a.ID), "post alert", http.MethodPost, "", a, nil)
	return err
}

// WebhookID is the webhook-id of the alert id: Standard Webhooks signs
// "<id>.<timestamp>.<body>", so its receivers refuse an id with a dot; a
// hash of the alert's id, the same for every repeat. The body carries the
// id itself.
func WebhookID(alertID string) string {
	sum := sha256.Sum256([]byte(alertID))
	return "alert_" + hex.EncodeToString(sum[:16])
}

type alertIDKey struct{}

func withAlertID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, alertIDKey{}, id)
}

// standardWebhooks signs a request with the Standard Webhooks headers
// (webhook-id, webhook-timestamp, webhook-signature), the alert's id as
// webhook-id.
type standardWebhooks struct {
	secret string
	now    func() time.Time
}

func (s standardWebhooks) Authorize(req *http.Request, body []byte) error {
	id, _ := req.Context().Value(alertIDKey{}).(string)
	if id == "" {
		return errors.New("webhook: an alert without an id")
	}
	h, err := webhooksig.SignedHeaders(s.secret, WebhookID(id), s.now(), body)
	if err != nil {
		return err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	return nil
}

// TestResult is what one channel answered to a test alert.
type TestResult struct {
	Channel string
	Err     error
}

// SendTest sends a test alert to every channel cfg configures, whatever its
// route; PagerDuty's test incident is resolved right after.
func SendTest(ctx context.Context, cfg Config, now time.Time) ([]TestResult, error) {
	channels, err := Channels(cfg)
	if err != nil {
		return nil, err
	}
	id := "test/" + now.UTC().Format("20060102T150405Z")
	al := &Alert{
		ID: id, Kind: opsv1.AlertKind_ALERT_KIND_TEST, Group: "test", Service: "alerter",
		Title: "Brokerflow test alert: this channel receives Brokerflow's alerts", At: now,
		Reason: "Sent by `brokerflow alerts test`. Nothing failed.",
	}
	var out []TestResult
	for _, ch := range channels {
		err := ch.Send(ctx, al)
		if err == nil && ch.Name() == ChannelPagerDuty {
			r := *al
			r.Kind = opsv1.AlertKind_ALERT_KIND_RESOLVED
			err = ch.Send(ctx, &r)
		}
		out = append(out, TestResult{Channel: ch.Name(), Err: err})
	}
	return out, nil
}
