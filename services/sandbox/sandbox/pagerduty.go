package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// PagerDuty Events API v2 (PagerDuty's developer documentation, "Events API v2"): POST
// https://events.pagerduty.com/v2/enqueue with a JSON event {"routing_key", "event_action":
// trigger|acknowledge|resolve, "dedup_key", "payload": {"summary", "source", "severity", …}}.
// The answer is 202 {"status":"success","message":"Event processed","dedup_key":…}; an invalid
// event 400 {"status":"invalid event","message":"Event object is invalid","errors":[…]}; too
// many events 429. The sandbox serves it under /pagerduty/v2/enqueue and keeps the events and
// the alert each dedup_key opened.

// DefaultPagerDutyRoutingKey is the integration key the emulation accepts by default (32
// characters, as PagerDuty's are).
const DefaultPagerDutyRoutingKey = "sandboxpagerdutyroutingkey000000"

// PagerDutyOptions configures the PagerDuty emulation. Zero fields take the defaults.
type PagerDutyOptions struct {
	// RoutingKeys are the valid integration keys. Default: DefaultPagerDutyRoutingKey. An
	// event with another key answers 400 (PagerDuty documents no other answer for it).
	RoutingKeys []string
	// PerMinute is how many events a routing key takes per minute before 429. PagerDuty's
	// limits are dynamic [O]; the sandbox's default is 120 (an assumption).
	PerMinute int
}

// PagerDutyEvent is one event the emulation accepted.
type PagerDutyEvent struct {
	RoutingKey  string          `json:"routing_key"`
	EventAction string          `json:"event_action"`
	DedupKey    string          `json:"dedup_key"`
	Summary     string          `json:"summary"`
	Severity    string          `json:"severity"`
	Source      string          `json:"source"`
	Details     json.RawMessage `json:"custom_details,omitempty"`
	At          time.Time       `json:"at"`
}

// PagerDutyAlert is the state of one dedup_key: "triggered" or "resolved" (acknowledged
// between them).
type PagerDutyAlert struct {
	DedupKey string `json:"dedup_key"`
	Status   string `json:"status"`
	Summary  string `json:"summary"`
	// Triggers counts the trigger events deduplicated into it.
	Triggers int       `json:"triggers"`
	Updated  time.Time `json:"updated"`
}

// PagerDuty is the Events API v2 emulation.
type PagerDuty struct {
	*Kit
	keys []string

	mu     sync.Mutex
	seq    int
	events []PagerDutyEvent
	alerts map[string]*PagerDutyAlert
	order  []string
}

type pdAnswer struct {
	Status   string   `json:"status"`
	Message  string   `json:"message"`
	DedupKey string   `json:"dedup_key,omitempty"`
	Errors   []string `json:"errors,omitempty"`
}

func newPagerDuty(o PagerDutyOptions, now func() time.Time) *PagerDuty {
	if len(o.RoutingKeys) == 0 {
		o.RoutingKeys = []string{DefaultPagerDutyRoutingKey}
	}
	if o.PerMinute <= 0 {
		o.PerMinute = 120
	}
	p := &PagerDuty{keys: slices.Clone(o.RoutingKeys), alerts: map[string]*PagerDutyAlert{}}
	p.Kit = NewKit(KitOptions{
		Name:  "pagerduty",
		Title: "PagerDuty (Events API v2)",
		Note:  "Alerts by dedup_key and every event received at /pagerduty/v2/enqueue, newest first.",
		// The routing key is in the body, checked by the handler; the limit counts per
		// caller (PagerDuty's is per routing key).
		Auth: func(http.ResponseWriter, *http.Request) (string, bool) { return "events", true },
		ErrorBody: func(status int, message string) any {
			if status == http.StatusTooManyRequests {
				return pdAnswer{Status: "throttle event", Message: "Requests for this service are arriving too quickly. Please retry later."}
			}
			return pdAnswer{Status: "error", Message: message}
		},
		RateLimit: &RateLimit{Limit: o.PerMinute, Window: time.Minute, Headers: RateHeaders{Context: "X-Sandbox-RateLimit-Context"}},
		State:     p.state,
		Tables:    p.tables,
		Reset:     p.reset,
		Now:       now,
	})
	p.HandleFunc("POST /v2/enqueue", p.enqueue)
	return p
}

func (p *PagerDuty) invalid(w http.ResponseWriter, errs ...string) {
	writeJSON(w, http.StatusBadRequest, pdAnswer{Status: "invalid event", Message: "Event object is invalid", Errors: errs})
}

// enqueue takes one event: 400 when it does not decode, its routing key is unknown, its
// event_action is not trigger, acknowledge or resolve, a trigger lacks payload.summary,
// payload.source or a valid payload.severity, or an acknowledge or resolve lacks its
// dedup_key; else 202 with the dedup_key (generated for a trigger without one).
func (p *PagerDuty) enqueue(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 512<<10+1))
	if err != nil || len(body) > 512<<10 {
		p.invalid(w, "the event is larger than 512 KB")
		return
	}
	var ev struct {
		RoutingKey  string `json:"routing_key"`
		EventAction string `json:"event_action"`
		DedupKey    string `json:"dedup_key"`
		Payload     *struct {
			Summary  string          `json:"summary"`
			Source   string          `json:"source"`
			Severity string          `json:"severity"`
			Details  json.RawMessage `json:"custom_details"`
		} `json:"payload"`
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		p.invalid(w, "the body is not a JSON event: "+err.Error())
		return
	}
	var errs []string
	if !slices.Contains(p.keys, ev.RoutingKey) {
		errs = append(errs, "'routing_key' is invalid")
	}
	if len(ev.DedupKey) > 255 {
		errs = append(errs, "'dedup_key' must be at most 255 characters")
	}
	switch ev.EventAction {
	case "trigger":
		if ev.Payload == nil {
			errs = append(errs, "'payload' is missing or blank")
		} else {
			if strings.TrimSpace(ev.Payload.Summary) == "" || len(ev.Payload.Summary) > 1024 {
				errs = append(errs, "'payload.summary' is missing, blank or longer than 1024 characters")
			}
			if strings.TrimSpace(ev.Payload.Source) == "" {
				errs = append(errs, "'payload.source' is missing or blank")
			}
			if !slices.Contains([]string{"critical", "error", "warning", "info"}, ev.Payload.Severity) {
				errs = append(errs, "'payload.severity' must be one of critical, error, warning or info")
			}
		}
	case "acknowledge", "resolve":
		if ev.DedupKey == "" {
			errs = append(errs, "'dedup_key' is required for "+ev.EventAction)
		}
	default:
		errs = append(errs, "'event_action' must be one of trigger, acknowledge or resolve")
	}
	if len(errs) > 0 {
		p.invalid(w, errs...)
		return
	}
	now := p.opts.Now()
	p.mu.Lock()
	if ev.DedupKey == "" {
		p.seq++
		ev.DedupKey = fmt.Sprintf("sandbox-%032d", p.seq)
	}
	stored := PagerDutyEvent{RoutingKey: ev.RoutingKey, EventAction: ev.EventAction, DedupKey: ev.DedupKey, At: now}
	if ev.Payload != nil {
		stored.Summary, stored.Severity, stored.Source, stored.Details = ev.Payload.Summary, ev.Payload.Severity, ev.Payload.Source, ev.Payload.Details
	}
	p.events = append(p.events, stored)
	a, ok := p.alerts[ev.DedupKey]
	switch {
	case ev.EventAction == "trigger" && (!ok || a.Status == "resolved"):
		// A trigger after a resolve opens a new alert under the same key.
		if !ok {
			p.order = append(p.order, ev.DedupKey)
		}
		p.alerts[ev.DedupKey] = &PagerDutyAlert{DedupKey: ev.DedupKey, Status: "triggered", Summary: stored.Summary, Triggers: 1, Updated: now}
	case ev.EventAction == "trigger":
		a.Triggers++
		a.Updated = now
	case ok && a.Status != "resolved":
		// An acknowledge or resolve of an unknown or resolved alert is accepted and does
		// nothing, as PagerDuty's 202 does not say otherwise.
		a.Status = map[string]string{"acknowledge": "acknowledged", "resolve": "resolved"}[ev.EventAction]
		a.Updated = now
	}
	p.mu.Unlock()
	writeJSON(w, http.StatusAccepted, pdAnswer{Status: "success", Message: "Event processed", DedupKey: ev.DedupKey})
}

// Events returns every event accepted, oldest first.
func (p *PagerDuty) Events() []PagerDutyEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

// Alerts returns the alert of every dedup_key, first triggered first.
func (p *PagerDuty) Alerts() []PagerDutyAlert {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]PagerDutyAlert, 0, len(p.order))
	for _, k := range p.order {
		out = append(out, *p.alerts[k])
	}
	return out
}

func (p *PagerDuty) state() any {
	return map[string]any{"alerts": p.Alerts(), "events": p.Events()}
}

func (p *PagerDuty) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events, p.order, p.alerts = nil, nil, map[string]*PagerDutyAlert{}
}

func (p *PagerDuty) tables() []PageTable {
	alerts := PageTable{Title: "Alerts", Columns: []string{"dedup_key", "status", "summary", "triggers", "updated"}}
	as := p.Alerts()
	for i := len(as) - 1; i >= 0; i-- {
		a := as[i]
		alerts.Rows = append(alerts.Rows, []string{a.DedupKey, a.Status, a.Summary, fmt.Sprint(a.Triggers), a.Updated.Format(time.RFC3339)})
	}
	events := PageTable{Title: "Events", Columns: []string{"at", "event_action", "dedup_key", "severity", "summary"}}
	es := p.Events()
	for i := len(es) - 1; i >= 0; i-- {
		e := es[i]
		events.Rows = append(events.Rows, []string{e.At.Format(time.RFC3339), e.EventAction, e.DedupKey, e.Severity, e.Summary})
	}
	return []PageTable{alerts, events}
}
