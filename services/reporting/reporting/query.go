package reporting

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"
)

// Period is how a report groups time: by day, by month, or all at once.
type Period string

// The periods.
const (
	ByDay   Period = "day"
	ByMonth Period = "month"
	AllTime Period = "all"
)

// key is the period a stored time falls in.
func (p Period) key(t string) string {
	switch p {
	case ByDay:
		return t[:min(len(t), 10)]
	case ByMonth:
		return t[:min(len(t), 7)]
	}
	return "all"
}

// ReportQuery selects a report: [From, To) by the time of each row's lead
// (zero: unbounded), grouped by Period, credited by Attribution.
type ReportQuery struct {
	From, To    time.Time
	Period      Period
	Attribution Attribution
	// Source, when set, keeps only that source.
	Source string
}

// Report is the answer: one row per source and period.
type Report struct {
	From        string      `json:"from,omitempty"`
	To          string      `json:"to,omitempty"`
	Period      Period      `json:"period"`
	Attribution Attribution `json:"attribution"`
	Rows        []*Row      `json:"rows"`
}

// Row is one source in one period. Leads, rejected and speed to lead count
// each lead by its own source; contacts and everything after them count
// each contact once, by the source and time of the lead it is credited to.
type Row struct {
	Source        string `json:"source"`
	Period        string `json:"period"`
	Leads         int    `json:"leads"`
	Rejected      int    `json:"rejected"`
	Contacts      int    `json:"contacts"`
	ActiveClients int    `json:"active_clients"`
	Transactions  int    `json:"transactions"`
	Closings      int    `json:"closings"`

	SpeedToLead SpeedToLead `json:"speed_to_lead"`

	// Rates: contacts per lead, active clients per contact, closings per
	// contact; null when the denominator is 0.
	ContactRate *float64 `json:"contact_rate"`
	ActiveRate  *float64 `json:"active_rate"`
	CloseRate   *float64 `json:"close_rate"`
	// TimeToCloseDaysP50 is the median from the credited lead to the closing.
	TimeToCloseDaysP50 *float64 `json:"time_to_close_days_p50"`

	Currency             string `json:"currency"`
	GrossCommissionMinor int64  `json:"gross_commission_minor"`
	BrokerageNetMinor    int64  `json:"brokerage_net_minor"`
	PaidMinor            int64  `json:"paid_minor"`
	// UnpaidMinor is the gross commission booked in the ledger and not yet
	// paid. The net, paid and unpaid come from the LEDGER events.
	UnpaidMinor int64 `json:"unpaid_minor"`
	// SpendMinor is the source's spend in the period's months (null by day:
	// spend is set per month).
	SpendMinor *int64 `json:"spend_minor"`
	// ROI is (brokerage net - spend) / spend; null without spend.
	ROI              *float64 `json:"roi"`
	CostPerLeadMinor *int64   `json:"cost_per_lead_minor"`
	// CostPerContactMinor is spend per contact credited to the source.
	CostPerContactMinor *int64 `json:"cost_per_contact_minor"`

	speeds      []int64
	closes      []float64
	bookedMinor int64
}

// SpeedToLead is the time from a webhook's receipt to its contact in the
// CRM, over the leads of the row that have a contact.
type SpeedToLead struct {
	N     int    `json:"n"`
	P50Ms *int64 `json:"p50_ms"`
	P90Ms *int64 `json:"p90_ms"`
}

// Percentile is the nearest-rank percentile of sorted values: the smallest
// value with at least p of them at or below it.
func Percentile[T int64 | float64](sorted []T, p float64) T {
	if len(sorted) == 0 {
		return 0
	}
	i := max(int(math.Ceil(p*float64(len(sorted))))-1, 0)
	return sorted[min(i, len(sorted)-1)]
}

// Report computes q over the database.
func (s *Store) Report(ctx context.Context, q ReportQuery) (*Report, error) {
	if q.Period == "" {
		q.Period = ByMonth
	}
	if q.Attribution == "" {
		q.Attribution = FirstTouch
	}
	from, to := "", "9999"
	rep := &Report{Period: q.Period, Attribution: q.Attribution}
	if !q.From.IsZero() {
		from = formatTime(q.From)
		rep.From = from
	}
	if !q.To.IsZero() {
		to = formatTime(q.To)
		rep.To = to
	}
	rows := map[[2]string]*Row{}
	row := func(source, at string) *Row {
		k := [2]string{source, q.Period.key(at)}
		r := rows[k]
		if r == nil {
			r = &Row{Source: source, Period: k[1], Currency: "USD"}
			rows[k] = r
		}
		return r
	}
	keep := func(source string) bool { return q.Source == "" || q.Source == source }

	// Leads, by their own source and receipt.
	err := each(ctx, s.DB, `SELECT source, received_at, status, speed_to_lead_ms FROM leads
WHERE received_at >= $1 AND received_at < $2 AND source IS NOT NULL`, []any{from, to}, func(sc scanner) error {
		var source, at string
		var status sql.NullString
		var speed sql.NullInt64
		if err := sc.Scan(&source, &at, &status, &speed); err != nil {
			return err
		}
		if !keep(source) {
			return nil
		}
		r := row(source, at)
		r.Leads++
		if status.String == "rejected" {
			r.Rejected++
		}
		if speed.Valid {
			r.speeds = append(r.speeds, speed.Int64)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Contacts, credited to one lead each.
	src, at := "first_source", "first_lead_at"
	if q.Attribution == LastTouch {
		src, at = "last_source", "last_lead_at"
	}
	err = each(ctx, s.DB, `SELECT `+src+`, `+at+`, active_client_at FROM journeys
WHERE `+at+` >= $1 AND `+at+` < $2 AND contact_at IS NOT NULL`, []any{from, to}, func(sc scanner) error {
		var source, when string
		var active sql.NullString
		if err := sc.Scan(&source, &when, &active); err != nil {
			return err
		}
		if !keep(source) {
			return nil
		}
		r := row(source, when)
		r.Contacts++
		if active.Valid {
			r.ActiveClients++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Transactions and commissions, credited as their contact is.
	err = each(ctx, s.DB, `SELECT j.`+src+`, j.`+at+`, t.opened_at, t.closed_at, t.gross_commission_minor,
  t.brokerage_net_minor, t.commission_paid_minor, t.currency, t.commission_booked_at, t.commission_gross_minor
FROM transactions t JOIN journeys j ON j.crm = t.crm AND j.contact_id = t.contact_id
WHERE j.`+at+` >= $1 AND j.`+at+` < $2`, []any{from, to}, func(sc scanner) error {
		var source, when string
		var opened, closed, currency, booked sql.NullString
		var gross, net, paid, bookedGross sql.NullInt64
		if err := sc.Scan(&source, &when, &opened, &closed, &gross, &net, &paid, &currency, &booked, &bookedGross); err != nil {
			return err
		}
		if !keep(source) {
			return nil
		}
		r := row(source, when)
		if opened.Valid {
			r.Transactions++
		}
		if closed.Valid {
			r.Closings++
			lt, err1 := parseTime(when)
			ct, err2 := parseTime(closed.String)
			if err1 == nil && err2 == nil {
				r.closes = append(r.closes, ct.Sub(lt).Hours()/24)
			}
		}
		// The gross is the TMS's closing's; only what the ledger booked
		// (its gross, or else the closing's) can be unpaid.
		r.GrossCommissionMinor += gross.Int64
		if booked.Valid {
			if bookedGross.Valid {
				r.bookedMinor += bookedGross.Int64
			} else {
				r.bookedMinor += gross.Int64
			}
		}
		r.BrokerageNetMinor += net.Int64
		r.PaidMinor += paid.Int64
		if currency.Valid {
			r.Currency = currency.String
		}
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Spend, per month.
	if q.Period != ByDay {
		fromMonth, toMonth := "0000-00", "9999-12"
		if !q.From.IsZero() {
			fromMonth = q.From.UTC().Format("2006-01")
		}
		if !q.To.IsZero() {
			toMonth = q.To.Add(-time.Nanosecond).UTC().Format("2006-01")
		}
		err = each(ctx, s.DB, `SELECT source, month, amount_minor, currency FROM spend WHERE month >= $1 AND month <= $2`,
			[]any{fromMonth, toMonth}, func(sc scanner) error {
				var source, month, currency string
				var amount int64
				if err := sc.Scan(&source, &month, &amount, &currency); err != nil {
					return err
				}
				if !keep(source) {
					return nil
				}
				r := row(source, month+"-01")
				r.SpendMinor = ptr(deref(r.SpendMinor) + amount)
				r.Currency = currency
				return nil
			})
		if err != nil {
			return nil, err
		}
	}

	for _, r := range rows {
		r.finish()
		rep.Rows = append(rep.Rows, r)
	}
	sort.Slice(rep.Rows, func(i, j int) bool {
		a, b := rep.Rows[i], rep.Rows[j]
		if a.Period != b.Period {
			return a.Period < b.Period
		}
		return a.Source < b.Source
	})
	if rep.Rows == nil {
		rep.Rows = []*Row{}
	}
	return rep, nil
}

// finish computes the derived figures of a row.
func (r *Row) finish() {
	slices.Sort(r.speeds)
	r.SpeedToLead = SpeedToLead{N: len(r.speeds)}
	if len(r.speeds) > 0 {
		r.SpeedToLead.P50Ms = ptr(Percentile(r.speeds, 0.5))
		r.SpeedToLead.P90Ms = ptr(Percentile(r.speeds, 0.9))
	}
	r.ContactRate = ratio(r.Contacts, r.Leads)
	r.ActiveRate = ratio(r.ActiveClients, r.Contacts)
	r.CloseRate = ratio(r.Closings, r.Contacts)
	if len(r.closes) > 0 {
		slices.Sort(r.closes)
		r.TimeToCloseDaysP50 = ptr(Percentile(r.closes, 0.5))
	}
	r.UnpaidMinor = max(r.bookedMinor-r.PaidMinor, 0)
	if r.SpendMinor != nil && *r.SpendMinor > 0 {
		spend := *r.SpendMinor
		r.ROI = ptr(float64(r.BrokerageNetMinor-spend) / float64(spend))
		if r.Leads > 0 {
			r.CostPerLeadMinor = ptr(spend / int64(r.Leads))
		}
		if r.Contacts > 0 {
			r.CostPerContactMinor = ptr(spend / int64(r.Contacts))
		}
	}
}

func ratio(n, d int) *float64 {
	if d == 0 {
		return nil
	}
	return ptr(float64(n) / float64(d))
}

func ptr[T any](v T) *T { return &v }

func deref(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

type scanner interface{ Scan(dest ...any) error }

// each runs query and calls fn for every row.
func each(ctx context.Context, db *sql.DB, query string, args []any, fn func(scanner) error) error {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// Journey is one journey: the contact's row, its leads, its stage changes,
// updates and transactions, and its steps in order.
type Journey struct {
	Journey        map[string]any   `json:"journey"`
	Steps          []Step           `json:"steps"`
	Leads          []map[string]any `json:"leads"`
	StageChanges   []map[string]any `json:"stage_changes"`
	ContactUpdates []map[string]any `json:"contact_updates"`
	Transactions   []map[string]any `json:"transactions"`
}

// Step is one step of a journey, with the system it happened in.
type Step struct {
	Step   string `json:"step"`
	Source string `json:"source"`
	At     string `json:"at"`
	ID     string `json:"id,omitempty"`
}

// ErrNotFound is returned for a journey that is not known.
var ErrNotFound = fmt.Errorf("reporting: not found")

// JourneyByLead returns the journey of the lead's contact, or the lead's
// alone when it has no contact (rejected, or not in the CRM yet).
func (s *Store) JourneyByLead(ctx context.Context, leadID string) (*Journey, error) {
	leads, err := queryMaps(ctx, s.DB, `SELECT * FROM leads WHERE lead_id = $1`, leadID)
	if err != nil {
		return nil, err
	}
	if len(leads) == 0 {
		return nil, ErrNotFound
	}
	crm, contact := str(leads[0]["crm"]), str(leads[0]["contact_id"])
	if contact == "" {
		j := &Journey{Leads: leads, StageChanges: []map[string]any{}, ContactUpdates: []map[string]any{}, Transactions: []map[string]any{}}
		j.Steps = leadSteps(leads)
		return j, nil
	}
	return s.JourneyByContact(ctx, crm, contact)
}

// JourneyByContact returns a contact's journey; crm may be empty when
// only one CRM has that contact id.
func (s *Store) JourneyByContact(ctx context.Context, crm, contactID string) (*Journey, error) {
	js, err := queryMaps(ctx, s.DB, `SELECT * FROM journeys WHERE contact_id = $1 AND ($2 = '' OR crm = $2) ORDER BY crm`, contactID, crm)
	if err != nil {
		return nil, err
	}
	if len(js) == 0 {
		return nil, ErrNotFound
	}
	j := &Journey{Journey: js[0]}
	crm = str(js[0]["crm"])
	for _, q := range []struct {
		dst *[]map[string]any
		sql string
	}{
		{&j.Leads, `SELECT * FROM leads WHERE crm = $1 AND contact_id = $2 ORDER BY received_at, lead_id`},
		{&j.StageChanges, `SELECT * FROM stage_changes WHERE crm = $1 AND contact_id = $2 ORDER BY changed_at, seq`},
		{&j.ContactUpdates, `SELECT * FROM contact_updates WHERE crm = $1 AND contact_id = $2 ORDER BY updated_at, seq`},
		{&j.Transactions, `SELECT * FROM transactions WHERE crm = $1 AND contact_id = $2 ORDER BY opened_at, transaction_id`},
	} {
		if *q.dst, err = queryMaps(ctx, s.DB, q.sql, crm, contactID); err != nil {
			return nil, err
		}
	}
	j.Steps = journeySteps(j)
	return j, nil
}

func leadSteps(leads []map[string]any) []Step {
	var steps []Step
	for _, l := range leads {
		if at := str(l["received_at"]); at != "" {
			step := "lead"
			if str(l["status"]) == "rejected" {
				step = "lead_rejected"
			}
			steps = append(steps, Step{Step: step, Source: str(l["source"]), At: at, ID: str(l["lead_id"])})
		}
		if at := str(l["synced_at"]); at != "" && str(l["contact_id"]) != "" {
			steps = append(steps, Step{Step: "contact", Source: str(l["crm"]), At: at, ID: str(l["contact_id"])})
		}
	}
	return steps
}

func journeySteps(j *Journey) []Step {
	steps := leadSteps(j.Leads)
	row := j.Journey
	crm := str(row["crm"])
	if at := str(row["active_client_at"]); at != "" {
		steps = append(steps, Step{Step: "active_client", Source: crm, At: at})
	}
	for _, t := range j.Transactions {
		id := str(t["transaction_id"])
		for _, s := range []struct{ step, source, at string }{
			{"transaction", "tms", "opened_at"}, {"closing", "tms", "closed_at"},
			{"commission_booked", "ledger", "commission_booked_at"}, {"commission_paid", "ledger", "commission_paid_at"},
		} {
			if at := str(t[s.at]); at != "" {
				steps = append(steps, Step{Step: s.step, Source: str(t[s.source]), At: at, ID: id})
			}
		}
	}
	sort.SliceStable(steps, func(a, b int) bool { return steps[a].At < steps[b].At })
	return steps
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	}
	return ""
}

// queryMaps returns each row as column → value.
func queryMaps(ctx context.Context, db *sql.DB, query string, args ...any) ([]map[string]any, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	out := []map[string]any{}
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		m := make(map[string]any, len(cols))
		for i, c := range cols {
			if b, ok := vals[i].([]byte); ok {
				vals[i] = string(b)
			}
			m[c] = vals[i]
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
