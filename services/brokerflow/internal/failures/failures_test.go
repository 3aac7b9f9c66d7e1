package failures_test

import (
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/brokerflow/internal/failures"
)

func TestParseID_roundTripsAndRefusesOtherShapes(t *testing.T) {
	t.Parallel()
	id := failures.ID("crm-sync", "LEADS", 42)
	svc, stream, seq, err := failures.ParseID(id)
	if err != nil || svc != "crm-sync" || stream != "LEADS" || seq != 42 {
		t.Fatalf("ParseID(%q) = %q %q %d %v", id, svc, stream, seq, err)
	}
	for _, bad := range []string{"", "crm-sync", "crm-sync/LEADS", "crm-sync/LEADS/0", "crm-sync/LEADS/x", "/LEADS/1", "a/b/c/1"} {
		if _, _, _, err := failures.ParseID(bad); err == nil {
			t.Errorf("ParseID(%q) took it", bad)
		}
	}
}

func TestFilter_selectsByEachField(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	a := &failures.Failure{ID: "crm-sync/LEADS/1", Service: "crm-sync", Source: "idx", ReasonCode: "crm.http_400", State: failures.Open, LastFailedAt: now.Add(-time.Hour)}
	b := &failures.Failure{ID: "normalizer/WEBHOOKS/2", Service: "normalizer", Source: "zillow", ReasonCode: "message.decode", State: failures.Resolved, LastFailedAt: now.Add(-72 * time.Hour)}
	since2d, err := failures.ParseSince("2d", now)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		f    failures.Filter
		want []string
	}{
		{"all", failures.Filter{}, []string{a.ID, b.ID}},
		{"service", failures.Filter{Service: "normalizer"}, []string{b.ID}},
		{"source", failures.Filter{Source: "idx"}, []string{a.ID}},
		{"reason glob", failures.Filter{Reason: "crm.*"}, []string{a.ID}},
		{"since 2d", failures.Filter{Since: since2d}, []string{a.ID}},
		{"unsettled", failures.Filter{States: failures.Unsettled}, []string{a.ID}},
		{"resolved", failures.Filter{States: []failures.State{failures.Resolved}}, []string{b.ID}},
	} {
		got := failures.Select([]*failures.Failure{a, b}, tc.f)
		var ids []string
		for _, f := range got {
			ids = append(ids, f.ID)
		}
		if len(ids) != len(tc.want) || (len(ids) > 0 && ids[0] != tc.want[0]) {
			t.Errorf("%s: %v, want %v", tc.name, ids, tc.want)
		}
	}
	if _, err := failures.ParseSince("yesterday", now); err == nil {
		t.Error("ParseSince took \"yesterday\"")
	}
	if ts, err := failures.ParseSince("2026-11-28T00:00:00Z", now); err != nil || !ts.Equal(time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("ParseSince RFC 3339 = %v, %v", ts, err)
	}
}

func TestSource_readsTheLeadSourceFromTheSubject(t *testing.T) {
	t.Parallel()
	for subject, want := range map[string]string{
		"lead.normalized.idx":          "idx",
		"webhook.received.lead.zillow": "zillow",
		"webhook.received.crm.fub":     "fub",
		"crm.contact.synced":           "",
		"ops.redrive.crm-sync":         "",
	} {
		if got := failures.Source(subject); got != want {
			t.Errorf("Source(%q) = %q, want %q", subject, got, want)
		}
	}
}
