package gateway

import (
	"time"

	"github.com/brokerflow/brokerflow/pkg/sources"
)

// dotloopSpec is the built-in Dotloop source, signed with the subscriptions'
// keys (webhooksig.DotloopSignature): its webhooks are TMS events, and their
// eventId is the delivery id.
func dotloopSpec(keys []string, signed string, tolerance time.Duration) sources.Spec {
	return sources.Spec{
		Name: "dotloop", Kind: sources.KindTMS, Route: "/webhooks/dotloop", Format: sources.FormatJSON,
		Auth: sources.Auth{Scheme: sources.SchemeDotloopSignature, Secrets: keys, Signed: signed, Tolerance: sources.Duration(tolerance)},
	}
}
