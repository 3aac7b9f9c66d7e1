package sandbox_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

func post(t *testing.T, url, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestSlack_answersAsSlackDoes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{Slack: sandbox.SlackOptions{PerSecond: 2}})
	hook := e.srv.URL + "/slack" + sandbox.DefaultSlackHookPath
	cases := []struct {
		url, body, want string
		status          int
	}{
		{hook, `{"text":"hello"}`, "ok", 200},
		{hook, `not json`, "invalid_payload", 400},
		{hook, `{"text":""}`, "no_text", 400},
		{hook, `{"blocks":[{"text":"no type"}]}`, "invalid_blocks", 400},
		{e.srv.URL + "/slack/services/T1/B1/wrong", `{"text":"x"}`, "no_service", 404},
	}
	for _, c := range cases {
		e.clock.Advance(time.Second) // a fresh rate window each
		status, _, body := post(t, c.url, c.body)
		if status != c.status || body != c.want {
			t.Errorf("POST %s %s = %d %q, want %d %q", c.url, c.body, status, body, c.status, c.want)
		}
	}
	e.clock.Advance(time.Second)
	post(t, hook, `{"text":"one"}`)
	post(t, hook, `{"text":"two"}`)
	status, h, body := post(t, hook, `{"text":"three"}`)
	if status != 429 || body != "rate_limited" || h.Get("Retry-After") != "1" {
		t.Fatalf("over the pace: %d %q Retry-After %q", status, body, h.Get("Retry-After"))
	}
	msgs := e.sb.Slack().Messages()
	if len(msgs) != 3 || msgs[0].Text != "hello" || msgs[2].Text != "two" {
		t.Fatalf("messages = %+v", msgs)
	}
}

func TestPagerDuty_triggerThenResolveByDedupKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, sandbox.Options{})
	url := e.srv.URL + "/pagerduty/v2/enqueue"
	trigger := `{"routing_key":"` + sandbox.DefaultPagerDutyRoutingKey + `","event_action":"trigger","dedup_key":"k1","payload":{"summary":"s","source":"brokerflow","severity":"error"}}`
	status, _, body := post(t, url, trigger)
	var ans struct {
		DedupKey string `json:"dedup_key"`
	}
	_ = json.Unmarshal([]byte(body), &ans)
	if status != 202 || ans.DedupKey != "k1" || !strings.Contains(body, `"status":"success"`) {
		t.Fatalf("trigger = %d %s", status, body)
	}
	post(t, url, trigger)
	if a := e.sb.PagerDuty().Alerts(); len(a) != 1 || a[0].Status != "triggered" || a[0].Triggers != 2 {
		t.Fatalf("alerts after two triggers = %+v", a)
	}
	status, _, body = post(t, url, `{"routing_key":"`+sandbox.DefaultPagerDutyRoutingKey+`","event_action":"resolve","dedup_key":"k1"}`)
	if status != 202 || e.sb.PagerDuty().Alerts()[0].Status != "resolved" {
		t.Fatalf("resolve = %d %s, alerts %+v", status, body, e.sb.PagerDuty().Alerts())
	}
	for _, bad := range []string{
		`{"routing_key":"nope","event_action":"trigger","payload":{"summary":"s","source":"x","severity":"error"}}`,
		`{"routing_key":"` + sandbox.DefaultPagerDutyRoutingKey + `","event_action":"trigger","payload":{"summary":"s","source":"x","severity":"loud"}}`,
		`{"routing_key":"` + sandbox.DefaultPagerDutyRoutingKey + `","event_action":"resolve"}`,
		`[]`,
	} {
		if status, _, body := post(t, url, bad); status != 400 || !strings.Contains(body, `"status":"invalid event"`) {
			t.Errorf("%s = %d %s, want 400 invalid event", bad, status, body)
		}
	}
	e.sb.PagerDuty().InjectFault(sandbox.Fault{Path: "/v2/enqueue", Status: 429, RetryAfter: 30})
	if status, h, _ := post(t, url, trigger); status != 429 || h.Get("Retry-After") != "30" {
		t.Fatalf("fault = %d, Retry-After %q", status, h.Get("Retry-After"))
	}
}
