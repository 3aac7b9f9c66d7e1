package followupboss_test

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/crm"
	"github.com/brokerflow/brokerflow/pkg/crm/crmtest"
	"github.com/brokerflow/brokerflow/pkg/crm/followupboss"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// fubBackend is the sandbox's Follow Up Boss account.
type fubBackend struct{ fub *sandbox.FUB }

func (b fubBackend) Contacts(*testing.T) int { return len(b.fub.People()) }

func (b fubBackend) Activities(*testing.T) int { return len(b.fub.Events()) }

func (b fubBackend) FailNext(_ *testing.T, status, n, retryAfter int) {
	b.fub.InjectFault(sandbox.Fault{Status: status, Count: n, RetryAfter: retryAfter})
}

func (b fubBackend) Details(t *testing.T, contactID string) (emails, phones []string) {
	t.Helper()
	for _, p := range b.fub.People() {
		if strconv.FormatInt(p.ID, 10) == contactID {
			return values(p.Emails), values(p.Phones)
		}
	}
	t.Fatalf("no person %s", contactID)
	return nil, nil
}

func (b fubBackend) Notes(_ *testing.T, contactID string) []string {
	var out []string
	for _, n := range b.fub.Notes() {
		if strconv.FormatInt(n.PersonID, 10) == contactID {
			out = append(out, n.Body)
		}
	}
	return out
}

func values(vs []sandbox.FUBValue) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = v.Value
	}
	return out
}

func TestFollowUpBoss_contract(t *testing.T) {
	t.Parallel()
	crmtest.Run(t, func(t *testing.T) (crmtest.Adapter, crmtest.Backend) {
		fub, cfg := crmtest.FollowUpBoss(t)
		return followupboss.New(cfg), fubBackend{fub: fub}
	})
}

func TestFollowUpBoss_sendsTheLeadAsAnEvent(t *testing.T) {
	t.Parallel()
	fub, cfg := crmtest.FollowUpBoss(t)
	l := crmtest.Lead("ld_ev", "Ada", "Lovelace", "ada@example.com", "+14155550134")
	if _, err := followupboss.New(cfg).Record(t.Context(), l, ""); err != nil {
		t.Fatal(err)
	}
	events := fub.Events()
	if len(events) != 1 {
		t.Fatalf("%d events, want 1", len(events))
	}
	ev := events[0]
	if ev.Type != "Property Inquiry" || ev.Source != "idx" || ev.System != sandbox.DefaultFUBSystem || ev.Message != "Is 12 Main St still available?\n\n(Brokerflow lead ld_ev)" ||
		ev.Description != "(Brokerflow lead ld_ev)" {
		t.Fatalf("event = %+v", ev)
	}
	p := fub.People()[0]
	if p.FirstName != "Ada" || p.LastName != "Lovelace" || len(p.Emails) != 1 || p.Emails[0].Value != "ada@example.com" ||
		len(p.Phones) != 1 || p.Phones[0].Value != "+14155550134" {
		t.Fatalf("person = %+v", p)
	}
}

func TestFollowUpBoss_wrongKeyIsPermanent(t *testing.T) {
	t.Parallel()
	_, cfg := crmtest.FollowUpBoss(t)
	cfg.APIKey = "revoked"
	_, _, err := followupboss.New(cfg).Find(t.Context(), crm.Identity{Email: "a@example.com"})
	var apiErr *crm.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 401 || bus.DefaultPolicy().Classify(err) != bus.Permanent {
		t.Fatalf("err = %v, want a permanent 401", err)
	}
}

func TestConfig_validate(t *testing.T) {
	t.Parallel()
	ok := followupboss.Config{BaseURL: "https://api.followupboss.com", APIKey: "k", Timeout: time.Second}
	tests := map[string]struct {
		mutate func(*followupboss.Config)
		want   string
	}{
		"valid":         {func(*followupboss.Config) {}, ""},
		"no_key":        {func(c *followupboss.Config) { c.APIKey = "" }, "X_API_KEY"},
		"relative_url":  {func(c *followupboss.Config) { c.BaseURL = "/fub" }, "X_BASE_URL"},
		"zero_timeout":  {func(c *followupboss.Config) { c.Timeout = 0 }, "X_TIMEOUT"},
		"negative_rate": {func(c *followupboss.Config) { c.RateLimit = -1 }, "X_RATE_LIMIT"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := ok
			tc.mutate(&c)
			err := c.Validate("X_")
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestFollowUpBoss_ParseWebhook(t *testing.T) {
	t.Parallel()
	fub := followupboss.New(followupboss.Config{BaseURL: "http://127.0.0.1:1", Timeout: time.Second})
	tests := []struct {
		name    string
		body    string
		kind    crm.ChangeKind
		ids     []string
		eventID string
		wantErr bool
	}{
		{"documented_example", `{"eventId":"abc-1","eventCreated":"2016-05-25T16:44:48+00:00","event":"peopleStageUpdated","resourceIds":[40942],"uri":"https://api.followupboss.com/v1/people?id=40942"}`, crm.ChangeStage, []string{"40942"}, "abc-1", false},
		{"batch_update", `{"eventId":7,"event":"peopleUpdated","resourceIds":[1,"2"]}`, crm.ChangeUpdated, []string{"1", "2"}, "7", false},
		{"created", `{"eventId":"c","event":"peopleCreated","resourceIds":[3]}`, crm.ChangeCreated, []string{"3"}, "c", false},
		{"other_event", `{"eventId":"n","event":"notesCreated","resourceIds":["whatever"]}`, crm.ChangeOther, nil, "n", false},
		{"no_event", `{"eventId":"x","resourceIds":[1]}`, 0, nil, "", true},
		{"no_resource", `{"event":"peopleUpdated","resourceIds":[]}`, 0, nil, "", true},
		{"bad_resource", `{"event":"peopleUpdated","resourceIds":[-4]}`, 0, nil, "", true},
		{"not_json", `peopleUpdated`, 0, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			n, err := fub.ParseWebhook([]byte(tt.body))
			if tt.wantErr {
				if !errors.Is(err, followupboss.ErrBadWebhook) {
					t.Fatalf("err = %v, want ErrBadWebhook", err)
				}
				return
			}
			if err != nil || n.Kind != tt.kind || !slices.Equal(n.ContactIDs, tt.ids) || n.EventID != tt.eventID {
				t.Fatalf("notification = %+v, %v", n, err)
			}
		})
	}
}

func TestFollowUpBoss_Person(t *testing.T) {
	t.Parallel()
	_, cfg := crmtest.FollowUpBoss(t)
	fub := followupboss.New(cfg)
	rec, err := fub.Record(t.Context(), crmtest.Lead("ld_p", "Ada", "Lovelace", "ada@example.com", ""), "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := fub.Person(t.Context(), rec.ContactID)
	if err != nil || p.FirstName != "Ada" || p.Stage != "Lead" || p.Source != "idx" || !slices.Equal(p.Emails, []string{"ada@example.com"}) || p.Updated.IsZero() {
		t.Fatalf("person = %+v, %v", p, err)
	}
	_, err = fub.Person(t.Context(), "999")
	if !errors.Is(err, crm.ErrContactNotFound) || bus.DefaultPolicy().Classify(err) != bus.Transient {
		t.Fatalf("unknown person: %v (must be a transient crm.ErrContactNotFound)", err)
	}
	if _, err := fub.Person(t.Context(), "../v1/events"); bus.DefaultPolicy().Classify(err) != bus.Permanent {
		t.Fatalf("a path as id: %v, want permanent", err)
	}
	if _, err := fub.Person(t.Context(), fmt.Sprint(-1)); bus.DefaultPolicy().Classify(err) != bus.Permanent {
		t.Fatalf("a negative id: %v, want permanent", err)
	}
}

func FuzzParseWebhook(f *testing.F) {
	f.Add([]byte(`{"eventId":"abc-1","eventCreated":"2016-05-25T16:44:48+00:00","event":"peopleStageUpdated","resourceIds":[40942],"uri":"https://api.followupboss.com/v1/people?id=40942"}`))
	f.Add([]byte(`{"event":"peopleUpdated","resourceIds":[1e3]}`))
	f.Add([]byte(`null`))
	fub := followupboss.New(followupboss.Config{BaseURL: "http://127.0.0.1:1", Timeout: time.Second})
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := fub.ParseWebhook(body)
		if err != nil {
			return
		}
		for _, id := range n.ContactIDs {
			// Every id is a positive decimal person id, safe in a path and a KV key.
			if id == "" || strings.TrimLeft(id, "0123456789") != "" || id[0] == '0' {
				t.Fatalf("contact id %q from %q", id, body)
			}
		}
		if n.Kind != crm.ChangeOther && len(n.ContactIDs) == 0 {
			t.Fatalf("a people event without contacts from %q", body)
		}
	})
}
