package reporting

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// api serves:
//
//	GET /  the dashboard (?from=&to=&attribution=&lead_id=|contact_id=), GET /assets/…
//	GET /api/report?from=&to=&period=day|month|all&attribution=first|last&source=
//	GET /api/journey?lead_id=…  or  ?contact_id=…[&crm=…]
//	GET /api/tables, GET /api/export/<table>.csv
//	GET /api/status
func (r *Reporter) api() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", r.getDashboard)
	mux.Handle("GET /assets/", r.dashboardAssets())
	mux.HandleFunc("GET /api/report", r.getReport)
	mux.HandleFunc("GET /api/journey", r.getJourney)
	mux.HandleFunc("GET /api/tables", func(w http.ResponseWriter, _ *http.Request) {
		names := make([]string, len(Tables))
		for i, t := range Tables {
			names[i] = t.Name
		}
		writeJSON(w, http.StatusOK, map[string]any{"tables": names})
	})
	mux.HandleFunc("GET /api/export/{file}", r.getExport)
	mux.HandleFunc("GET /api/status", r.getStatus)
	return mux
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, args...)})
}

// parseWhen reads a date (2026-03-01) or an RFC 3339 time.
func parseWhen(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Parse(time.RFC3339Nano, s)
}

func (r *Reporter) getReport(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	from, err := parseWhen(q.Get("from"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "from: %v", err)
		return
	}
	to, err := parseWhen(q.Get("to"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "to: %v", err)
		return
	}
	period := Period(q.Get("period"))
	switch period {
	case "":
		period = ByMonth
	case ByDay, ByMonth, AllTime:
	default:
		writeError(w, http.StatusBadRequest, "period %q: want day, month or all", period)
		return
	}
	attribution := r.attribution
	if a := q.Get("attribution"); a != "" {
		if attribution, err = ParseAttribution(a); err != nil {
			writeError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	var rep *Report
	err = r.withStore(func(s *Store) error {
		var err error
		rep, err = s.Report(req.Context(), ReportQuery{From: from, To: to, Period: period, Attribution: attribution, Source: q.Get("source")})
		return err
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (r *Reporter) getJourney(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	var j *Journey
	err := r.withStore(func(s *Store) error {
		var err error
		switch {
		case q.Get("lead_id") != "":
			j, err = s.JourneyByLead(req.Context(), q.Get("lead_id"))
		case q.Get("contact_id") != "":
			j, err = s.JourneyByContact(req.Context(), q.Get("crm"), q.Get("contact_id"))
		default:
			return errMissingKey
		}
		return err
	})
	switch {
	case errors.Is(err, errMissingKey):
		writeError(w, http.StatusBadRequest, "give lead_id or contact_id")
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "no such journey")
	case err != nil:
		writeError(w, http.StatusInternalServerError, "%v", err)
	default:
		writeJSON(w, http.StatusOK, j)
	}
}

var errMissingKey = errors.New("reporting: no lead_id or contact_id")

func (r *Reporter) getExport(w http.ResponseWriter, req *http.Request) {
	name, ok := strings.CutSuffix(req.PathValue("file"), ".csv")
	t, known := TableNamed(name)
	if !ok || !known {
		writeError(w, http.StatusNotFound, "no table %q (GET /api/tables)", req.PathValue("file"))
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+t.Name+`.csv"`)
	err := r.withStore(func(s *Store) error { return WriteCSV(req.Context(), s.DB, t, w) })
	if err != nil {
		// The status is sent; a cut body is all that can tell.
		r.log.Warn("csv export failed", "table", t.Name, "err", err)
	}
}

func (r *Reporter) getStatus(w http.ResponseWriter, req *http.Request) {
	var out map[string]any
	err := r.withStore(func(s *Store) error {
		cur, err := s.Cursors(req.Context())
		out = map[string]any{"database": s.Where, "cursors": cur, "attribution": r.attribution}
		return err
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
