package gateway

import "github.com/brokerflow/brokerflow/pkg/sources"

// FUBRoute is where the gateway takes Follow Up Boss's webhooks: the path
// of the URL registered with Follow Up Boss (brokerflow crm webhooks register).
const FUBRoute = "/webhooks/followupboss"

// fubSpec is the built-in Follow Up Boss source, signed with keys
// (webhooksig.FUBSignature): its webhooks are CRM events, and their eventId
// is the delivery id.
func fubSpec(keys []string) sources.Spec {
	return sources.Spec{
		Name: "followupboss", Kind: "crm", Route: FUBRoute, Format: sources.FormatJSON,
		Auth: sources.Auth{Scheme: sources.SchemeFUBSignature, Secrets: keys},
	}
}
