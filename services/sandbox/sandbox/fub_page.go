package sandbox

import (
	"strconv"
	"strings"
	"time"
)

// tables show the FUB state, newest first, on the read-only page.
func (f *FUB) tables() []PageTable {
	people := PageTable{Title: "People", Columns: []string{"id", "name", "emails", "phones", "stage", "source", "created", "assignment"}, ActionsColumn: "move to stage"}
	events := PageTable{Title: "Events", Columns: []string{"id", "person", "type", "source", "system", "message", "created"}}
	notes := PageTable{Title: "Notes", Columns: []string{"id", "person", "subject", "body", "created"}}

	now := f.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.people) - 1; i >= 0; i-- {
		p := f.people[i]
		assignment := "done"
		if !p.visible(now) {
			assignment = "pending until " + p.visibleAt.UTC().Format(time.RFC3339)
		}
		people.Rows = append(people.Rows, []string{
			strconv.FormatInt(p.ID, 10), p.Name, joinValues(p.Emails), joinValues(p.Phones),
			p.Stage, p.Source, p.Created.Format(time.RFC3339), assignment,
		})
		people.RowActions = append(people.RowActions, fubStageActions(p.ID, p.Stage))
	}
	for i := len(f.events) - 1; i >= 0; i-- {
		e := f.events[i]
		events.Rows = append(events.Rows, []string{
			strconv.FormatInt(e.ID, 10), strconv.FormatInt(e.PersonID, 10), e.Type, e.Source,
			e.System, e.Message, e.Created.Format(time.RFC3339),
		})
	}
	for i := len(f.notes) - 1; i >= 0; i-- {
		n := f.notes[i]
		notes.Rows = append(notes.Rows, []string{
			strconv.FormatInt(n.ID, 10), strconv.FormatInt(n.PersonID, 10), n.Subject, n.Body,
			n.Created.Format(time.RFC3339),
		})
	}
	return append([]PageTable{people, events, notes}, f.wh.webhookTables()...)
}

func joinValues(vs []FUBValue) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = v.Value
	}
	return strings.Join(s, ", ")
}
