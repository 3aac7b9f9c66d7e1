package sandbox

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// graphSampleNames are the people of the page's test leads, in turn.
var graphSampleNames = []string{"Ada Lovelace", "Grace Hopper", "Katherine Johnson", "Alan Turing", "Edsger Dijkstra"}

// tables show the Graph state, newest first, on the read-only page, with a button that submits
// a test lead (the page template has buttons, not text inputs, so the button posts a sample
// person; POST /_sandbox/graph/test-lead takes any full_name, email and phone_number).
func (g *Graph) tables() []PageTable {
	leads := PageTable{Title: "Leads", Columns: []string{"id", "created", "page", "form", "ad", "field_data"}}
	deliveries := PageTable{Title: "Notification deliveries", Columns: []string{"leadgen ids", "url", "state", "attempts", "last status", "last error"}}
	submit := PageTable{Title: "Submit a test lead", Columns: []string{"full_name", "email", "phone_number", "notification to"}, ActionsColumn: "submit"}

	g.mu.Lock()
	defer g.mu.Unlock()
	for _, l := range slices.Backward(g.leads) {
		fields := make([]string, len(l.Fields))
		for i, f := range l.Fields {
			fields[i] = f.Name + ": " + strings.Join(f.Values, " | ")
		}
		leads.Rows = append(leads.Rows, []string{
			l.ID, l.CreatedTime.Format(time.RFC3339), l.PageID, l.FormID, l.AdID, strings.Join(fields, "; "),
		})
	}
	for _, d := range slices.Backward(g.deliveries) {
		deliveries.Rows = append(deliveries.Rows, []string{
			strings.Join(d.LeadIDs, ", "), d.URL, d.State, strconv.Itoa(d.Attempts), strconv.Itoa(d.LastStatus), d.LastError,
		})
	}
	n := len(g.leads) + 1
	name := graphSampleNames[(n-1)%len(graphSampleNames)]
	first, _, _ := strings.Cut(strings.ToLower(name), " ")
	sample := map[string]string{
		"full_name":    name,
		"email":        first + strconv.Itoa(n) + "@example.com",
		"phone_number": "+1415555" + strconv.Itoa(1000+n%9000),
	}
	target := g.callbackURL
	if target == "" {
		target = "none: no callback URL is set (GraphOptions.CallbackURL, PUT /_sandbox/graph/callback)"
	}
	submit.Rows = [][]string{{sample["full_name"], sample["email"], sample["phone_number"], target}}
	submit.RowActions = [][]PageAction{{{Action: "/_sandbox/graph/test-lead", Fields: sample, Label: "Submit a test lead"}}}

	return []PageTable{submit, leads, deliveries}
}
