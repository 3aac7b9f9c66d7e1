package followupboss

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/jsonscalar"
)

// personID checks that id is a Follow Up Boss person id.
func personID(id string) (int64, error) { return crm.ContactNumber(Name, id) }

// fubContactValues is a person's emails and phones as Follow Up Boss answers
// them, every field of each entry kept (type, status, isPrimary, ...), so
// that a PUT sends them back unchanged.
type fubContactValues struct {
	Emails []map[string]json.RawMessage `json:"emails"`
	Phones []map[string]json.RawMessage `json:"phones"`
}

func entryValues(entries []map[string]json.RawMessage) []string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		if v := strings.TrimSpace(jsonscalar.String(e["value"])); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// AddDetails adds id's email and phone to person contactID when the person
// lacks them, and never removes one. It reads GET /v1/people/{id} and, only
// when something is missing, sends PUT /v1/people/{id} with the person's
// whole emails or phones array plus the new value, since a PUT replaces the
// array: every existing entry goes back as Follow Up Boss gave it. added
// reports whether a PUT was sent.
//
// The read and the write are two calls: a value another writer adds to the
// same array in between is lost. crm-sync serializes the leads of one person,
// so only a change made in Follow Up Boss itself at that moment can be.
func (f *FollowUpBoss) AddDetails(ctx context.Context, contactID string, id crm.Identity) (added bool, err error) {
	n, err := personID(contactID)
	if err != nil {
		return false, err
	}
	path := "/v1/people/" + strconv.FormatInt(n, 10)
	var have fubContactValues
	status, err := f.api.Do(ctx, "read person", http.MethodGet, path, nil, &have)
	if status == http.StatusNotFound {
		return false, fmt.Errorf("followupboss person %d: %w", n, crm.ErrContactNotFound)
	}
	if err != nil {
		return false, err
	}
	email, phone := crm.Missing(crm.Person{Emails: entryValues(have.Emails), Phones: entryValues(have.Phones)}, id)
	if email == "" && phone == "" {
		return false, nil
	}
	update := map[string]any{}
	if email != "" {
		update["emails"] = append(have.Emails, map[string]json.RawMessage{"value": jsonString(email)})
	}
	if phone != "" {
		update["phones"] = append(have.Phones, map[string]json.RawMessage{"value": jsonString(phone)})
	}
	status, err = f.api.Do(ctx, "update person", http.MethodPut, path, update, nil)
	if status == http.StatusNotFound {
		return false, fmt.Errorf("followupboss person %d: %w", n, crm.ErrContactNotFound)
	}
	return err == nil, err
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// AddNote adds a note to person contactID (POST /v1/notes), e.g. naming
// another contact that turned out to be the same person. Follow Up Boss
// has no documented merge call; an agent merges.
func (f *FollowUpBoss) AddNote(ctx context.Context, contactID, body string) error {
	n, err := personID(contactID)
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) == "" {
		return bus.Permanentf("followupboss: a note needs a body")
	}
	note := struct {
		PersonID int64  `json:"personId"`
		Subject  string `json:"subject"`
		Body     string `json:"body"`
	}{n, "Brokerflow", body}
	status, err := f.api.Do(ctx, "add note", http.MethodPost, "/v1/notes", note, nil)
	if status == http.StatusNotFound {
		return fmt.Errorf("followupboss person %d: %w", n, crm.ErrContactNotFound)
	}
	return err
}

// maxEventPages bounds HasLead's walk through a person's events (100 a
// page, newest first): a person with more than 2,000 events is searched in
// the newest 2,000.
const maxEventPages = 20

// HasLead reports whether the event that Record sends for lead leadID is
// on person contactID: it lists GET /v1/events?personId=…, newest first, and
// looks for crm.LeadMarker(leadID) in each event's message or description.
// Follow Up Boss limits GET /v1/events to 20 calls per 10 s (10 without a
// registered system), apart from the global quota; the adapter paces these
// calls on their own (Config.EventsRateLimit).
func (f *FollowUpBoss) HasLead(ctx context.Context, contactID, leadID string) (bool, error) {
	n, err := personID(contactID)
	if err != nil {
		return false, err
	}
	if leadID == "" {
		return false, bus.Permanentf("followupboss: HasLead needs a lead id")
	}
	marker := crm.LeadMarker(leadID)
	q := url.Values{"personId": {strconv.FormatInt(n, 10)}, "limit": {"100"}}
	for range maxEventPages {
		var page struct {
			Metadata struct {
				Next *string `json:"next"`
			} `json:"_metadata"`
			Events []struct {
				Message     string `json:"message"`
				Description string `json:"description"`
			} `json:"events"`
		}
		if _, err := f.events.Do(ctx, "list events", http.MethodGet, "/v1/events?"+q.Encode(), nil, &page); err != nil {
			return false, err
		}
		for _, e := range page.Events {
			if strings.Contains(e.Message, marker) || strings.Contains(e.Description, marker) {
				return true, nil
			}
		}
		if page.Metadata.Next == nil || *page.Metadata.Next == "" || len(page.Events) == 0 {
			return false, nil
		}
		q.Set("next", *page.Metadata.Next)
	}
	return false, nil
}
