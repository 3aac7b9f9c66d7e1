package gateway

import (
	"github.com/brokerflow/brokerflow/pkg/sources"
)

// HeaderIntuitSignature carries QuickBooks Online's webhook signature: the
// base64 HMAC-SHA256 of the raw body, keyed by the app's verifier token
// (https://developer.intuit.com/app/developer/qbo/docs/develop/webhooks).
const HeaderIntuitSignature = "intuit-signature"

// quickbooksSpec is the built-in QuickBooks Online source, signed with the
// app's verifier tokens (several during a rotation). Its notifications are
// ledger events, in Intuit's legacy eventNotifications object or its
// CloudEvents array; the gateway keeps either as it came. The signature
// covers no delivery id, so the delivery id is a hash of the body: Intuit's
// retry of a notification is the same body, and stored once.
func quickbooksSpec(tokens []string) sources.Spec {
	return sources.Spec{
		Name: "quickbooks", Kind: sources.KindLedger, Route: "/webhooks/quickbooks", Format: sources.FormatJSON,
		ContentTypes: []string{"application/json", "application/cloudevents-batch+json", "application/cloudevents+json"},
		Auth: sources.Auth{
			Scheme: sources.SchemeHMACSHA256, Header: HeaderIntuitSignature, Encoding: "base64", Secrets: tokens,
		},
	}
}
