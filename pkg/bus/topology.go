// Package bus is Brokerflow's JetStream layer: the declarations of every
// stream, consumer and KV bucket, the publisher that sets the contract's
// headers, and the consume loop that runs handlers inside one retry and
// failure policy.
package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	StreamWebhooks = "WEBHOOKS"
	StreamLeads    = "LEADS"
	StreamCRM      = "CRM"
	StreamTMS      = "TMS"
	StreamLedger   = "LEDGER"
	StreamOps      = "OPS"
	// StreamReporting holds the inputs of the reporting read model that no
	// other stream carries: the spend per lead source and month.
	StreamReporting = "REPORTING"
)

// Advisory subjects captured in OPS, the safety net for handlers that crash
// before they write a failure record.
const (
	AdvisoryMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.>"
	AdvisoryTerminated    = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.>"
)

// StreamSpec declares one stream.
type StreamSpec struct {
	Name        string
	Subjects    []string
	Description string
	// AtomicPublish allows JetStream atomic batch publishes into the stream
	// (nats-server 2.12+): a batch is stored whole or not at all, and is
	// written and synced once. The gateway group-commits webhooks with it.
	AtomicPublish bool
	// KeepUnprocessed holds work not yet done: once the stream is at its
	// size limit (MaxBytes) it refuses new messages (DiscardNew), so the
	// publisher fails and its sender retries, rather than dropping the
	// oldest messages, which may not have been consumed yet.
	KeepUnprocessed bool
}

// Streams is every stream Brokerflow uses.
var Streams = []StreamSpec{
	{Name: StreamWebhooks, Subjects: []string{"webhook.received.*.*"}, Description: "raw inbound webhooks; everything downstream can be rebuilt from it", AtomicPublish: true, KeepUnprocessed: true},
	{Name: StreamLeads, Subjects: []string{"lead.>"}, Description: "normalized and rejected leads", KeepUnprocessed: true},
	{Name: StreamCRM, Subjects: []string{"crm.>"}, Description: "what happened in the CRM"},
	{Name: StreamTMS, Subjects: []string{"tms.>"}, Description: "transactions opened, updated and closed"},
	{Name: StreamLedger, Subjects: []string{"ledger.>"}, Description: "commission booked and paid"},
	{Name: StreamOps, Subjects: []string{"ops.>", AdvisoryMaxDeliveries, AdvisoryTerminated}, Description: "failure records, redrive commands, alerts sent, dead-letter advisories"},
	{Name: StreamReporting, Subjects: []string{"reporting.>"}, Description: "inputs of the reporting read model: spend per lead source and month"},
}

// ConsumerSpec declares one durable pull consumer of a service.
type ConsumerSpec struct {
	Service        string
	Stream         string
	Durable        string
	FilterSubjects []string
	// MaxAckPending bounds the messages in flight; the client never pulls more.
	MaxAckPending int
}

// Service names, used in consumer names, ce-source and ops subjects.
const (
	ServiceGateway    = "ingest-gateway"
	ServiceNormalizer = "normalizer"
	ServiceCRMSync    = "crm-sync"
	ServiceReporting  = "reporting"
	ServiceAlerter    = "alerter"
	ServiceTMSSync    = "tms-sync"
	ServiceLedgerSync = "ledger-sync"
)

// The declared consumers, one typed value each. A service binds its
// handlers to these values (Runner.Handle), so a rename fails to compile.
// A consumer filters by kind, never by a list of sources: sources are
// configuration.
var (
	// NormalizerWebhooks is every lead webhook, whatever its source.
	NormalizerWebhooks = ConsumerSpec{Service: ServiceNormalizer, Stream: StreamWebhooks, Durable: "normalizer", FilterSubjects: []string{"webhook.received.lead.>"}, MaxAckPending: 256}
	// CRMSyncLeads is every normalized lead. Sized to the CRM's pace: a
	// few calls per lead against a quota of 25 calls a second (Follow Up
	// Boss, 250 per 10 s).
	CRMSyncLeads = ConsumerSpec{Service: ServiceCRMSync, Stream: StreamLeads, Durable: "crm-sync", FilterSubjects: []string{"lead.normalized.>"}, MaxAckPending: 64}
	// CRMSyncChanges is every CRM webhook (a stage moved, a name changed):
	// each costs a read of the contact.
	CRMSyncChanges = ConsumerSpec{Service: ServiceCRMSync, Stream: StreamWebhooks, Durable: "crm-sync-changes", FilterSubjects: []string{"webhook.received.crm.>"}, MaxAckPending: 64}

	// TMSSyncCRM is the CRM's changes tms-sync follows: a stage that opens
	// or ends an episode, a contact's new details, and the synced leads
	// that say which lead (and property) a contact came with. Sized to
	// Dotloop's 100 calls a minute per user.
	TMSSyncCRM = ConsumerSpec{Service: ServiceTMSSync, Stream: StreamCRM, Durable: "tms-sync-crm", FilterSubjects: []string{"crm.contact.stage_changed", "crm.contact.updated", "crm.contact.synced"}, MaxAckPending: 16}
	// TMSSyncWebhooks is every TMS webhook (a loop updated).
	TMSSyncWebhooks = ConsumerSpec{Service: ServiceTMSSync, Stream: StreamWebhooks, Durable: "tms-sync-webhooks", FilterSubjects: []string{"webhook.received.tms.>"}, MaxAckPending: 16}

	// LedgerSyncClosings is every closing the TMS announces. Sized to
	// QuickBooks Online's 10 requests a second per company: a closing costs
	// a handful of calls.
	LedgerSyncClosings = ConsumerSpec{Service: ServiceLedgerSync, Stream: StreamTMS, Durable: "ledger-sync", FilterSubjects: []string{"tms.transaction.closed"}, MaxAckPending: 8}
	// LedgerSyncPayments is every ledger webhook (QuickBooks' payments and
	// invoices changed), and the changes ledger-sync's Change Data Capture
	// poller stores beside them. Each costs a read or two of the ledger.
	LedgerSyncPayments = ConsumerSpec{Service: ServiceLedgerSync, Stream: StreamWebhooks, Durable: "ledger-sync-payments", FilterSubjects: []string{"webhook.received.ledger.>"}, MaxAckPending: 8}

	// The reporting read model takes every event of the streams it
	// projects; a local database keeps up with far more than 256 at once.
	ReportingLeads  = ConsumerSpec{Service: ServiceReporting, Stream: StreamLeads, Durable: "reporting-leads", FilterSubjects: []string{"lead.>"}, MaxAckPending: 256}
	ReportingCRM    = ConsumerSpec{Service: ServiceReporting, Stream: StreamCRM, Durable: "reporting-crm", FilterSubjects: []string{"crm.>"}, MaxAckPending: 256}
	ReportingTMS    = ConsumerSpec{Service: ServiceReporting, Stream: StreamTMS, Durable: "reporting-tms", FilterSubjects: []string{"tms.>"}, MaxAckPending: 256}
	ReportingLedger = ConsumerSpec{Service: ServiceReporting, Stream: StreamLedger, Durable: "reporting-ledger", FilterSubjects: []string{"ledger.>"}, MaxAckPending: 256}
	ReportingSpend  = ConsumerSpec{Service: ServiceReporting, Stream: StreamReporting, Durable: "reporting-spend", FilterSubjects: []string{SpendSubjects}, MaxAckPending: 256}
)

// The alerter's consumers: what failed, what the server saw fail (the
// captured dead-letter advisories, for a handler that crashed before it
// could write a failure record), what was redriven, and rejected leads.
// Each is a trickle unless something is wrong, and the alerter handles them
// one at a time.
var (
	AlerterFailures   = ConsumerSpec{Service: ServiceAlerter, Stream: StreamOps, Durable: "alerter-failures", FilterSubjects: []string{"ops.failure.>"}, MaxAckPending: 64}
	AlerterAdvisories = ConsumerSpec{Service: ServiceAlerter, Stream: StreamOps, Durable: "alerter-advisories", FilterSubjects: []string{AdvisoryMaxDeliveries, AdvisoryTerminated}, MaxAckPending: 64}
	AlerterRedrives   = ConsumerSpec{Service: ServiceAlerter, Stream: StreamOps, Durable: "alerter-redrives", FilterSubjects: []string{"ops.redrive.done.>"}, MaxAckPending: 64}
	AlerterRejected   = ConsumerSpec{Service: ServiceAlerter, Stream: StreamLeads, Durable: "alerter-rejected", FilterSubjects: []string{"lead.rejected.>"}, MaxAckPending: 64}
	// AlerterResolved is every failure a person resolved by hand.
	AlerterResolved = ConsumerSpec{Service: ServiceAlerter, Stream: StreamOps, Durable: "alerter-resolved", FilterSubjects: []string{"ops.resolved.>"}, MaxAckPending: 64}
)

// Consumers is every durable consumer of every service.
var Consumers = []ConsumerSpec{
	NormalizerWebhooks, CRMSyncLeads, CRMSyncChanges,
	TMSSyncCRM, TMSSyncWebhooks,
	LedgerSyncClosings, LedgerSyncPayments,
	ReportingLeads, ReportingCRM, ReportingTMS, ReportingLedger, ReportingSpend,
	AlerterFailures, AlerterAdvisories, AlerterRedrives, AlerterRejected, AlerterResolved,
}

// AlertSentSubject is where the alerter announces each alert it delivered.
const AlertSentSubject = "ops.alert.sent"

// SpendSubjects is every spend record: reporting.spend.<source>.<month>.
const SpendSubjects = "reporting.spend.>"

// SpendSubject is where the spend of source in month ("YYYY-MM") is set, so
// that the stream's last message on it is the spend in force.
func SpendSubject(source, month string) string { return "reporting.spend." + source + "." + month }

// RedriveConsumer is the durable consumer on which service receives
// ops.redrive.<service> commands.
func RedriveConsumer(service string) ConsumerSpec {
	return ConsumerSpec{
		Service:        service,
		Stream:         StreamOps,
		Durable:        service + "-redrive",
		FilterSubjects: []string{RedriveSubject(service)},
		MaxAckPending:  16,
	}
}

// FailureSubject is where service publishes its failure records.
func FailureSubject(service string) string { return "ops.failure." + service }

// RedriveSubject is where redrive commands for service are published.
func RedriveSubject(service string) string { return "ops.redrive." + service }

// RedriveDoneSubject is where service announces a redrive that succeeded.
func RedriveDoneSubject(service string) string { return "ops.redrive.done." + service }

// ResolvedSubject is where a failure of service that a person resolved by
// hand is announced (brokerflow failures resolve). It is not under
// ops.failure.>, which holds failure records only.
func ResolvedSubject(service string) string { return "ops.resolved." + service }

// BucketSpec declares one KV bucket.
type BucketSpec struct {
	Name        string
	Description string
	History     uint8
	// TTL of 0 keeps entries forever.
	TTL time.Duration
}

// Buckets is every KV bucket.
var Buckets = []BucketSpec{
	{Name: "idempotency", Description: "what was done for each event, so a redelivery has no second effect", History: 1},
	{Name: "identity", Description: "CRM contact ids by hashed email and E.164 phone", History: 1},
	{Name: "oauth_tokens", Description: "rotating OAuth refresh tokens (QuickBooks, Dotloop), one record per vendor account", History: 5},
	{Name: "cursors", Description: "poll cursors for systems without webhooks", History: 1},
	{Name: "crm_contacts", Description: "last known stage, name, emails and phones of each CRM contact, to tell what a CRM webhook changed", History: 1},
	{Name: AlertsBucket, Description: "the alerter's state: each failed message alerted on, each alert group, each channel an alert reached", History: 1},
}

// AlertsBucket is the alerter's KV bucket.
const AlertsBucket = "alerts"

// PollHealthKeys is the pattern of the pollers' health keys in the cursors
// bucket ("<service>.health.<poller>", each in its service's own prefix):
// the keys the alerter may read there.
const PollHealthKeys = "*.health.>"

// Topology holds the deployment-dependent settings applied to the declarations.
type Topology struct {
	// Replicas is 1 on an embedded server and 3 on a cluster.
	Replicas int
	// MaxAge and MaxBytes bound each stream; 0 means unlimited.
	MaxAge   time.Duration
	MaxBytes int64
	// DuplicateWindow is the Nats-Msg-Id dedup window.
	DuplicateWindow time.Duration
	// AckWait is how long a delivery may go without ack or progress before
	// it is redelivered. The consume loop sends progress while a handler runs.
	AckWait time.Duration
	// MaxDeliver is the number of deliveries per message, including the first.
	MaxDeliver int
}

// ErrInvalidTopology is wrapped by every validation error of a Topology.
var ErrInvalidTopology = errors.New("bus: invalid topology")

// DefaultTopology is the embedded single-server default.
func DefaultTopology() Topology {
	return Topology{
		Replicas:        1,
		MaxAge:          0,
		DuplicateWindow: time.Hour,
		AckWait:         30 * time.Second,
		MaxDeliver:      len(DefaultSchedule) + 1,
	}
}

// Validate reports the first invalid setting.
func (t Topology) Validate() error {
	switch {
	case t.Replicas < 1 || t.Replicas > 5:
		return fmt.Errorf("%w: replicas %d not in 1..5", ErrInvalidTopology, t.Replicas)
	case t.DuplicateWindow <= 0:
		return fmt.Errorf("%w: duplicate window must be positive", ErrInvalidTopology)
	case t.MaxAge != 0 && t.MaxAge < t.DuplicateWindow:
		return fmt.Errorf("%w: max age %s shorter than the duplicate window %s", ErrInvalidTopology, t.MaxAge, t.DuplicateWindow)
	case t.AckWait < 100*time.Millisecond:
		return fmt.Errorf("%w: ack wait %s too short", ErrInvalidTopology, t.AckWait)
	case t.MaxDeliver < 1:
		return fmt.Errorf("%w: max deliver must be at least 1", ErrInvalidTopology)
	}
	return nil
}

// StreamConfig returns the JetStream configuration of spec under t.
func (t Topology) StreamConfig(spec StreamSpec) jetstream.StreamConfig {
	maxBytes := t.MaxBytes
	if maxBytes == 0 {
		maxBytes = -1
	}
	discard := jetstream.DiscardOld
	if spec.KeepUnprocessed {
		discard = jetstream.DiscardNew
	}
	return jetstream.StreamConfig{
		Name:        spec.Name,
		Description: spec.Description,
		Subjects:    spec.Subjects,
		// Limits retention, never work-queue: analysts replay the streams.
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Replicas:    t.Replicas,
		MaxAge:      t.MaxAge,
		MaxBytes:    maxBytes,
		Discard:     discard,
		Duplicates:  t.DuplicateWindow,
		AllowDirect: true,

		AllowAtomicPublish: spec.AtomicPublish,
	}
}

// ConsumerConfig returns the JetStream configuration of spec under t.
func (t Topology) ConsumerConfig(spec ConsumerSpec) jetstream.ConsumerConfig {
	cfg := jetstream.ConsumerConfig{
		Durable:       spec.Durable,
		Description:   "brokerflow " + spec.Service,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       t.AckWait,
		MaxDeliver:    t.MaxDeliver,
		MaxAckPending: spec.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		Replicas:      t.Replicas,
	}
	if len(spec.FilterSubjects) == 1 {
		cfg.FilterSubject = spec.FilterSubjects[0]
	} else {
		cfg.FilterSubjects = spec.FilterSubjects
	}
	return cfg
}

// Apply creates or updates every stream, consumer and bucket. It is
// idempotent, and safe to run from several places at once. It is the only
// code that changes the server: `brokerflow streams apply` (a Job on
// Kubernetes) and the all-in-one at its start call it; a service only
// checks its consumers (Verify).
func Apply(ctx context.Context, js jetstream.JetStream, t Topology) error {
	if err := t.Validate(); err != nil {
		return err
	}
	for _, s := range Streams {
		if _, err := js.CreateOrUpdateStream(ctx, t.StreamConfig(s)); err != nil {
			return fmt.Errorf("apply stream %s: %w", s.Name, err)
		}
	}
	for _, c := range AllConsumers() {
		if err := ApplyConsumer(ctx, js, t, c); err != nil {
			return err
		}
	}
	for _, b := range Buckets {
		cfg := jetstream.KeyValueConfig{
			Bucket:      b.Name,
			Description: b.Description,
			History:     b.History,
			TTL:         b.TTL,
			Storage:     jetstream.FileStorage,
			Replicas:    t.Replicas,
		}
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("apply bucket %s: %w", b.Name, err)
		}
	}
	return nil
}

// AllConsumers is Consumers plus one redrive consumer per service.
func AllConsumers() []ConsumerSpec {
	all := append([]ConsumerSpec(nil), Consumers...)
	seen := map[string]bool{}
	for _, c := range Consumers {
		if !seen[c.Service] {
			seen[c.Service] = true
			all = append(all, RedriveConsumer(c.Service))
		}
	}
	return all
}

// ConsumersOf returns the declared consumers of service, without its redrive consumer.
func ConsumersOf(service string) []ConsumerSpec {
	var out []ConsumerSpec
	for _, c := range Consumers {
		if c.Service == service {
			out = append(out, c)
		}
	}
	return out
}

// ApplyConsumer creates or updates one consumer under t. Tests and tools
// declaring a consumer outside Consumers use it.
func ApplyConsumer(ctx context.Context, js jetstream.JetStream, t Topology, spec ConsumerSpec) error {
	if _, err := js.CreateOrUpdateConsumer(ctx, spec.Stream, t.ConsumerConfig(spec)); err != nil {
		return fmt.Errorf("apply consumer %s on %s: %w", spec.Durable, spec.Stream, err)
	}
	return nil
}

// ErrNotApplied is wrapped by Verify's errors: the server does not hold a
// declaration as the code declares it.
var ErrNotApplied = errors.New("bus: declarations not applied")

// ApplyHint is the command that applies the declarations, named in
// Verify's errors.
const ApplyHint = "run `brokerflow streams apply` (or start the all-in-one `brokerflow run`)"

// ServerConsumer is what the server holds for a consumer, which the consume
// loop follows rather than its own configuration.
type ServerConsumer struct {
	MaxDeliver    int
	AckWait       time.Duration
	MaxAckPending int
}

// Verify reads spec's consumer from the server. It fails, naming the apply
// command, when the consumer is missing, or when its filter or ack policy
// differs from the declaration; other settings (MaxDeliver, AckWait) are the
// deployment's choice, and are returned for the consume loop to follow.
func Verify(ctx context.Context, js jetstream.JetStream, spec ConsumerSpec) (ServerConsumer, error) {
	cons, err := js.Consumer(ctx, spec.Stream, spec.Durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return ServerConsumer{}, fmt.Errorf("%w: consumer %s on stream %s does not exist; %s", ErrNotApplied, spec.Durable, spec.Stream, ApplyHint)
	}
	if err != nil {
		return ServerConsumer{}, fmt.Errorf("consumer %s on %s: %w", spec.Durable, spec.Stream, err)
	}
	cfg := cons.CachedInfo().Config
	filters := cfg.FilterSubjects
	if cfg.FilterSubject != "" {
		filters = []string{cfg.FilterSubject}
	}
	want := slices.Sorted(slices.Values(spec.FilterSubjects))
	if got := slices.Sorted(slices.Values(filters)); !slices.Equal(got, want) {
		return ServerConsumer{}, fmt.Errorf("%w: consumer %s on stream %s filters %v, declared %v; %s", ErrNotApplied, spec.Durable, spec.Stream, got, want, ApplyHint)
	}
	if cfg.AckPolicy != jetstream.AckExplicitPolicy {
		return ServerConsumer{}, fmt.Errorf("%w: consumer %s on stream %s has ack policy %s, declared explicit; %s", ErrNotApplied, spec.Durable, spec.Stream, cfg.AckPolicy, ApplyHint)
	}
	return ServerConsumer{MaxDeliver: cfg.MaxDeliver, AckWait: cfg.AckWait, MaxAckPending: cfg.MaxAckPending}, nil
}

// VerifyStream fails, naming the apply command, when stream does not exist.
// A publishing service (the gateway) checks its stream with it at start.
func VerifyStream(ctx context.Context, js jetstream.JetStream, stream string) error {
	_, err := js.Stream(ctx, stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("%w: stream %s does not exist; %s", ErrNotApplied, stream, ApplyHint)
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	return nil
}
