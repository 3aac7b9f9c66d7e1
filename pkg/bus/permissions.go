package bus

import (
	"fmt"
	"slices"
)

// Users of the bus besides the services: each connects with its own
// credentials, and the server grants it exactly the subjects below.
const (
	// UserOperator serves the operator's CLI (streams apply, failures,
	// replay) and the apply step: it alone may create or change streams,
	// consumers and buckets, and publish redrive commands.
	UserOperator = "operator"
	// UserAnalyst may read and replay the streams, and nothing more.
	UserAnalyst = "analyst"
)

// ServiceSpec declares what a service does on the bus beyond its consumers
// (which Consumers declares): the subjects it publishes, the streams it
// only reads, and the KV keys it reads and writes.
type ServiceSpec struct {
	Name string
	// Publishes are the domain subjects it publishes (wildcards allowed).
	Publishes []string
	// Streams it checks or reads besides its consumers' (the gateway's WEBHOOKS).
	Streams []string
	// Watches are streams of which it reads only the state (how full they
	// are, for its metrics), never a message.
	Watches []string
	// KV is its access to buckets.
	KV []KVAccess
	// Pauses says its handlers may pause their consumers (PauseOnThrottle).
	Pauses bool
	// InspectsConsumers lets it read every consumer's state (its info) and
	// the messages of the event streams (not of the buckets): the alerter's
	// checks for a stuck consumer and a silent source.
	InspectsConsumers bool
}

// KVAccess is a service's access to the keys of one bucket.
type KVAccess struct {
	Bucket string
	// Keys is the key pattern, ">" for every key.
	Keys  string
	Write bool
}

// Services is every service's declaration. A new service adds its entry
// here beside its consumers, and gets its NATS user from it.
var Services = []ServiceSpec{
	// The gateway reports how full WEBHOOKS and LEADS are (StreamUsage).
	{Name: ServiceGateway, Publishes: []string{"webhook.received.>"}, Streams: []string{StreamWebhooks}, Watches: []string{StreamLeads}},
	{Name: ServiceNormalizer, Publishes: []string{"lead.normalized.>", "lead.rejected.>"}},
	{
		Name:      ServiceCRMSync,
		Publishes: []string{"crm.contact.>"},
		KV: []KVAccess{
			{Bucket: "idempotency", Keys: ServiceCRMSync + ".>", Write: true},
			{Bucket: "identity", Keys: ">", Write: true},
			{Bucket: "cursors", Keys: ServiceCRMSync + ".>", Write: true},
			{Bucket: "crm_contacts", Keys: ">", Write: true},
		},
		Pauses: true,
	},
	// tms-sync reads the lead a contact came with from LEADS (by sequence),
	// keeps its episodes under tms-sync.> and the TMS account's OAuth
	// tokens under their vendor's name. It stores the SkySlope sales it
	// polls in WEBHOOKS (SkySlope sends no webhooks for them), with its
	// cursor under tms-sync.>.
	{
		Name:      ServiceTMSSync,
		Publishes: []string{"tms.transaction.>", "webhook.received.tms.skyslope"},
		Streams:   []string{StreamLeads},
		KV: []KVAccess{
			{Bucket: "idempotency", Keys: ServiceTMSSync + ".>", Write: true},
			{Bucket: "oauth_tokens", Keys: ">", Write: true},
			{Bucket: "cursors", Keys: ServiceTMSSync + ".>", Write: true},
		},
		Pauses: true,
	},
	// ledger-sync reads the closing's transaction from the TMS (the TMS's
	// OAuth tokens) and books it in the ledger (the ledger's), and keeps
	// each transaction's booking, each booked document's payments and each
	// agent's year to date under ledger-sync.>. Without webhooks it polls
	// QuickBooks' Change Data Capture from a cursor under ledger-sync.> and
	// stores each change in WEBHOOKS as webhook.received.ledger.quickbooks.
	{
		Name:      ServiceLedgerSync,
		Publishes: []string{"ledger.commission.>", "webhook.received.ledger.quickbooks"},
		KV: []KVAccess{
			{Bucket: "idempotency", Keys: ServiceLedgerSync + ".>", Write: true},
			{Bucket: "oauth_tokens", Keys: ">", Write: true},
			{Bucket: "cursors", Keys: ServiceLedgerSync + ".>", Write: true},
		},
		Pauses: true,
	},
	// reporting only reads: it publishes nothing but its failure records
	// (and the outcome of their redrive), which every consumer may.
	{Name: ServiceReporting},
	// The alerter reads the message a failure names, in whatever stream,
	// how full every stream and how far behind every consumer is, and the
	// pollers' health records in cursors (read only; not the cursors).
	{
		Name:      ServiceAlerter,
		Publishes: []string{AlertSentSubject},
		Streams:   []string{StreamWebhooks, StreamLeads, StreamCRM, StreamTMS, StreamLedger, StreamOps, StreamReporting},
		KV: []KVAccess{
			{Bucket: AlertsBucket, Keys: ">", Write: true},
			{Bucket: "cursors", Keys: PollHealthKeys},
		},
		InspectsConsumers: true,
	},
}

// Permissions are the subjects a user may publish to and subscribe to. The
// server refuses everything else.
type Permissions struct {
	PublishAllow   []string
	PublishDeny    []string
	SubscribeAllow []string
}

// InboxPrefix is the reply-subject prefix of user's connection: a user may
// subscribe to its own inbox only, so no one reads another's replies.
func InboxPrefix(user string) string { return "_INBOX_" + user }

// Users is every user of the bus: each service, the operator and the analyst.
func Users() []string {
	out := make([]string, 0, len(Services)+2)
	for _, s := range Services {
		out = append(out, s.Name)
	}
	return append(out, UserOperator, UserAnalyst)
}

// UserPermissions returns the permissions of user, derived from the
// declarations: a service's consumers, subjects and buckets.
func UserPermissions(user string) (Permissions, error) {
	switch user {
	case UserOperator:
		return operatorPermissions(), nil
	case UserAnalyst:
		return analystPermissions(), nil
	}
	i := slices.IndexFunc(Services, func(s ServiceSpec) bool { return s.Name == user })
	if i < 0 {
		return Permissions{}, fmt.Errorf("bus: no user %q (users: %v)", user, Users())
	}
	return servicePermissions(Services[i]), nil
}

func servicePermissions(s ServiceSpec) Permissions {
	var pub []string
	pub = append(pub, s.Publishes...)
	consumers := ConsumersOf(s.Name)
	if len(consumers) > 0 {
		consumers = append(consumers, RedriveConsumer(s.Name))
		pub = append(pub, FailureSubject(s.Name), RedriveDoneSubject(s.Name))
	}
	streams := slices.Clone(s.Streams)
	for _, c := range consumers {
		pub = append(pub,
			"$JS.API.CONSUMER.INFO."+c.Stream+"."+c.Durable,
			"$JS.API.CONSUMER.MSG.NEXT."+c.Stream+"."+c.Durable,
			"$JS.ACK."+c.Stream+"."+c.Durable+".>",
		)
		if s.Pauses && c.Durable != RedriveConsumer(s.Name).Durable {
			pub = append(pub, "$JS.API.CONSUMER.PAUSE."+c.Stream+"."+c.Durable)
		}
		if !slices.Contains(streams, c.Stream) {
			streams = append(streams, c.Stream)
		}
	}
	for _, st := range streams {
		// Stream info, and a redrive's read of one message by sequence.
		pub = append(pub, "$JS.API.STREAM.INFO."+st, "$JS.API.DIRECT.GET."+st, "$JS.API.STREAM.MSG.GET."+st)
	}
	for _, st := range s.Watches {
		pub = append(pub, "$JS.API.STREAM.INFO."+st)
	}
	if s.InspectsConsumers {
		// The event streams only: a bucket's records (tokens, identities)
		// are not what a check reads.
		pub = append(pub, "$JS.API.CONSUMER.INFO.*.*")
		for _, st := range Streams {
			pub = append(pub, "$JS.API.DIRECT.GET."+st.Name, "$JS.API.DIRECT.GET."+st.Name+".>")
		}
	}
	for _, kv := range s.KV {
		stream := "KV_" + kv.Bucket
		pub = append(pub,
			"$JS.API.STREAM.INFO."+stream,
			"$JS.API.DIRECT.GET."+stream+".$KV."+kv.Bucket+"."+kv.Keys,
			"$JS.API.STREAM.MSG.GET."+stream,
		)
		if kv.Write {
			pub = append(pub, "$KV."+kv.Bucket+"."+kv.Keys)
		}
	}
	return Permissions{PublishAllow: pub, SubscribeAllow: []string{InboxPrefix(s.Name) + ".>"}}
}

// operatorPermissions: every JetStream API call (the apply step, failures,
// replay), redrive commands, failures resolved by hand, the spend per source (brokerflow spend set),
// the inboxes of its tools (the nats CLI uses _INBOX), and stream backups
// and restores (`nats backup`: it acks each snapshot chunk on
// $JS.SNAPSHOT.ACK and sends restore chunks to $JS.SNAPSHOT.RESTORE;
// docs/deploy.md).
func operatorPermissions() Permissions {
	return Permissions{
		PublishAllow:   []string{"$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$JS.SNAPSHOT.>", "ops.redrive.*", "ops.resolved.*", SpendSubjects},
		SubscribeAllow: []string{InboxPrefix(UserOperator) + ".>", "_INBOX.>"},
	}
}

// analystPermissions: stream information, reading messages, and ordered
// (ephemeral) consumers to replay with; never a change to a stream, a
// bucket, or a declared consumer, and no publish to any domain subject.
func analystPermissions() Permissions {
	var deny []string
	for _, c := range AllConsumers() {
		deny = append(deny,
			"$JS.API.CONSUMER.CREATE."+c.Stream+"."+c.Durable, "$JS.API.CONSUMER.CREATE."+c.Stream+"."+c.Durable+".>",
			"$JS.API.CONSUMER.DURABLE.CREATE."+c.Stream+"."+c.Durable,
			"$JS.API.CONSUMER.DELETE."+c.Stream+"."+c.Durable,
			"$JS.API.CONSUMER.PAUSE."+c.Stream+"."+c.Durable,
			"$JS.API.CONSUMER.MSG.NEXT."+c.Stream+"."+c.Durable,
			"$JS.ACK."+c.Stream+"."+c.Durable+".>",
		)
	}
	return Permissions{
		PublishAllow: []string{
			"$JS.API.INFO",
			"$JS.API.STREAM.NAMES", "$JS.API.STREAM.LIST", "$JS.API.STREAM.INFO.*",
			"$JS.API.STREAM.MSG.GET.*", "$JS.API.DIRECT.GET.*", "$JS.API.DIRECT.GET.*.>",
			"$JS.API.CONSUMER.CREATE.*", "$JS.API.CONSUMER.CREATE.*.>",
			"$JS.API.CONSUMER.INFO.*.*", "$JS.API.CONSUMER.MSG.NEXT.*.*", "$JS.API.CONSUMER.DELETE.*.*",
			"$JS.API.CONSUMER.NAMES.*", "$JS.API.CONSUMER.LIST.*",
			"$JS.ACK.>", "$JS.FC.>",
		},
		PublishDeny:    append(deny, "$JS.API.CONSUMER.DURABLE.CREATE.>"),
		SubscribeAllow: []string{InboxPrefix(UserAnalyst) + ".>", "_INBOX.>"},
	}
}
