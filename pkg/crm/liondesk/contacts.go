package liondesk

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm"
)

// liondeskContactDetails is the part of a contact that AddDetails reads.
type liondeskContactDetails struct {
	Email       string `json:"email"`
	MobilePhone string `json:"mobile_phone"`
	HomePhone   string `json:"home_phone"`
	OfficePhone string `json:"office_phone"`
}

// AlsoReachable is the line of the note that keeps an email or phone that
// a LionDesk contact has no free field for.
func AlsoReachable(value string) string {
	return "Also reachable at: " + value + " (added by Brokerflow)"
}

// AddDetails adds id's email and phone to contact contactID when the contact
// lacks them, and never removes one. A LionDesk contact holds one email and
// three phones (mobile, home, office): a missing email goes into an empty
// email field, a missing phone into the first empty phone field, with one
// PATCH /contacts/{id} of only those fields. A value with no free field
// goes into a note on the contact (AlsoReachable), unless a note already
// says it. added reports whether the contact or its notes changed.
func (l *LionDesk) AddDetails(ctx context.Context, contact string, id crm.Identity) (added bool, err error) {
	n, err := crm.ContactNumber(Name, contact)
	if err != nil {
		return false, err
	}
	path := "/contacts/" + strconv.FormatInt(n, 10)
	var c liondeskContactDetails
	if _, err := l.api.Do(ctx, "read contact", http.MethodGet, path, nil, &c); err != nil {
		return false, err
	}
	email, phone := crm.Missing(crm.Person{Emails: nonEmpty(c.Email), Phones: nonEmpty(c.MobilePhone, c.HomePhone, c.OfficePhone)}, id)
	patch := map[string]string{}
	var overflow []string
	if email != "" {
		if c.Email == "" {
			patch["email"] = email
		} else {
			overflow = append(overflow, email)
		}
	}
	if phone != "" {
		switch {
		case c.MobilePhone == "":
			patch["mobile_phone"] = phone
		case c.HomePhone == "":
			patch["home_phone"] = phone
		case c.OfficePhone == "":
			patch["office_phone"] = phone
		default:
			overflow = append(overflow, phone)
		}
	}
	if len(patch) > 0 {
		if _, err := l.api.Do(ctx, "update contact", http.MethodPatch, path, patch, nil); err != nil {
			return false, err
		}
		added = true
	}
	for _, v := range overflow {
		line := AlsoReachable(v)
		found, err := l.noteContains(ctx, n, line)
		if err != nil {
			return added, err
		}
		if found {
			continue
		}
		if err := l.postNote(ctx, n, line); err != nil {
			return added, err
		}
		added = true
	}
	return added, nil
}

// AddNote adds a note to contact contactID, e.g. naming another contact
// that turned out to be the same person.
func (l *LionDesk) AddNote(ctx context.Context, contact, body string) error {
	n, err := crm.ContactNumber(Name, contact)
	if err != nil {
		return err
	}
	if strings.TrimSpace(body) == "" {
		return bus.Permanentf("liondesk: a note needs content")
	}
	return l.postNote(ctx, n, body)
}

// HasLead reports whether the note that Record adds for lead leadID is on
// contact contactID: it lists GET /contacts/{id}/notes and looks for
// crm.LeadMarker(leadID) in each note's content.
func (l *LionDesk) HasLead(ctx context.Context, contact, leadID string) (bool, error) {
	n, err := crm.ContactNumber(Name, contact)
	if err != nil {
		return false, err
	}
	if leadID == "" {
		return false, bus.Permanentf("liondesk: HasLead needs a lead id")
	}
	return l.noteContains(ctx, n, crm.LeadMarker(leadID))
}

// noteContains pages through the contact's notes for one containing text.
func (l *LionDesk) noteContains(ctx context.Context, contactID int64, text string) (bool, error) {
	const pageSize = 100
	for offset := 0; ; offset += pageSize {
		var page struct {
			Data []struct {
				Content string `json:"content"`
			} `json:"data"`
			Total int `json:"total"`
		}
		path := "/contacts/" + strconv.FormatInt(contactID, 10) + "/notes?" +
			url.Values{"limit": {strconv.Itoa(pageSize)}, "offset": {strconv.Itoa(offset)}}.Encode()
		if _, err := l.api.Do(ctx, "list notes", http.MethodGet, path, nil, &page); err != nil {
			return false, err
		}
		for _, note := range page.Data {
			if strings.Contains(note.Content, text) {
				return true, nil
			}
		}
		if len(page.Data) == 0 || offset+len(page.Data) >= page.Total {
			return false, nil
		}
	}
}
