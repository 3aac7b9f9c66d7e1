// Package sandbox emulates the public HTTP contracts of the third-party APIs that Brokerflow
// talks to, for development and tests. It is never a fake inside the product: the real adapters
// speak HTTP to it exactly as they would to the vendor, under a per-vendor path prefix.
//
// Each vendor is one file set (fub*.go for Follow Up Boss, liondesk*.go for LionDesk, graph*.go
// for the Facebook Graph lead read and Lead Ads notifications) that mounts its API under
// /<vendor>/ and its knobs and read-only state under /_sandbox/<vendor>/.
// The shared pieces are small: the router in this file, the sliding-window rate limiter and the
// fault queue.
package sandbox

import (
	"net/http"
	"time"
)

// Options configures a Sandbox. The zero value is usable: every vendor gets its defaults.
type Options struct {
	FUB      FUBOptions
	LionDesk LionDeskOptions
	Graph    GraphOptions
	// Now is the sandbox's clock; nil means time.Now. Tests set it to move rate-limit windows
	// and the FUB assignment delay forward without sleeping.
	Now func() time.Time
}

// Sandbox holds every vendor emulation and serves them all from one http.Handler.
type Sandbox struct {
	fub      *FUB
	liondesk *LionDesk
	graph    *Graph
	handler  http.Handler
}

// vendor is one emulated third-party API.
type vendor interface {
	// mount registers the vendor's API under its prefix and its knobs under /_sandbox/<name>/.
	mount(mux *http.ServeMux)
	// pageSection returns what the read-only HTML page shows about the vendor.
	pageSection() pageSection
}

// New returns a sandbox with empty state.
func New(o Options) *Sandbox {
	now := o.Now
	if now == nil {
		now = time.Now
	}
	s := &Sandbox{fub: newFUB(o.FUB, now), liondesk: newLionDesk(o.LionDesk, now), graph: newGraph(o.Graph, now)}
	vendors := []vendor{s.fub, s.liondesk, s.graph}

	mux := http.NewServeMux()
	for _, v := range vendors {
		v.mount(mux)
	}
	mux.Handle("GET /{$}", pageHandler(vendors))
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
