package followupboss

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/jsonscalar"
)

// fubPersonView is the part of FUB's person that changes are computed from.
type fubPersonView struct {
	ID        int64      `json:"id"`
	FirstName string     `json:"firstName"`
	LastName  string     `json:"lastName"`
	Stage     string     `json:"stage"`
	Source    string     `json:"source"`
	Emails    []fubValue `json:"emails"`
	Phones    []fubValue `json:"phones"`
	Updated   string     `json:"updated"`
	// AssignedUserID is a number, or null when unassigned.
	AssignedUserID json.RawMessage `json:"assignedUserId"`
}

// Person reads GET /v1/people/{id}. A 404 wraps crm.ErrContactNotFound and
// is transient: FUB hides a person created through events until agent
// assignment completes.
func (f *FollowUpBoss) Person(ctx context.Context, id string) (crm.Person, error) {
	n, err := personID(id)
	if err != nil {
		return crm.Person{}, err
	}
	id = strconv.FormatInt(n, 10)
	var v fubPersonView
	status, err := f.api.Do(ctx, "read person", http.MethodGet, "/v1/people/"+id, nil, &v)
	if status == http.StatusNotFound {
		return crm.Person{}, fmt.Errorf("followupboss person %s: %w", id, crm.ErrContactNotFound)
	}
	if err != nil {
		return crm.Person{}, err
	}
	p := v.person()
	p.ID = id
	return p, nil
}

// person is the view as a crm.Person.
func (v fubPersonView) person() crm.Person {
	p := crm.Person{
		ID: strconv.FormatInt(v.ID, 10), FirstName: v.FirstName, LastName: v.LastName, Stage: v.Stage, Source: v.Source,
		Emails: fubValues(v.Emails), Phones: fubValues(v.Phones),
	}
	if u := jsonscalar.String(v.AssignedUserID); u != "" && u != "0" {
		p.AssignedUserID = u
	}
	if t, err := time.Parse(time.RFC3339, v.Updated); err == nil {
		p.Updated = t
	}
	return p
}

func fubValues(vs []fubValue) []string {
	out := make([]string, 0, len(vs))
	for _, v := range vs {
		if s := strings.TrimSpace(v.Value); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// fubChangeKinds maps FUB's people events to what they can change. Every
// other event (notes, tasks, peopleDeleted, tags, ...) is crm.ChangeOther.
var fubChangeKinds = map[string]crm.ChangeKind{
	"peopleCreated":      crm.ChangeCreated,
	"peopleUpdated":      crm.ChangeUpdated,
	"peopleStageUpdated": crm.ChangeStage,
}

// fubWebhook is FUB's thin webhook payload
// (https://docs.followupboss.com/reference/webhooks-guide).
type fubWebhook struct {
	EventID      json.RawMessage   `json:"eventId"`
	EventCreated string            `json:"eventCreated"`
	Event        string            `json:"event"`
	ResourceIDs  []json.RawMessage `json:"resourceIds"`
	URI          string            `json:"uri"`
}

// ErrBadWebhook is wrapped by every error of ParseWebhook.
var ErrBadWebhook = errors.New("not a Follow Up Boss webhook")

// ParseWebhook reads {"eventId","eventCreated","event","resourceIds","uri"}.
// The uri is not followed: the person is read from the configured base URL,
// so a webhook cannot point crm-sync elsewhere.
func (f *FollowUpBoss) ParseWebhook(body []byte) (crm.Notification, error) {
	var w fubWebhook
	if err := json.Unmarshal(body, &w); err != nil {
		return crm.Notification{}, fmt.Errorf("%w: %w", ErrBadWebhook, err)
	}
	if w.Event == "" {
		return crm.Notification{}, fmt.Errorf("%w: no event", ErrBadWebhook)
	}
	n := crm.Notification{Event: w.Event, Kind: fubChangeKinds[w.Event], EventID: jsonscalar.String(w.EventID)}
	if t, err := time.Parse(time.RFC3339, w.EventCreated); err == nil {
		n.Created = t
	}
	if n.Kind == crm.ChangeOther {
		return n, nil
	}
	for _, raw := range w.ResourceIDs {
		v, err := strconv.ParseInt(jsonscalar.String(raw), 10, 64)
		if err != nil || v <= 0 {
			return crm.Notification{}, fmt.Errorf("%w: resource id %s is not a person id", ErrBadWebhook, raw)
		}
		n.ContactIDs = append(n.ContactIDs, strconv.FormatInt(v, 10))
	}
	if len(n.ContactIDs) == 0 {
		return crm.Notification{}, fmt.Errorf("%w: %s names no resource", ErrBadWebhook, w.Event)
	}
	return n, nil
}

// ChangedPageSize is how many people one page of ChangedSince asks for: the
// most Follow Up Boss returns at once.
const ChangedPageSize = 100

// ChangedSince lists the people updated at or after since, oldest change
// first: GET /v1/people?updatedAfter=…&sort=updated&limit=100. Each page is
// one call counted in the global quota, so a poll costs one call per 100
// people changed (one when none did). Which fields the list's people carry
// without fields= is not documented: crm-sync reads a listed person again
// whenever the listing differs from what it keeps.
//
// Follow Up Boss does not say whether updatedAfter is inclusive, and its
// times are whole seconds: each query asks from the second before its
// floor, so a person updated in the floor's own second is listed either way
// (seen again, it makes no second event).
//
// The next page is asked from the last person's updated time (keyset), not
// by offset: a person changed while the walk is under way moves to its end,
// and with offsets the person behind them would be skipped. Only when a
// whole page shares the floor's seconds, or the answer is not in updated
// order, does the walk follow the page's next cursor instead.
func (f *FollowUpBoss) ChangedSince(ctx context.Context, since time.Time) ([]crm.Person, error) {
	floor := since.UTC().Truncate(time.Second)
	var next string
	var out []crm.Person
	type version struct {
		id      string
		updated time.Time
	}
	seen := map[version]bool{}
	for {
		q := url.Values{
			"updatedAfter": {floor.Add(-time.Second).Format(time.RFC3339)},
			"sort":         {"updated"},
			"limit":        {strconv.Itoa(ChangedPageSize)},
		}
		if next != "" {
			q.Set("next", next)
		}
		var page struct {
			Metadata struct {
				Next *string `json:"next"`
			} `json:"_metadata"`
			People []fubPersonView `json:"people"`
		}
		if _, err := f.api.Do(ctx, "list changed people", http.MethodGet, "/v1/people?"+q.Encode(), nil, &page); err != nil {
			return nil, err
		}
		ordered := true
		var prev time.Time
		for i, v := range page.People {
			p := v.person()
			if i > 0 && p.Updated.Before(prev) {
				ordered = false
			}
			prev = p.Updated
			if k := (version{p.ID, p.Updated}); !seen[k] {
				seen[k] = true
				out = append(out, p)
			}
		}
		if page.Metadata.Next == nil || *page.Metadata.Next == "" || len(page.People) < ChangedPageSize {
			return out, nil
		}
		last := page.People[len(page.People)-1].person().Updated.Truncate(time.Second)
		if ordered && last.After(floor) {
			floor, next = last, ""
		} else {
			next = *page.Metadata.Next
		}
	}
}
