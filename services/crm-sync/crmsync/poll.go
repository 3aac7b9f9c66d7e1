package crmsync

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/service"
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

// poller turns a ChangePoller's changes into the same events as webhooks
// (crm.contact.updated, crm.contact.stage_changed), through changes, whose
// compare-and-swap records make replicas that poll at once, and a poll and
// a webhook that see one change, announce it once.
//
// A CRM without webhooks (LionDesk) is polled from the beginning: the first
// poll learns every contact. A CRM with webhooks (Follow Up Boss) is polled
// to reconcile the changes whose webhooks were lost: its first poll only
// sets the cursor to now (fromNow), so the account's history is not
// announced, and each later poll reads what changed since.
type poller struct {
	crm      ChangePoller
	changes  *changes
	js       jetstream.JetStream
	interval time.Duration
	fromNow  bool
	now      func() time.Time
	cursor   *service.Cursor // bound by run
}

func (p *poller) key() string { return "crm-sync." + p.crm.Name() }

// run polls every interval until ctx is done, from the cursor.
func (p *poller) run(ctx context.Context) error {
	c, err := service.BindCursor(ctx, p.js, p.key())
	if err != nil {
		return err
	}
	p.cursor = c
	return service.PollEvery(ctx, c, p.interval, "CRM "+p.crm.Name(), p.poll)
}

// poll reads the changes since the cursor, announces them, and moves the
// cursor to the newest change seen. The query includes the cursor itself,
// so a contact updated twice in the cursor's instant is read again; its
// record shows no difference the second time.
func (p *poller) poll(ctx context.Context) error {
	since, err := p.cursor.Load(ctx)
	if err != nil {
		return err
	}
	if since.IsZero() && p.fromNow {
		return p.cursor.Save(ctx, p.now())
	}
	people, err := p.crm.ChangedSince(ctx, since)
	if err != nil {
		return fmt.Errorf("list changes since %s: %w", since.Format(time.RFC3339), err)
	}
	next := since
	for _, person := range people {
		// A contact seen for the first time is learnt, not announced, as a
		// Follow Up Boss peopleCreated webhook is (unless at an active-client
		// stage); later polls announce what changed since.
		n := crm.Notification{
			EventID: "poll:" + strconv.FormatInt(person.Updated.UnixNano(), 10),
			Event:   "poll",
			Kind:    crm.ChangePolled,
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
		return p.cursor.Save(ctx, next)
	}
	return nil
}
