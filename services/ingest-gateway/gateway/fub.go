package gateway

import "github.com/brokerflow/brokerflow/pkg/sources"

// fubSpec is the built-in Follow Up Boss source, signed with keys
// (webhooksig.FUBSignature): its webhooks are CRM events, and their eventId
// is the delivery id.
func fubSpec(keys []string) sources.Spec {
	return sources.Spec{
		Name: "followupboss", Kind: "crm", Route: "/webhooks/followupboss", Format: sources.FormatJSON,
		Auth: sources.Auth{Scheme: sources.SchemeFUBSignature, Secrets: keys},
	}
}
