package reporting_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"
)

// cells returns the text of each cell of each row of the table with id,
// by the row's data-source.
func cells(t *testing.T, page, id string) map[string][]string {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(page))
	if err != nil {
		t.Fatal(err)
	}
	attr := func(n *html.Node, key string) string {
		for _, a := range n.Attr {
			if a.Key == key {
				return a.Val
			}
		}
		return ""
	}
	var table *html.Node
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && n.Data == "table" && attr(n, "id") == id {
			table = n
			break
		}
	}
	if table == nil {
		t.Fatalf("no table %s in the page", id)
	}
	out := map[string][]string{}
	for n := range table.Descendants() {
		if n.Type != html.ElementNode || n.Data != "tr" || attr(n, "data-source") == "" {
			continue
		}
		var row []string
		for c := range n.Descendants() {
			if c.Type == html.ElementNode && c.Data == "td" {
				var b strings.Builder
				for x := range c.Descendants() {
					if x.Type == html.TextNode {
						b.WriteString(x.Data)
					}
				}
				row = append(row, strings.TrimSpace(b.String()))
			}
		}
		out[attr(n, "data-source")] = row
	}
	return out
}

// The dashboard is the report, in tables beside the charts, with the chart
// library served by reporting itself; a journey is looked up by lead id.
// (The charts themselves are checked in a browser by the all-in-one's test
// of a generated day.)
func TestDashboard_showsTheReportAndServesItsAssets(t *testing.T) {
	t.Parallel()
	onEach(t, func(t *testing.T, db string) {
		s := startSystem(t, db)
		s.publish(t, scenario())
		s.settled(t)

		code, page := s.get(t, "/?from=2026-03-01&to=2026-04-01")
		if code != http.StatusOK {
			t.Fatalf("dashboard: %d %s", code, page)
		}
		for _, c := range []struct {
			table, source string
			want          []string
		}{
			{"funnel-table", "zillow", []string{"2", "1", "1", "1", "1", "1", "50.0%"}},
			{"funnel-table", "idx", []string{"2", "0", "1", "0", "0", "0", "50.0%"}},
			{"speed-table", "zillow", []string{"1", "2.000 s", "2.000 s"}},
			{"speed-table", "idx", []string{"2", "1.000 s", "5.000 s"}},
			{"roi-table", "zillow", []string{"$600.00", "$15,750.00", "$0.00", "$0.00", "$0.00", "-100.0%", "$300.00", "$600.00"}},
			{"roi-table", "idx", []string{"$300.00", "$0.00", "$0.00", "$0.00", "$0.00", "-100.0%", "$150.00", "$300.00"}},
		} {
			if got := cells(t, page, c.table)[c.source]; !slices.Equal(got, c.want) {
				t.Errorf("%s, %s: %v, want %v", c.table, c.source, got, c.want)
			}
		}
		// Nothing from elsewhere: the page loads only reporting's own assets.
		for _, ref := range []string{"http://", "https://", "//cdn"} {
			if strings.Contains(page, `src="`+ref) || strings.Contains(page, `href="`+ref) {
				t.Errorf("the page refers to %s", ref)
			}
		}
		for _, asset := range []string{"/assets/vendor/echarts/echarts.common.min.js", "/assets/dashboard.js", "/assets/dashboard.css"} {
			if !strings.Contains(page, `"`+asset+`"`) {
				t.Errorf("the page does not load %s", asset)
			}
			if code, body := s.get(t, asset); code != http.StatusOK || len(body) < 100 {
				t.Errorf("%s: %d, %d bytes", asset, code, len(body))
			}
		}

		// A journey by lead id: Ada's, from Zillow and then the website.
		_, page = s.get(t, "/?lead_id=ld_2")
		for _, want := range []string{`followupboss contact 101: first from zillow, last from idx`, `data-step="active_client"`, `data-step="transaction"`, `data-step="closing"`} {
			if !strings.Contains(page, want) {
				t.Errorf("journey of ld_2: no %q in the page", want)
			}
		}
		if _, page = s.get(t, "/?lead_id=ld_unknown"); !strings.Contains(page, "No journey for lead ld_unknown.") {
			t.Error("an unknown lead's journey is not said to be unknown")
		}
		// Bad input is a 400 that says why.
		if code, body := s.get(t, "/?from=March"); code != http.StatusBadRequest || !strings.Contains(body, "from") {
			t.Errorf("from=March: %d %s", code, body)
		}
		if code, _ := s.get(t, "/assets/dashboard.html"); code != http.StatusNotFound {
			t.Errorf("the template is served as an asset: %d", code)
		}
	})
}
