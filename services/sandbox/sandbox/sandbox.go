// Package sandbox emulates the public HTTP contracts of the third-party APIs that Brokerflow
// talks to, for development and tests. It is never a fake inside the product: the real adapters
// speak HTTP to it exactly as they would to the vendor, under a per-vendor path prefix.
//
// Each vendor is one file set (fub*.go for Follow Up Boss, liondesk*.go for LionDesk, graph*.go
// for the Facebook Graph lead read and Lead Ads notifications, slack.go for Slack's incoming
// webhooks, pagerduty.go for PagerDuty's Events API v2, dotloop*.go for Dotloop, quickbooks*.go for QuickBooks
// Online; oauth.go is the OAuth 2.0 server Dotloop and QuickBooks share) built on a Kit
// (kit.go): the kit mounts the vendor's API under /<vendor>/ behind one gate (latency, auth, expired tokens, the
// fault queue, the rate limit with the vendor's headers), serves its knobs and JSON state under
// /_sandbox/<vendor>/, sends its signed webhooks (webhook.go) and shows its section of the page.
// The vendor brings only its own: its state, its API handlers, its auth rule and error shape.
package sandbox

import (
	"net/http"
	"time"
)

// Options configures a Sandbox. The zero value is usable: every vendor gets its defaults.
type Options struct {
	FUB        FUBOptions
	LionDesk   LionDeskOptions
	Graph      GraphOptions
	Slack      SlackOptions
	PagerDuty  PagerDutyOptions
	Dotloop    DotloopOptions
	QuickBooks QuickBooksOptions
	// Vendors are more emulations, each built with NewKit (a test's own vendor, say): they are
	// served beside the built-in ones, shown on the page and closed by Close. Each has its own
	// clock (KitOptions.Now). Two vendors of one name panic.
	Vendors []*Kit
	// Now is the sandbox's clock; nil means time.Now. Tests set it to move rate-limit windows
	// and the FUB assignment delay forward without sleeping.
	Now func() time.Time
}

// Sandbox holds every vendor emulation and serves them all from one http.Handler.
type Sandbox struct {
	fub      *FUB
	liondesk *LionDesk
	graph    *Graph
	slack    *Slack
	pd       *PagerDuty
	dotloop  *Dotloop
	qbo      *QuickBooks
	vendors  []*Kit
	handler  http.Handler
}

// New returns a sandbox with empty state.
func New(o Options) *Sandbox {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	s := &Sandbox{fub: newFUB(o.FUB, now), liondesk: newLionDesk(o.LionDesk, now), graph: newGraph(o.Graph, now),
		slack: newSlack(o.Slack, now), pd: newPagerDuty(o.PagerDuty, now), dotloop: newDotloop(o.Dotloop, now),
		qbo: newQuickBooks(o.QuickBooks, now)}
	s.vendors = append([]*Kit{s.fub.Kit, s.liondesk.Kit, s.graph.Kit, s.slack.Kit, s.pd.Kit, s.dotloop.Kit, s.qbo.Kit}, o.Vendors...)

	mux := http.NewServeMux()
	for _, v := range s.vendors {
		v.mount(mux)
	}
	mux.Handle("GET /{$}", pageHandler(s.vendors))
	s.handler = mux
	return s
}

// Handler serves every emulated API, the knobs and the read-only view.
func (s *Sandbox) Handler() http.Handler { return s.handler }

// FUB returns the Follow Up Boss emulation, for tests to inspect its state and turn its knobs.
func (s *Sandbox) FUB() *FUB { return s.fub }

// LionDesk returns the LionDesk emulation, for tests to inspect its state and turn its knobs.
func (s *Sandbox) LionDesk() *LionDesk { return s.liondesk }

// Graph returns the Facebook Graph emulation (the lead read and Lead Ads notifications), for
// tests to add leads, inspect its state and turn its knobs.
func (s *Sandbox) Graph() *Graph { return s.graph }

// Slack returns the Slack incoming-webhook emulation, for tests to read the messages it took.
func (s *Sandbox) Slack() *Slack { return s.slack }

// PagerDuty returns the PagerDuty Events API v2 emulation, for tests to read its events and
// alerts.
func (s *Sandbox) PagerDuty() *PagerDuty { return s.pd }

// Dotloop returns the Dotloop emulation (OAuth, loops, subscriptions, signed LOOP_UPDATED
// deliveries), for tests to inspect its state and turn its knobs.
func (s *Sandbox) Dotloop() *Dotloop { return s.dotloop }

// QuickBooks returns the QuickBooks Online emulation (OAuth, companies and their books), for
// tests to inspect its state and turn its knobs.
func (s *Sandbox) QuickBooks() *QuickBooks { return s.qbo }

// Close stops every vendor's background work (webhook deliveries) and waits for it.
func (s *Sandbox) Close() {
	for _, v := range s.vendors {
		v.Close()
	}
}
