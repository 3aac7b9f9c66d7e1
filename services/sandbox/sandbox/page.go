package sandbox

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"
)

//go:embed page.html.tmpl
var pageSource string

var pageTemplate = template.Must(template.New("page").Parse(pageSource))

// pageSection is what the read-only page shows about one vendor (Kit.pageSection): a few
// tables of its state.
type pageSection struct {
	Title  string
	Note   string
	Tables []PageTable
}

// PageTable is one table of a vendor's section of the page (KitOptions.Tables).
type PageTable struct {
	Title   string
	Columns []string
	Rows    [][]string
	// RowActions, when set, holds the buttons shown after each row (same index as Rows),
	// under the column ActionsColumn.
	RowActions    [][]PageAction
	ActionsColumn string
}

// pageAction is one button on the page: an HTML form that POSTs Fields to Action.
type PageAction struct {
	Action string
	Fields map[string]string
	Label  string
}

// pageHandler serves the read-only HTML view of every vendor's state. It refreshes itself.
func pageHandler(vendors []*Kit) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		sections := make([]pageSection, len(vendors))
		for i, v := range vendors {
			sections[i] = v.pageSection()
		}
		var buf bytes.Buffer
		if err := pageTemplate.Execute(&buf, sections); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(buf.Bytes())
	})
}
