package reporting

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// The dashboard: one server-rendered page (html/template) with a data
// table beside every chart, and the charts drawn in the browser by Apache
// ECharts (vendored, embedded: no CDN, no network) with its SVG renderer,
// so that every number a chart shows is text in the page.
//
//go:embed dashboard/*.html dashboard/*.js dashboard/*.css dashboard/vendor/echarts/*
var dashboardFiles embed.FS

var dashboardTmpl = template.Must(template.New("dashboard.html").Funcs(template.FuncMap{
	"money":   money,
	"seconds": seconds,
	"percent": percent,
	"int":     deref,
	"when":    formatStepTime,
	"text":    str,
}).ParseFS(dashboardFiles, "dashboard/dashboard.html"))

// dashboardPage is what the page shows.
type dashboardPage struct {
	From, To    string
	Attribution Attribution
	Database    string
	Rows        []*Row
	// Journey is the journey asked for (?lead_id= or ?contact_id=), with
	// JourneyError when it cannot be shown.
	JourneyKey   string
	Journey      *Journey
	JourneyError string
	Recent       []map[string]any
}

// chartData is what the charts draw, in the page as JSON.
type chartData struct {
	Rows []*Row `json:"rows"`
}

func (r *Reporter) dashboardAssets() http.Handler {
	sub, err := fs.Sub(dashboardFiles, "dashboard")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.StripPrefix("/assets/", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, ".html") {
			http.NotFound(w, req)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=3600")
		files.ServeHTTP(w, req)
	}))
}

// getDashboard serves the page: GET /?from=&to=&attribution=&lead_id=&contact_id=&crm=
func (r *Reporter) getDashboard(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	page := dashboardPage{From: q.Get("from"), To: q.Get("to"), Attribution: r.attribution}
	from, err := parseWhen(page.From)
	if err != nil {
		writeError(w, http.StatusBadRequest, "from %q: want a date such as 2026-03-01 or an RFC 3339 time", page.From)
		return
	}
	to, err := parseWhen(page.To)
	if err != nil {
		writeError(w, http.StatusBadRequest, "to %q: want a date such as 2026-04-01 or an RFC 3339 time", page.To)
		return
	}
	if a := q.Get("attribution"); a != "" {
		if page.Attribution, err = ParseAttribution(a); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	err = r.withStore(func(s *Store) error {
		ctx := req.Context()
		page.Database = s.Where
		rep, err := s.Report(ctx, ReportQuery{From: from, To: to, Period: AllTime, Attribution: page.Attribution})
		if err != nil {
			return err
		}
		page.Rows = rep.Rows
		if page.Recent, err = queryMaps(ctx, s.DB, `SELECT crm, contact_id, first_source, last_source, leads, stage, contact_at
FROM journeys WHERE contact_at IS NOT NULL ORDER BY contact_at DESC, crm, contact_id LIMIT 10`); err != nil {
			return err
		}
		page.JourneyKey, page.Journey, page.JourneyError = journeyOf(ctx, s, q.Get("lead_id"), q.Get("crm"), q.Get("contact_id"))
		return nil
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	var b bytes.Buffer
	if err := dashboardTmpl.Execute(&b, struct {
		dashboardPage
		Chart chartData
	}{page, chartData{Rows: page.Rows}}); err != nil {
		writeError(w, http.StatusInternalServerError, "render the dashboard: %v", err)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'")
	_, _ = b.WriteTo(w)
}

// journeyOf looks a journey up for the page; key says what was asked.
func journeyOf(ctx context.Context, s *Store, leadID, crm, contactID string) (string, *Journey, string) {
	var (
		j   *Journey
		err error
		key string
	)
	switch {
	case leadID != "":
		key = "lead " + leadID
		j, err = s.JourneyByLead(ctx, leadID)
	case contactID != "":
		key = "contact " + contactID
		j, err = s.JourneyByContact(ctx, crm, contactID)
	default:
		return "", nil, ""
	}
	switch {
	case errors.Is(err, ErrNotFound):
		return key, nil, "No journey for " + key + "."
	case err != nil:
		return key, nil, err.Error()
	}
	return key, j, ""
}

var printer = message.NewPrinter(language.English)

// money shows minor units as dollars and cents: $1,200.00.
func money(minor int64) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	return printer.Sprintf("%s$%d.%02d", sign, minor/100, minor%100)
}

// seconds shows milliseconds as seconds: 1.234 s.
func seconds(ms *int64) string {
	if ms == nil {
		return "–"
	}
	return printer.Sprintf("%.3f s", float64(*ms)/1000)
}

// percent shows a ratio as a percentage: -100.0%.
func percent(r *float64) string {
	if r == nil {
		return "–"
	}
	return printer.Sprintf("%.1f%%", *r*100)
}

// formatStepTime shows a stored time to the second, in UTC.
func formatStepTime(v any) string {
	s := str(v)
	t, err := parseTime(s)
	if err != nil {
		return s
	}
	return t.Format(time.DateTime) + " UTC"
}
