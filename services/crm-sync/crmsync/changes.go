package crmsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/logging"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	webhookv1 "github.com/brokerflow/brokerflow/proto/brokerflow/webhook/v1"
)

// Subjects of the CRM's changes.
const (
	SubjectContactStageChanged = "crm.contact.stage_changed"
	SubjectContactUpdated      = "crm.contact.updated"
)

// contactsBucket keeps the last known stage, name, emails and phones of each
// contact, so that a webhook that only says "this person changed" can be
// turned into what changed.
const contactsBucket = "crm_contacts"

// PersonReader reads one contact from the CRM.
type PersonReader interface {
	// Person returns the contact, or an error wrapping crm.ErrContactNotFound.
	Person(ctx context.Context, id string) (crm.Person, error)
}

// ChangeSource is a CRM that announces changes with webhooks: it parses
// them, and reads the contacts they name. The Follow Up Boss adapter is one.
type ChangeSource interface {
	PersonReader
	// Name is the CRM's name, which is also its gateway source name.
	Name() string
	// ParseWebhook reads a webhook body. An error is permanent: the body is
	// authentic (the gateway verified it) but not what the CRM sends.
	ParseWebhook(body []byte) (crm.Notification, error)
}

// changes turns CRM webhooks (webhook.received.crm.>), and what the poller
// finds, into crm.contact.stage_changed and crm.contact.updated. It compares the
// contact the CRM shows now with the one kept in the crm_contacts bucket,
// and takes that record with compare-and-swap, so that replicas and
// redeliveries announce each change once.
type changes struct {
	crm    CRM
	js     jetstream.JetStream
	pub    *bus.Publisher
	active []string
	now    func() time.Time

	mu sync.Mutex
	kv jetstream.KeyValue
}

// activeStages are the configured active-client stages, trimmed.
func (c Config) activeStages() []string {
	var active []string
	for _, st := range c.ActiveStages {
		if st = strings.TrimSpace(st); st != "" {
			active = append(active, st)
		}
	}
	return active
}

// IsActiveStage reports whether stage is one of the active-client stages,
// case-insensitively.
func (c Config) IsActiveStage(stage string) bool {
	return isActive(c.activeStages(), stage)
}

func isActive(active []string, stage string) bool {
	return slices.ContainsFunc(active, func(a string) bool { return strings.EqualFold(a, strings.TrimSpace(stage)) })
}

func (c *changes) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kv != nil {
		return c.kv, nil
	}
	kv, err := c.js.KeyValue(ctx, contactsBucket)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", contactsBucket, err)
	}
	c.kv = kv
	return kv, nil
}

// HandleChange handles one CRM webhook.
func (c *changes) HandleChange(ctx context.Context, m *bus.Message) error {
	log := logging.FromContext(ctx)
	var wr webhookv1.WebhookReceived
	if err := proto.Unmarshal(m.Data, &wr); err != nil {
		return bus.Undecodable("decode WebhookReceived at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	src, ok := c.crm.(ChangeSource)
	if !ok || src.Name() != wr.GetSource() {
		log.Info("CRM webhook ignored: it is not from the configured CRM, or that CRM sends no changes",
			"source", wr.GetSource(), "crm", c.crm.Name())
		return nil
	}
	n, err := src.ParseWebhook(wr.GetBody())
	if err != nil {
		return bus.Permanentf("parse %s webhook %s: %w", src.Name(), wr.GetDeliveryId(), err)
	}
	if n.Kind == crm.ChangeOther {
		log.Info("CRM webhook ignored: the event does not change a stage, a name, emails or phones",
			"source", wr.GetSource(), "event", n.Event, "event_id", n.EventID)
		return nil
	}
	if n.Created.IsZero() {
		n.Created = wr.GetReceivedAt().AsTime()
	}
	if n.Kind == crm.ChangeCreated && m.Attempt == 1 {
		if err := c.awaitOwnCreation(ctx, src.Name(), n.ContactIDs); err != nil {
			return err
		}
	}
	ref := &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject}
	for _, id := range n.ContactIDs {
		read := func(ctx context.Context) (crm.Person, error) { return src.Person(ctx, id) }
		if err := c.syncContact(ctx, src.Name(), id, read, n, ref); err != nil {
			return err
		}
	}
	return nil
}

// ownCreationWait is how long a creation webhook for a contact without a
// record waits, once, for crm-sync to keep the person it may have just
// created (the webhook can outrun the answer to the call that created them).
const ownCreationWait = 500 * time.Millisecond

// awaitOwnCreation asks for the webhook to come again after
// ownCreationWait when a contact it names has no record yet: if crm-sync
// created them, their record is kept by then and they need no read.
func (c *changes) awaitOwnCreation(ctx context.Context, crmName string, ids []string) error {
	kv, err := c.bucket(ctx)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if _, rev, err := loadContact(ctx, kv, contactKey(crmName, id)); err != nil {
			return err
		} else if rev == 0 {
			return bus.RetryAfter(bus.WithCode("crm.creation_pending", fmt.Errorf(
				"contact %s of %s: created, and not kept yet; perhaps crm-sync created it", id, crmName)), ownCreationWait)
		}
	}
	return nil
}

// contactRecord is a contact's entry in crm_contacts. Pending holds the
// events of the last change until they are published, so that a crash
// between taking the record and publishing loses nothing.
type contactRecord struct {
	Stage     string         `json:"stage"`
	FirstName string         `json:"first_name"`
	LastName  string         `json:"last_name"`
	Emails    []string       `json:"emails"`
	Phones    []string       `json:"phones"`
	Pending   []pendingEvent `json:"pending,omitempty"`
	// Created says the record is the person as the CRM answered
	// crm-sync's own call that created them, kept before their creation
	// webhook came: that webhook then needs no read of the person, and is
	// announced as the first sight of them.
	Created bool `json:"created,omitempty"`
	// Updated is when the CRM last updated the person kept (zero when it
	// did not say, and in records kept before it was): a poll's listing
	// that is not newer is read again before it is compared.
	Updated time.Time `json:"updated,omitzero"`
}

// learnCreated keeps p, whom crm-sync's own call just created, as the
// contact's record, unless a record exists already (the creation webhook
// was quicker). A failure only costs the webhook a read of the person.
func (c *changes) learnCreated(ctx context.Context, crmName string, p crm.Person) {
	kv, err := c.bucket(ctx)
	if err == nil {
		rec := recordOf(p)
		rec.Created = true
		_, err = storeContact(ctx, kv, contactKey(crmName, p.ID), rec, 0)
	}
	if err != nil && !errors.Is(err, errConflict) {
		logging.FromContext(ctx).Warn("could not keep the created contact; its webhook will read it", "contact_id", p.ID, "err", err)
	}
}

// person is the record as the contact.
func (r contactRecord) person(id string) crm.Person {
	return crm.Person{ID: id, Stage: r.Stage, FirstName: r.FirstName, LastName: r.LastName,
		Emails: slices.Clone(r.Emails), Phones: slices.Clone(r.Phones), Updated: r.Updated}
}

type pendingEvent struct {
	Subject string `json:"subject"`
	ID      string `json:"id"`
	Data    []byte `json:"data"`
}

// casAttempts bounds the compare-and-swap loop on one contact.
const casAttempts = 8

// syncContact compares contact id with its record and announces the
// difference. Each transition is computed against one record revision and
// stored with compare-and-swap on it, so it is announced once; its event ids
// carry that revision.
func (c *changes) syncContact(ctx context.Context, crmName, id string, read func(context.Context) (crm.Person, error), n crm.Notification, ref *commonv1.MessageRef) error {
	kv, err := c.bucket(ctx)
	if err != nil {
		return err
	}
	key := contactKey(crmName, id)
	for range casAttempts {
		rec, rev, err := loadContact(ctx, kv, key)
		if err != nil {
			return err
		}
		if len(rec.Pending) > 0 {
			// A change taken but perhaps not announced: announce it (the
			// ids are the same, so JetStream drops what was published).
			if err := c.publish(ctx, rec.Pending); err != nil {
				return err
			}
			rec.Pending = nil
			if rev, err = storeContact(ctx, kv, key, rec, rev); errors.Is(err, errConflict) {
				continue
			} else if err != nil {
				return err
			}
		}
		var p crm.Person
		if rec.Created && n.Kind == crm.ChangeCreated {
			// crm-sync created the person and kept what the CRM answered.
			p = rec.person(id)
		} else if p, err = read(ctx); err != nil {
			return fmt.Errorf("read %s contact %s: %w", crmName, id, err)
		}
		if n.Kind == crm.ChangePolled && (rev == 0 || !sameContact(rec, recordOf(p))) {
			// A listing that differs from the record, or names a person
			// not known, only says that the person changed: they are read,
			// as for a webhook, so that neither a listing taken before a
			// change a webhook brought (it would move them back) nor a field
			// a listing leaves out is announced. A change whose webhook came
			// lists equal to the record and costs no read. A CRM that cannot
			// read one contact (LionDesk) compares its listing, unless it is
			// older than the record.
			fresh, ok, err := c.reread(ctx, crmName, id)
			switch {
			case errors.Is(err, crm.ErrContactNotFound):
				return nil // gone, or hidden, since the listing
			case err != nil:
				return err
			case ok:
				p = fresh
			case rev != 0 && p.Updated.Before(rec.Updated):
				return nil
			}
		}
		next := recordOf(p)
		events, err := c.diff(crmName, id, rec, rev, p, n, ref)
		if err != nil {
			return err
		}
		if len(events) == 0 {
			if rev != 0 && !rec.Created && sameContact(rec, next) {
				return nil
			}
			// First sight, or a change outside what is announced: keep it.
			if _, err := storeContact(ctx, kv, key, next, rev); errors.Is(err, errConflict) {
				continue
			} else if err != nil {
				return err
			}
			return nil
		}
		next.Pending = events
		newRev, err := storeContact(ctx, kv, key, next, rev)
		if errors.Is(err, errConflict) {
			continue
		} else if err != nil {
			return err
		}
		if err := c.publish(ctx, events); err != nil {
			return err
		}
		next.Pending = nil
		if _, err := storeContact(ctx, kv, key, next, newRev); err != nil && !errors.Is(err, errConflict) {
			// The events are out; whoever reads the record next publishes
			// them again under the same ids, which JetStream drops.
			logging.FromContext(ctx).Warn("could not clear published events", "contact_id", id, "err", err)
		}
		for _, e := range events {
			logging.FromContext(ctx).Info("CRM change announced", "subject", e.Subject, "id", e.ID, "contact_id", id, "crm", crmName)
		}
		return nil
	}
	return fmt.Errorf("contact %s of %s changed concurrently %d times; will retry", id, crmName, casAttempts)
}

// reread reads the contact a poll listed; false when the CRM cannot read
// one contact.
func (c *changes) reread(ctx context.Context, crmName, id string) (crm.Person, bool, error) {
	r, ok := c.crm.(PersonReader)
	if !ok {
		return crm.Person{}, false, nil
	}
	p, err := r.Person(ctx, id)
	if err != nil {
		return crm.Person{}, false, fmt.Errorf("read %s contact %s again: %w", crmName, id, err)
	}
	return p, true, nil
}

// diff returns the events that announce the change from rec (revision rev,
// 0 when the contact was not seen before) to p.
func (c *changes) diff(crmName, id string, rec contactRecord, rev uint64, p crm.Person, n crm.Notification, ref *commonv1.MessageRef) ([]pendingEvent, error) {
	now := c.now()
	at := n.Created
	if at.IsZero() {
		at = now
	}
	corr := &commonv1.Correlation{ContactId: id, Source: p.Source}
	// A record kept from crm-sync's own creation is not a sight of the
	// contact's changes yet, but it knows the stage and the details the
	// person was created with: a change from them is announced, whichever
	// of the person's webhooks comes first (Follow Up Boss sends
	// peopleStageUpdated and peopleUpdated for one move, and either may be
	// handled before peopleCreated).
	firstSight := rev == 0 || rec.Created
	suffix := fmt.Sprintf("%s:%s:%d", crmName, id, rev)

	var out []pendingEvent
	stageChanged := rev != 0 && rec.Stage != p.Stage && (!rec.Created || rec.Stage != "")
	// Without a record the old stage is unknown: announce the stage when the
	// CRM says it moved, or when it is an active-client stage, so a client
	// entered directly at that stage is not missed.
	if firstSight && (n.Kind == crm.ChangeStage || isActive(c.active, p.Stage)) {
		stageChanged = true
	}
	if stageChanged {
		ev := &crmv1.ContactStageChanged{
			ContactId: id, Crm: crmName, OldStage: rec.Stage, NewStage: p.Stage,
			ActiveClient: isActive(c.active, p.Stage), ChangedAt: timestamppb.New(at),
			Correlation: corr, Webhook: ref, FirstName: p.FirstName, LastName: p.LastName,
			Emails: slices.Clone(p.Emails), Phones: slices.Clone(p.Phones), CrmEventId: n.EventID,
		}
		e, err := pending(SubjectContactStageChanged, SubjectContactStageChanged+":"+suffix, ev)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}

	var fields []crmv1.ContactField
	switch {
	case rev == 0 && n.Kind == crm.ChangeUpdated:
		// What it was is unknown: every field may have changed.
		fields = []crmv1.ContactField{crmv1.ContactField_CONTACT_FIELD_NAME, crmv1.ContactField_CONTACT_FIELD_EMAILS, crmv1.ContactField_CONTACT_FIELD_PHONES}
	case rev != 0:
		if rec.FirstName != p.FirstName || rec.LastName != p.LastName {
			fields = append(fields, crmv1.ContactField_CONTACT_FIELD_NAME)
		}
		if !sameSet(rec.Emails, p.Emails, emailNorm) {
			fields = append(fields, crmv1.ContactField_CONTACT_FIELD_EMAILS)
		}
		if !sameSet(rec.Phones, p.Phones, phoneNorm) {
			fields = append(fields, crmv1.ContactField_CONTACT_FIELD_PHONES)
		}
	}
	if len(fields) > 0 {
		ev := &crmv1.ContactUpdated{
			ContactId: id, Crm: crmName, FirstName: p.FirstName, LastName: p.LastName,
			Emails: slices.Clone(p.Emails), Phones: slices.Clone(p.Phones), ChangedFields: fields,
			UpdatedAt: timestamppb.New(at), Correlation: corr, Webhook: ref, CrmEventId: n.EventID, Stage: p.Stage,
		}
		e, err := pending(SubjectContactUpdated, SubjectContactUpdated+":"+suffix, ev)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func pending(subject, id string, ev proto.Message) (pendingEvent, error) {
	b, err := proto.Marshal(ev)
	if err != nil {
		return pendingEvent{}, fmt.Errorf("marshal %s: %w", subject, err)
	}
	return pendingEvent{Subject: subject, ID: id, Data: b}, nil
}

// publish publishes events under their deterministic ids.
func (c *changes) publish(ctx context.Context, events []pendingEvent) error {
	for _, e := range events {
		var ev proto.Message
		switch e.Subject {
		case SubjectContactStageChanged:
			ev = &crmv1.ContactStageChanged{}
		case SubjectContactUpdated:
			ev = &crmv1.ContactUpdated{}
		default:
			return bus.Permanentf("kept event %s has an unknown subject %q", e.ID, e.Subject)
		}
		if err := proto.Unmarshal(e.Data, ev); err != nil {
			return bus.Permanentf("decode kept event %s: %w", e.ID, err)
		}
		if _, err := c.pub.Publish(ctx, e.Subject, e.ID, ev); err != nil {
			return err
		}
	}
	return nil
}

// errConflict is a compare-and-swap that lost to another writer.
var errConflict = bus.ErrConflict

func loadContact(ctx context.Context, kv jetstream.KeyValue, key string) (contactRecord, uint64, error) {
	var rec contactRecord
	entry, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return rec, 0, nil
	}
	if err != nil {
		return rec, 0, fmt.Errorf("read %s/%s: %w", contactsBucket, key, err)
	}
	if err := json.Unmarshal(entry.Value(), &rec); err != nil {
		return rec, 0, bus.Permanentf("decode %s/%s: %w", contactsBucket, key, err)
	}
	return rec, entry.Revision(), nil
}

// storeContact writes rec if the record is still at rev (absent for 0);
// a record that moved on is errConflict.
func storeContact(ctx context.Context, kv jetstream.KeyValue, key string, rec contactRecord, rev uint64) (uint64, error) {
	b, err := json.Marshal(rec)
	if err != nil {
		return 0, err
	}
	return bus.WriteAt(ctx, kv, key, b, rev)
}

func recordOf(p crm.Person) contactRecord {
	return contactRecord{
		Stage: p.Stage, FirstName: p.FirstName, LastName: p.LastName,
		Emails: slices.Clone(p.Emails), Phones: slices.Clone(p.Phones), Updated: p.Updated,
	}
}

func sameContact(a, b contactRecord) bool {
	return a.Stage == b.Stage && a.FirstName == b.FirstName && a.LastName == b.LastName &&
		slices.Equal(a.Emails, b.Emails) && slices.Equal(a.Phones, b.Phones)
}

// sameSet compares two lists as sets of normalized values, so a reordering
// or a reformatted phone is not a change.
func sameSet(a, b []string, norm func(string) string) bool {
	set := func(vs []string) []string {
		out := make([]string, 0, len(vs))
		for _, v := range vs {
			if v = norm(v); v != "" {
				out = append(out, v)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	return slices.Equal(set(a), set(b))
}

func emailNorm(s string) string { return strings.ToLower(strings.TrimSpace(s)) }

// phoneNorm keeps the digits: "(415) 555-0134" and "+1 415-555-0134" differ
// only in the country code, which is kept, so they stay different.
func phoneNorm(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

var plainKeyRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// contactKey is the record's key: <crm>.<contact id>, or a hash of an id
// that is not a plain token.
func contactKey(crmName, id string) string {
	if !plainKeyRe.MatchString(id) {
		sum := sha256.Sum256([]byte(id))
		id = "h" + hex.EncodeToString(sum[:12])
	}
	return crmName + "." + id
}
