package crmsync

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/logging"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
)

// ChangePoller is a CRM that sends no webhooks: crm-sync asks it for the
// contacts changed since a cursor. The LionDesk adapter is one.
type ChangePoller interface {
	Name() string
	// ChangedSince returns the contacts updated at or after since, oldest
	// first.
	ChangedSince(ctx context.Context, since time.Time) ([]crm.Person, error)
}

// cursorBucket keeps each poller's cursor, so that a restart or another
// replica resumes where the last poll ended.
const cursorBucket = "cursors"

// poller turns a ChangePoller's changes into the same events as webhooks
// (crm.contact.updated, crm.contact.stage_changed), through changes, whose
// compare-and-swap records make replicas that poll at once announce each
// change once.
type poller struct {
	crm      ChangePoller
	changes  *changes
	js       jetstream.JetStream
	interval time.Duration
	cursors  jetstream.KeyValue // bound by run
}

func (p *poller) key() string { return "crm-sync." + p.crm.Name() }

// run polls every interval until ctx is done. A failed poll is logged and
// tried again at the next tick, from the same cursor: nothing is skipped.
func (p *poller) run(ctx context.Context) error {
	cursors, err := p.js.KeyValue(ctx, cursorBucket)
	if err != nil {
		return fmt.Errorf("bucket %s: %w", cursorBucket, err)
	}
	p.cursors = cursors
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		if err := p.poll(ctx); err != nil && ctx.Err() == nil {
			logging.FromContext(ctx).Warn("CRM poll failed; will try again", "crm", p.crm.Name(), "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// poll reads the changes since the cursor, announces them, and moves the
// cursor to the newest change seen. The query includes the cursor itself,
// so a contact updated twice in the cursor's instant is read again; its
// record shows no difference the second time.
func (p *poller) poll(ctx context.Context) error {
	since, err := p.cursor(ctx)
	if err != nil {
		return err
	}
	people, err := p.crm.ChangedSince(ctx, since)
	if err != nil {
		return fmt.Errorf("list changes since %s: %w", since.Format(time.RFC3339), err)
	}
	next := since
	for _, person := range people {
		// A contact seen for the first time is learnt, not announced, as a
		// Follow Up Boss peopleCreated webhook is; later polls announce what
		// changed since.
		n := crm.Notification{
			EventID: "poll:" + strconv.FormatInt(person.Updated.UnixNano(), 10),
			Event:   "poll",
			Kind:    crm.ChangeCreated,
			Created: person.Updated,
		}
		read := func(context.Context) (crm.Person, error) { return person, nil }
		if err := p.changes.syncContact(ctx, p.crm.Name(), person.ID, read, n, &commonv1.MessageRef{}); err != nil {
			return err
		}
		if person.Updated.After(next) {
			next = person.Updated
		}
	}
	if next.After(since) {
		if _, err := p.cursors.Put(ctx, p.key(), []byte(next.UTC().Format(time.RFC3339Nano))); err != nil {
			return fmt.Errorf("store cursor: %w", err)
		}
	}
	return nil
}

// cursor is where the last poll ended; the zero time at first, so that
// the first poll learns every contact.
func (p *poller) cursor(ctx context.Context) (time.Time, error) {
	e, err := p.cursors.Get(ctx, p.key())
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read cursor: %w", err)
	}
	t, err := time.Parse(time.RFC3339Nano, string(e.Value()))
	if err != nil {
		return time.Time{}, fmt.Errorf("cursor %q: %w", e.Value(), err)
	}
	return t, nil
}
