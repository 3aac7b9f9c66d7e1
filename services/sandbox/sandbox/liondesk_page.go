package sandbox

import (
	"strconv"
	"strings"
	"time"
)

// tables show the LionDesk state, newest first, on the read-only page.
func (l *LionDesk) tables() []PageTable {
	contacts := PageTable{Title: "Contacts", Columns: []string{"id", "name", "email", "mobile phone", "home phone", "source", "tags", "created", "updated"}}
	notes := PageTable{Title: "Notes", Columns: []string{"id", "contact", "content", "created"}}
	sources := PageTable{Title: "Contact sources", Columns: []string{"id", "name"}}

	l.mu.Lock()
	defer l.mu.Unlock()
	names := map[int64]string{}
	for _, s := range l.sources {
		names[s.ID] = s.Name
	}
	for i := len(l.contacts) - 1; i >= 0; i-- {
		c := l.contacts[i]
		source := ""
		if c.SourceID != nil {
			source = names[*c.SourceID]
		}
		contacts.Rows = append(contacts.Rows, []string{
			strconv.FormatInt(c.ID, 10), strings.TrimSpace(c.FirstName + " " + c.LastName), c.Email,
			c.MobilePhone, c.HomePhone, source, c.Tags, c.CreatedAt.Format(time.RFC3339), c.UpdatedAt.Format(time.RFC3339),
		})
	}
	for i := len(l.notes) - 1; i >= 0; i-- {
		n := l.notes[i]
		notes.Rows = append(notes.Rows, []string{
			strconv.FormatInt(n.ID, 10), strconv.FormatInt(n.ContactID, 10), n.Content, n.CreatedAt.Format(time.RFC3339),
		})
	}
	for i := len(l.sources) - 1; i >= 0; i-- {
		s := l.sources[i]
		sources.Rows = append(sources.Rows, []string{strconv.FormatInt(s.ID, 10), s.Name})
	}
	return []PageTable{contacts, notes, sources}
}
