package tmssync

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/logging"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/dotloop"
	commonv1 "github.com/brokerflow/brokerflow/proto/brokerflow/common/v1"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	leadv1 "github.com/brokerflow/brokerflow/proto/brokerflow/lead/v1"
	tmsv1 "github.com/brokerflow/brokerflow/proto/brokerflow/tms/v1"
)

// Episode states. A record with no state yet holds only the contact's lead.
const (
	statePending = "pending" // claimed; the TMS call may or may not have happened
	stateOpen    = "open"
	stateEnded   = "ended"
)

// States of a property fill: the property set on a transaction opened
// without one.
const (
	fillPending     = "pending" // claimed; the TMS call may or may not have happened
	fillDone        = "done"
	fillUnsupported = "unsupported" // the TMS cannot set it; logged once
)

// episode is a contact's record under tms-sync.episode.<crm>.<contact>: the
// current (or last) episode, from an opening stage to a closing, a
// cancellation or a lost stage. Within one, one transaction.
//
// The record also holds the contact's latest lead with a property (Lead),
// before any episode and across them, so that a stage change and the
// contact's crm.contact.synced meet on one key under compare-and-swap,
// whichever is handled first.
type episode struct {
	N     int    `json:"n"`
	State string `json:"state"`
	// Claimed is when the episode was claimed; a transaction the TMS shows
	// created after it (less a minute of clock skew) with the request's name
	// and type is this episode's.
	Claimed time.Time `json:"claimed"`
	// Since and Fence are the current claim: when, and by which message
	// (<stream>/<sequence>). The same message redelivered is its holder
	// after a crash, and may check the TMS at once; another waits until the
	// claim is stale.
	Since time.Time `json:"since"`
	Fence string    `json:"fence"`

	CRM       string   `json:"crm"`
	ContactID string   `json:"contact_id"`
	Stage     string   `json:"stage"`
	LeadID    string   `json:"lead_id,omitempty"`
	AgentID   string   `json:"agent_id"`
	Request   tms.Open `json:"request"`
	// Cause is the CRM message that opened the episode.
	CauseStream string `json:"cause_stream"`
	CauseSeq    uint64 `json:"cause_seq"`

	Transaction tms.Transaction `json:"transaction"`
	// Opened is the TransactionOpened announced, kept to announce it again.
	Opened []byte `json:"opened,omitempty"`

	// Lead is the contact's latest lead with a property, from
	// crm.contact.synced.
	Lead *leadRecord `json:"lead,omitempty"`
	// Fill is the property set on a transaction opened without one, once:
	// the lead it came from, and the claim of whoever sets it.
	Fill *propertyFill `json:"fill,omitempty"`
}

// propertyFill is the property of Lead set on the episode's transaction
// after it was opened without one.
type propertyFill struct {
	LeadID string    `json:"lead_id"`
	State  string    `json:"state"`
	Since  time.Time `json:"since"`
	Fence  string    `json:"fence"`
	// Updated is the TransactionUpdated that announces the fill, stored with
	// the done mark (so that whoever finds it unannounced, after a crash,
	// announces the same event under the same id), and Announced whether it
	// was published. A fill done by an earlier version has neither.
	Updated   []byte `json:"updated,omitempty"`
	Announced bool   `json:"announced,omitempty"`
}

// unannounced reports whether e's fill was set and recorded, and its
// tms.transaction.updated not yet published.
func (e episode) unannounced() bool {
	f := e.Fill
	return f != nil && f.State == fillDone && len(f.Updated) > 0 && !f.Announced
}

func (e episode) id() string { return fmt.Sprintf("%s:%s:%d", e.CRM, e.ContactID, e.N) }

func (e episode) client() tms.Party {
	for _, p := range e.Request.Parties {
		if p.Role == tms.RoleBuyer || p.Role == tms.RoleSeller {
			return p
		}
	}
	return tms.Party{}
}

// txRecord is a transaction's record under tms-sync.tx.<tms>.<id>: whose it
// is, for its closing.
type txRecord struct {
	CRM        string `json:"crm"`
	ContactID  string `json:"contact_id"`
	LeadID     string `json:"lead_id,omitempty"`
	EpisodeKey string `json:"episode_key"`
	EpisodeN   int    `json:"episode_n"`
	AgentID    string `json:"agent_id"`
	// Type is the transaction type it was opened with.
	Type string `json:"type,omitempty"`
}

// leadRecord is a contact's latest lead with a property, in its episode
// record (earlier versions kept it under tms-sync.lead.<crm>.<contact>,
// which is still read when the episode record has none).
type leadRecord struct {
	LeadID     string       `json:"lead_id"`
	ReceivedAt time.Time    `json:"received_at"`
	Property   tms.Property `json:"property"`
}

// casAttempts bounds the compare-and-swap loops on one record.
const casAttempts = 8

// errBusy is another message holding a live claim on the episode: retried.
var errBusy = errors.New("another message is opening this contact's transaction")

func (s *Syncer) handleStage(ctx context.Context, m *bus.Message) error {
	var ev crmv1.ContactStageChanged
	if err := proto.Unmarshal(m.Data, &ev); err != nil {
		return bus.Undecodable("decode ContactStageChanged at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	log := logging.FromContext(ctx)
	if ev.GetContactId() == "" {
		return bus.WithCode("tms.no_contact", bus.Permanentf("stage change at %s/%d has no contact id", m.Stream, m.Sequence))
	}
	if s.cfg.lost(ev.GetNewStage()) {
		return s.endEpisode(ctx, ev.GetCrm(), ev.GetContactId(), 0, "lost stage "+ev.GetNewStage())
	}
	typ, ok := s.cfg.opening(ev.GetNewStage())
	if !ok {
		log.Info("stage opens no transaction", "contact_id", ev.GetContactId(), "stage", ev.GetNewStage())
		return nil
	}
	key := episodeKey(ev.GetCrm(), ev.GetContactId())
	fence := fenceOf(m)
	staleAfter, err := s.recs.StaleAfter(ctx)
	if err != nil {
		return err
	}
	for range casAttempts {
		var ep episode
		rev, err := s.load(ctx, key, &ep)
		if err != nil {
			return err
		}
		now := s.now()
		switch {
		case rev != 0 && ep.State == stateOpen:
			log.Info("the episode has its transaction already", "contact_id", ev.GetContactId(), "transaction_id", ep.Transaction.ID)
			if err := s.announceOpened(ctx, ep); err != nil {
				return err
			}
			return s.fillProperty(ctx, key, m)
		case rev != 0 && ep.State == statePending && ep.Fence != fence && now.Before(ep.Since.Add(staleAfter)):
			return errBusy
		case rev != 0 && ep.State == statePending:
			// Its holder stopped between the claim and the record (a crash,
			// a failed call): ask the TMS before opening again.
			tx, found, err := s.findOpened(ctx, ep)
			if err != nil {
				return err
			}
			if found {
				log.Info("the transaction was opened before a crash; recording it", "contact_id", ev.GetContactId(), "transaction_id", tx.ID)
				return s.settle(ctx, key, ep, tx, m)
			}
			ep.Since, ep.Fence = now, fence
			if ep.Request.Property == nil && ep.Lead != nil {
				// The lead became known since the claim: open with it.
				p := ep.Lead.Property
				ep.Request.Property, ep.LeadID = &p, ep.Lead.LeadID
			}
			if _, err = s.store(ctx, key, ep, rev); errors.Is(err, errConflict) {
				continue
			} else if err != nil {
				return err
			}
			return s.open(ctx, key, ep, m)
		case rev != 0 && ep.unannounced():
			// The ended episode's fill is still owed its announcement: the
			// new episode's record will not keep it.
			if err := s.announceFill(ctx, key, ep); err != nil {
				return err
			}
			continue
		default:
			next, err := s.newEpisode(ctx, &ev, typ, m, ep.Lead)
			if err != nil {
				return err
			}
			next.N, next.Lead = ep.N+1, ep.Lead
			next.Claimed, next.Since, next.Fence = now, now, fence
			if _, err = s.store(ctx, key, next, rev); errors.Is(err, errConflict) {
				continue
			} else if err != nil {
				return err
			}
			return s.open(ctx, key, next, m)
		}
	}
	return fmt.Errorf("episode of contact %s changed concurrently %d times; will retry", ev.GetContactId(), casAttempts)
}

// newEpisode prepares the transaction to open for ev: the client from the
// event, the property from the contact's latest lead with one (known, or
// the record an earlier version kept), the agent from the CRM's assignment
// and the agent directory.
func (s *Syncer) newEpisode(ctx context.Context, ev *crmv1.ContactStageChanged, typ string, m *bus.Message, known *leadRecord) (episode, error) {
	agentUser := ""
	if s.people != nil {
		p, err := s.people.Person(ctx, ev.GetContactId())
		if err != nil {
			return episode{}, fmt.Errorf("read the assigned agent of contact %s: %w", ev.GetContactId(), err)
		}
		agentUser = p.AssignedUserID
	}
	agent, err := s.cfg.Agents.ForCRMUser(agentUser)
	if err != nil {
		return episode{}, bus.WithCode("tms.no_agent", bus.AsPermanent(err))
	}
	// Dotloop opens a loop in the agent's profile; SkySlope's Forms API
	// opens the file in the connected user's account, which has no profiles.
	profile := ""
	if s.tms.Name() == dotloop.Name {
		if agent.DotloopProfileID == "" {
			return episode{}, bus.WithCode("tms.no_agent", bus.Permanentf("agent %q has no dotloop_profile_id in the agent directory", agent.ID))
		}
		profile = agent.DotloopProfileID
	}
	var lead leadRecord
	if known != nil {
		lead = *known
	} else if _, err := s.load(ctx, leadKey(ev.GetCrm(), ev.GetContactId()), &lead); err != nil {
		return episode{}, err
	}
	r := roles[typ]
	name := strings.TrimSpace(ev.GetFirstName() + " " + ev.GetLastName())
	client := tms.Party{FullName: cmp.Or(name, first(ev.GetEmails()), first(ev.GetPhones())), Email: first(ev.GetEmails()), Phone: first(ev.GetPhones()), Role: r.role}
	agentRole := "BUYING_AGENT"
	if typ == tms.TypeListing {
		agentRole = "LISTING_AGENT"
	}
	req := tms.Open{
		Profile: profile, Name: client.FullName, Type: typ, Status: r.status,
		TemplateID: s.cfg.Templates[typ],
		Parties:    []tms.Party{client, {FullName: agent.Name, Email: agent.Email, Role: agentRole}},
	}
	if lead.LeadID != "" {
		p := lead.Property
		req.Property = &p
	}
	return episode{
		State: statePending, CRM: ev.GetCrm(), ContactID: ev.GetContactId(), Stage: ev.GetNewStage(),
		LeadID: lead.LeadID, AgentID: agent.ID, Request: req, CauseStream: m.Stream, CauseSeq: m.Sequence,
	}, nil
}

func first(vs []string) string {
	for _, v := range vs {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

// open opens the episode's transaction under ep's claim (m's), then records it.
func (s *Syncer) open(ctx context.Context, key string, ep episode, m *bus.Message) error {
	tx, err := s.tms.Open(ctx, ep.Request)
	if err != nil {
		// The claim stays pending: the redelivery asks the TMS first.
		return fmt.Errorf("open a transaction for contact %s in %s: %w", ep.ContactID, s.tms.Name(), err)
	}
	bus.Crash(ctx, CrashAfterTMSCall)
	return s.settle(ctx, key, ep, tx, m)
}

// findOpened looks in the TMS for the transaction a pending episode's
// holder may have opened: the newest of the profile's with the request's
// name and type, created since the claim.
func (s *Syncer) findOpened(ctx context.Context, ep episode) (tms.Transaction, bool, error) {
	if !s.tms.Capabilities().ListTransactions {
		return tms.Transaction{}, false, nil
	}
	list, err := s.tms.Transactions(ctx, ep.Request.Profile, 50)
	if err != nil {
		return tms.Transaction{}, false, fmt.Errorf("list transactions to find one opened before a crash: %w", err)
	}
	since := ep.Claimed.Add(-time.Minute)
	for _, t := range list {
		if t.Name == ep.Request.Name && t.Type == ep.Request.Type && !t.Created.Before(since) {
			return t, true, nil
		}
	}
	return tms.Transaction{}, false, nil
}

// settle records the transaction in the episode while ep's claim is still
// the record's (compare-and-swap; a lead noted meanwhile is kept), records
// whose it is, announces it, and sets the property of a lead learned while
// it was being opened, for the message m.
func (s *Syncer) settle(ctx context.Context, key string, ep episode, tx tms.Transaction, m *bus.Message) error {
	ep.State, ep.Transaction = stateOpen, tx
	ev := s.openedEvent(ep)
	b, err := proto.Marshal(ev)
	if err != nil {
		return err
	}
	ep.Opened = b
	if err := s.recordOpened(ctx, key, ep); err != nil {
		return err
	}
	rec := txRecord{CRM: ep.CRM, ContactID: ep.ContactID, LeadID: ep.LeadID, EpisodeKey: key, EpisodeN: ep.N, AgentID: ep.AgentID, Type: ep.Request.Type}
	if err := s.put(ctx, txKey(s.tms.Name(), tx.ID), rec); err != nil {
		return err
	}
	logging.FromContext(ctx).Info("transaction opened", "tms", s.tms.Name(), "transaction_id", tx.ID, "contact_id", ep.ContactID, "episode", ep.id())
	if err := s.announceOpened(ctx, ep); err != nil {
		return err
	}
	return s.fillProperty(ctx, key, m)
}

// recordOpened stores open, the episode with its transaction, over the
// record's pending claim of the same episode and fence, keeping the lead
// and fill the record holds now.
func (s *Syncer) recordOpened(ctx context.Context, key string, open episode) error {
	for range casAttempts {
		var cur episode
		rev, err := s.load(ctx, key, &cur)
		if err != nil {
			return err
		}
		if rev == 0 || cur.State != statePending || cur.N != open.N || cur.Fence != open.Fence {
			// The claim was taken over meanwhile; whoever holds it now
			// finds this transaction in the TMS.
			return fmt.Errorf("record transaction %s of contact %s: the claim was taken over", open.Transaction.ID, open.ContactID)
		}
		next := open
		next.Lead, next.Fill = cur.Lead, cur.Fill
		if _, err := s.store(ctx, key, next, rev); errors.Is(err, errConflict) {
			continue
		} else if err != nil {
			return fmt.Errorf("record transaction %s of contact %s: %w", open.Transaction.ID, open.ContactID, err)
		}
		return nil
	}
	return fmt.Errorf("episode of contact %s changed concurrently %d times; will retry", open.ContactID, casAttempts)
}

// fillProperty sets the property of the contact's latest lead on the
// episode's transaction when the transaction was opened without one: once,
// under a claim in the episode record (compare-and-swap), for the message m.
// Another message leaves a live claim to its holder and takes over a stale
// one; the holder's redelivery after a crash takes its own claim again. A
// transaction opened with a property keeps it: tms-sync never replaces a
// property, which an agent may have corrected since. The fill is marked done
// together with its tms.transaction.updated, which is then announced once
// (announceFill), by whichever message finds it done and not yet announced.
func (s *Syncer) fillProperty(ctx context.Context, key string, m *bus.Message) error {
	staleAfter, err := s.recs.StaleAfter(ctx)
	if err != nil {
		return err
	}
	fence := fenceOf(m)
	log := logging.FromContext(ctx)
	for range casAttempts {
		var ep episode
		rev, err := s.load(ctx, key, &ep)
		if err != nil {
			return err
		}
		if rev != 0 && ep.unannounced() {
			// Set, and not announced yet (a crash, a failed publish): the
			// episode may have ended since, the announcement is still owed.
			return s.announceFill(ctx, key, ep)
		}
		if rev == 0 || ep.State != stateOpen || ep.Request.Property != nil || ep.Lead == nil {
			return nil
		}
		now := s.now()
		switch f := ep.Fill; {
		case f != nil && f.State != fillPending:
			return nil
		case f != nil && f.Fence != fence && now.Before(f.Since.Add(staleAfter)):
			// Its holder sets it, or its message is redelivered (a crash) or
			// becomes a failure record to redrive (a refused call).
			log.Info("another message is setting the transaction's property", "transaction_id", ep.Transaction.ID, "holder", f.Fence)
			return nil
		}
		tx := ep.Transaction
		if !s.tms.Capabilities().UpdateProperty {
			ep.Fill = &propertyFill{LeadID: ep.Lead.LeadID, State: fillUnsupported, Since: now, Fence: fence}
			if _, err := s.store(ctx, key, ep, rev); errors.Is(err, errConflict) {
				continue
			} else if err != nil {
				return err
			}
			log.Warn("the transaction was opened without its property, and the TMS cannot set it; set it by hand",
				"tms", s.tms.Name(), "transaction_id", tx.ID, "contact_id", ep.ContactID, "lead_id", ep.Lead.LeadID)
			return nil
		}
		ep.Fill = &propertyFill{LeadID: ep.Lead.LeadID, State: fillPending, Since: now, Fence: fence}
		if _, err := s.store(ctx, key, ep, rev); errors.Is(err, errConflict) {
			continue
		} else if err != nil {
			return err
		}
		if err := s.tms.UpdateProperty(ctx, cmp.Or(tx.Profile, ep.Request.Profile), tx.ID, ep.Lead.Property); err != nil {
			// The claim stays pending: this message, redelivered, sets it.
			return fmt.Errorf("set the property of %s in %s: %w", tx.ID, s.tms.Name(), err)
		}
		bus.Crash(ctx, CrashAfterPropertyCall)
		log.Info("transaction property set from a lead synced after it opened", "tms", s.tms.Name(), "transaction_id", tx.ID,
			"contact_id", ep.ContactID, "lead_id", ep.Lead.LeadID)
		updated, err := proto.Marshal(s.propertyEvent(ep, *ep.Lead, m))
		if err != nil {
			return err
		}
		done, ok, err := s.fillDone(ctx, key, ep.N, fence, updated)
		if err != nil || !ok {
			// Not ok: the claim was taken over meanwhile; its holder announces.
			return err
		}
		bus.Crash(ctx, CrashAfterPropertyRecorded)
		return s.announceFill(ctx, key, done)
	}
	return fmt.Errorf("episode record %s changed concurrently %d times; will retry", key, casAttempts)
}

// fillDone marks the fill of episode n claimed by fence done, with updated,
// its announcement, unless its claim was taken over meanwhile (ok false).
// It returns the record as stored.
func (s *Syncer) fillDone(ctx context.Context, key string, n int, fence string, updated []byte) (ep episode, ok bool, err error) {
	ok, err = s.updateEpisode(ctx, key, func(cur *episode) bool {
		if cur.N != n || cur.Fill == nil || cur.Fill.Fence != fence || cur.Fill.State != fillPending {
			return false
		}
		cur.Fill.State, cur.Fill.Updated = fillDone, updated
		ep = *cur
		return true
	})
	return ep, ok, err
}

// propertyEvent is the tms.transaction.updated of ep's transaction that
// says lead's property was set on it, caused by m.
func (s *Syncer) propertyEvent(ep episode, lead leadRecord, m *bus.Message) *tmsv1.TransactionUpdated {
	tx := ep.Transaction
	return &tmsv1.TransactionUpdated{
		TransactionId: tx.ID, Tms: s.tms.Name(), ProfileId: cmp.Or(tx.Profile, ep.Request.Profile), Crm: ep.CRM, ContactId: ep.ContactID,
		ChangedFields: []string{"property"}, UpdatedAt: timestamppb.New(s.now()), Property: addressOf(lead.Property),
		Correlation: &commonv1.Correlation{LeadId: lead.LeadID, ContactId: ep.ContactID, TransactionId: tx.ID},
		Cause:       &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject},
	}
}

// announceFill announces the kept tms.transaction.updated of ep's fill,
// under an id of the transaction's (a second publish, after a crash before
// the mark, is the same event), notes the fill's lead as the transaction's
// when it had none, so that its closing names it, and marks it announced.
func (s *Syncer) announceFill(ctx context.Context, key string, ep episode) error {
	var ev tmsv1.TransactionUpdated
	if err := proto.Unmarshal(ep.Fill.Updated, &ev); err != nil {
		return bus.Permanentf("decode kept TransactionUpdated of %s: %w", ep.id(), err)
	}
	if err := s.noteTxLead(ctx, ev.GetTransactionId(), ev.GetCorrelation().GetLeadId()); err != nil {
		return err
	}
	if _, err := s.w.Publisher().Publish(ctx, SubjectUpdated, propertyEventID(s.tms.Name(), ev.GetTransactionId()), &ev); err != nil {
		return err
	}
	_, err := s.updateEpisode(ctx, key, func(cur *episode) bool {
		if cur.N != ep.N || cur.Fill == nil || cur.Fill.State != fillDone || cur.Fill.Announced {
			return false
		}
		cur.Fill.Announced = true
		return true
	})
	return err
}

// propertyEventID is the id of the one tms.transaction.updated that
// announces a property set on transaction id.
func propertyEventID(tmsName, id string) string {
	return SubjectUpdated + ":" + tmsName + ":" + id + ":property"
}

// noteTxLead records lead as the lead of transaction id, in its record,
// when the record has none.
func (s *Syncer) noteTxLead(ctx context.Context, id, lead string) error {
	key := txKey(s.tms.Name(), id)
	for range casAttempts {
		var rec txRecord
		rev, err := s.load(ctx, key, &rec)
		if err != nil || rev == 0 || rec.LeadID != "" || lead == "" {
			return err
		}
		rec.LeadID = lead
		if _, err := s.store(ctx, key, rec, rev); errors.Is(err, errConflict) {
			continue
		} else if err != nil {
			return err
		}
		return nil
	}
	return fmt.Errorf("transaction record %s changed concurrently %d times; will retry", key, casAttempts)
}

// fenceOf names the message m in a claim: <stream>/<sequence>.
func fenceOf(m *bus.Message) string { return fmt.Sprintf("%s/%d", m.Stream, m.Sequence) }

// updateEpisode applies change to the episode record at key with
// compare-and-swap, retrying on a concurrent write; change returns false
// to leave the record as it is. It reports whether the record changed.
func (s *Syncer) updateEpisode(ctx context.Context, key string, change func(*episode) bool) (bool, error) {
	for range casAttempts {
		var ep episode
		rev, err := s.load(ctx, key, &ep)
		if err != nil {
			return false, err
		}
		if !change(&ep) {
			return false, nil
		}
		if _, err := s.store(ctx, key, ep, rev); errors.Is(err, errConflict) {
			continue
		} else if err != nil {
			return false, err
		}
		return true, nil
	}
	return false, fmt.Errorf("episode record %s changed concurrently %d times; will retry", key, casAttempts)
}

func (s *Syncer) openedEvent(ep episode) *tmsv1.TransactionOpened {
	c := ep.client()
	ev := &tmsv1.TransactionOpened{
		TransactionId: ep.Transaction.ID, Tms: s.tms.Name(), ProfileId: ep.Transaction.Profile, Crm: ep.CRM, ContactId: ep.ContactID,
		TransactionType: ep.Transaction.Type, Status: ep.Transaction.Status, Name: ep.Transaction.Name, Url: ep.Transaction.URL,
		Client:  &tmsv1.Party{FullName: c.FullName, Email: c.Email, Phone: c.Phone, Role: c.Role},
		AgentId: ep.AgentID, Stage: ep.Stage, OpenedAt: timestamppb.New(s.now()), EpisodeId: ep.id(),
		Correlation: &commonv1.Correlation{LeadId: ep.LeadID, ContactId: ep.ContactID, TransactionId: ep.Transaction.ID},
		Cause:       &commonv1.MessageRef{Stream: ep.CauseStream, Sequence: ep.CauseSeq, Subject: subjectStageChanged},
	}
	if p := ep.Request.Property; p != nil {
		ev.Property = addressOf(*p)
	}
	return ev
}

// addressOf is p as the TMS events carry it.
func addressOf(p tms.Property) *tmsv1.Address {
	return &tmsv1.Address{StreetNumber: p.StreetNumber, StreetName: p.StreetName, Unit: p.Unit, City: p.City, State: p.State,
		PostalCode: p.PostalCode, Country: p.Country, MlsNumber: p.MLSNumber}
}

func (s *Syncer) announceOpened(ctx context.Context, ep episode) error {
	var ev tmsv1.TransactionOpened
	if err := proto.Unmarshal(ep.Opened, &ev); err != nil {
		return bus.Permanentf("decode kept TransactionOpened of %s: %w", ep.id(), err)
	}
	_, err := s.w.Publisher().Publish(ctx, SubjectOpened, SubjectOpened+":"+s.tms.Name()+":"+ep.Transaction.ID, &ev)
	return err
}

// endEpisode ends a contact's open episode (episode n only, when n > 0):
// the next opening stage starts a new one.
func (s *Syncer) endEpisode(ctx context.Context, crmName, contact string, n int, why string) error {
	var ended string
	changed, err := s.updateEpisode(ctx, episodeKey(crmName, contact), func(ep *episode) bool {
		// An empty record (zero N) is in no state: there is nothing to end.
		if ep.State != stateOpen || (n > 0 && ep.N != n) {
			return false
		}
		ep.State, ended = stateEnded, ep.id()
		return true
	})
	if changed {
		logging.FromContext(ctx).Info("episode ended", "contact_id", contact, "episode", ended, "why", why)
	}
	return err
}

// handleSynced keeps the contact's latest lead with a property in the
// contact's episode record: its property goes into the transaction opened
// later, or onto the open transaction that was opened without one.
func (s *Syncer) handleSynced(ctx context.Context, m *bus.Message) error {
	var ev crmv1.ContactSynced
	if err := proto.Unmarshal(m.Data, &ev); err != nil {
		return bus.Undecodable("decode ContactSynced at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	ref := ev.GetLead()
	if ev.GetContactId() == "" || ref.GetSequence() == 0 || ref.GetStream() == "" {
		return nil
	}
	st, err := s.w.JetStream().Stream(ctx, ref.GetStream())
	if err != nil {
		return fmt.Errorf("stream %s: %w", ref.GetStream(), err)
	}
	raw, err := st.GetMsg(ctx, ref.GetSequence())
	if err != nil {
		return fmt.Errorf("read lead %s at %s/%d: %w", ev.GetLeadId(), ref.GetStream(), ref.GetSequence(), err)
	}
	var l leadv1.Lead
	if err := proto.Unmarshal(raw.Data, &l); err != nil || l.GetLeadId() != ev.GetLeadId() {
		return bus.Permanentf("the message at %s/%d is not lead %s", ref.GetStream(), ref.GetSequence(), ev.GetLeadId())
	}
	p := l.GetInquiry().GetProperty()
	if p == nil || (p.GetUnparsedAddress() == "" && p.GetCity() == "" && p.GetListingId() == "") {
		return nil
	}
	rec := leadRecord{LeadID: l.GetLeadId(), ReceivedAt: l.GetReceivedAt().AsTime(), Property: propertyOf(p)}
	key := episodeKey(ev.GetCrm(), ev.GetContactId())
	for range casAttempts {
		var ep episode
		rev, err := s.load(ctx, key, &ep)
		if err != nil {
			return err
		}
		if have := ep.Lead; have == nil || have.LeadID != rec.LeadID && !have.ReceivedAt.After(rec.ReceivedAt) {
			// A later lead's property is kept; this one is noted once.
			ep.Lead = &rec
			if rev == 0 {
				ep.CRM, ep.ContactID = ev.GetCrm(), ev.GetContactId()
			}
			if _, err := s.store(ctx, key, ep, rev); errors.Is(err, errConflict) {
				continue
			} else if err != nil {
				return err
			}
		}
		return s.fillProperty(ctx, key, m)
	}
	return fmt.Errorf("episode record of contact %s changed concurrently; will retry", ev.GetContactId())
}

var streetRe = regexp.MustCompile(`^\s*(\d+[A-Za-z]?)\s+(.+?)\s*$`)

// propertyOf splits a lead's one-line address into Dotloop's fields: a
// leading house number is the street number.
func propertyOf(p *leadv1.Property) tms.Property {
	out := tms.Property{City: p.GetCity(), State: p.GetStateOrProvince(), PostalCode: p.GetPostalCode(), Country: "US", MLSNumber: p.GetListingId()}
	if m := streetRe.FindStringSubmatch(p.GetUnparsedAddress()); m != nil {
		out.StreetNumber, out.StreetName = m[1], m[2]
	} else {
		out.StreetName = strings.TrimSpace(p.GetUnparsedAddress())
	}
	return out
}

// handleUpdated carries a contact's new name, email or phone into the
// client participant of the contact's open transaction.
func (s *Syncer) handleUpdated(ctx context.Context, m *bus.Message) error {
	var ev crmv1.ContactUpdated
	if err := proto.Unmarshal(m.Data, &ev); err != nil {
		return bus.Undecodable("decode ContactUpdated at %s/%d: %w", m.Stream, m.Sequence, err)
	}
	log := logging.FromContext(ctx)
	var ep episode
	rev, err := s.load(ctx, episodeKey(ev.GetCrm(), ev.GetContactId()), &ep)
	if err != nil {
		return err
	}
	if rev == 0 || ep.State != stateOpen {
		log.Info("contact change: no open transaction", "contact_id", ev.GetContactId())
		return nil
	}
	if !s.tms.Capabilities().UpdateParticipants {
		log.Info("contact change not carried: the TMS cannot update participants", "tms", s.tms.Name())
		return nil
	}
	tx := ep.Transaction
	parties, err := s.tms.Participants(ctx, tx.Profile, tx.ID)
	if err != nil {
		return fmt.Errorf("read participants of %s: %w", tx.ID, err)
	}
	role := ep.client().Role
	i := -1
	for j, p := range parties {
		if p.Role == role {
			i = j
			break
		}
	}
	if i < 0 {
		return bus.WithCode("tms.no_client_participant", bus.Permanentf("transaction %s has no %s participant to update", tx.ID, role))
	}
	cur := parties[i]
	want := cur
	if name := strings.TrimSpace(ev.GetFirstName() + " " + ev.GetLastName()); name != "" {
		want.FullName = name
	}
	if e := first(ev.GetEmails()); e != "" {
		want.Email = e
	}
	if p := first(ev.GetPhones()); p != "" {
		want.Phone = p
	}
	var changed []string
	for _, f := range []struct {
		name      string
		have, got string
	}{{"name", cur.FullName, want.FullName}, {"email", cur.Email, want.Email}, {"phone", cur.Phone, want.Phone}} {
		if f.have != f.got {
			changed = append(changed, f.name)
		}
	}
	if len(changed) > 0 {
		if want, err = s.tms.UpdateParticipant(ctx, tx.Profile, tx.ID, want); err != nil {
			return fmt.Errorf("update the client of %s: %w", tx.ID, err)
		}
	}
	out := &tmsv1.TransactionUpdated{
		TransactionId: tx.ID, Tms: s.tms.Name(), ProfileId: tx.Profile, Crm: ep.CRM, ContactId: ep.ContactID,
		Client:        &tmsv1.Party{FullName: want.FullName, Email: want.Email, Phone: want.Phone, Role: want.Role, ParticipantId: want.ID},
		ChangedFields: changed, UpdatedAt: timestamppb.New(s.now()),
		Correlation: &commonv1.Correlation{LeadId: ep.LeadID, ContactId: ep.ContactID, TransactionId: tx.ID},
		Cause:       &commonv1.MessageRef{Stream: m.Stream, Sequence: m.Sequence, Subject: m.Subject},
	}
	log.Info("contact change carried into the transaction", "transaction_id", tx.ID, "changed", strings.Join(changed, ","))
	_, err = s.w.Publisher().Publish(ctx, SubjectUpdated, SubjectUpdated+":"+s.tms.Name()+":"+tx.ID+":"+strconv.FormatUint(m.Sequence, 10), out)
	return err
}
