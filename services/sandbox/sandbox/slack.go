package sandbox

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Slack incoming webhooks (Slack's "Sending messages using incoming webhooks"): a POST of a JSON
// message, {"text": …} and optionally Block Kit "blocks", to
// https://hooks.slack.com/services/T…/B…/…. The answer is text/plain: 200 "ok", or an error
// code. The sandbox serves the hook under /slack/services/<T>/<B>/<secret>.

// DefaultSlackHookPath is the path (after /slack) of the incoming webhook the emulation
// accepts by default.
const DefaultSlackHookPath = "/services/T00000000/B00000000/sandboxsandboxsandbox"

// slackMaxBlocks is Slack's limit of blocks in one message [S].
const slackMaxBlocks = 50

// SlackOptions configures the Slack emulation. Zero fields take the defaults.
type SlackOptions struct {
	// Hooks are the paths (after /slack) of the valid incoming webhooks. Default:
	// DefaultSlackHookPath. A POST to another path answers 404 no_service.
	Hooks []string
	// PerSecond is how many messages each hook takes per second before it answers 429 with
	// Retry-After. Slack's documented pace is about one per second with short bursts [S]; the
	// sandbox's default is 5, so that tests are not paced.
	PerSecond int
}

// SlackMessage is one message a hook accepted.
type SlackMessage struct {
	Hook   string          `json:"hook"`
	Text   string          `json:"text"`
	Blocks json.RawMessage `json:"blocks,omitempty"`
	At     time.Time       `json:"at"`
}

// Slack is the incoming-webhook emulation.
type Slack struct {
	*Kit
	hooks     []string
	perSecond int

	mu       sync.Mutex
	limits   *slidingWindow
	messages []SlackMessage
}

func newSlack(o SlackOptions, now func() time.Time) *Slack {
	if len(o.Hooks) == 0 {
		o.Hooks = []string{DefaultSlackHookPath}
	}
	if o.PerSecond <= 0 {
		o.PerSecond = 5
	}
	s := &Slack{hooks: slices.Clone(o.Hooks), perSecond: o.PerSecond, limits: newSlidingWindow(time.Second)}
	s.Kit = NewKit(KitOptions{
		Name:  "slack",
		Title: "Slack (incoming webhooks)",
		Note:  "Messages posted to the incoming webhook " + "/slack" + DefaultSlackHookPath + ", newest first.",
		// An incoming webhook's URL is its credential: the hook is the account.
		Auth: func(w http.ResponseWriter, r *http.Request) (string, bool) {
			if !slices.Contains(s.hooks, r.URL.Path) {
				slackError(w, http.StatusNotFound, "no_service")
				return "", false
			}
			return r.URL.Path, true
		},
		// A fault without a Body: Slack's codes are text, a JSON string is the closest the
		// kit writes; give a fault a Body ("invalid_payload") for the exact answer.
		ErrorBody: func(status int, _ string) any {
			return strings.ToLower(strings.ReplaceAll(http.StatusText(status), " ", "_"))
		},
		State:  s.state,
		Tables: s.tables,
		Reset:  s.reset,
		Now:    now,
	})
	s.HandleFunc("POST /services/{team}/{bot}/{secret}", s.post)
	return s
}

// slackError answers status with Slack's plain-text error code.
func slackError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, code)
}

// post takes one message: 429 rate_limited with Retry-After over the hook's pace; 400
// invalid_payload when the body is not a JSON object, no_text without text or blocks,
// invalid_blocks when blocks is not a list of at most 50 objects that each have a type; else
// 200 "ok".
func (s *Slack) post(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	_, retryAfter, allowed := s.limits.take(r.URL.Path, s.perSecond, s.opts.Now())
	s.mu.Unlock()
	if !allowed {
		w.Header().Set("Retry-After", strconv.Itoa(ceilSeconds(retryAfter)))
		slackError(w, http.StatusTooManyRequests, "rate_limited")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		slackError(w, http.StatusBadRequest, "invalid_payload")
		return
	}
	var msg struct {
		Text   string            `json:"text"`
		Blocks []json.RawMessage `json:"blocks"`
	}
	if err := json.Unmarshal(body, &msg); err != nil {
		slackError(w, http.StatusBadRequest, "invalid_payload")
		return
	}
	if strings.TrimSpace(msg.Text) == "" && len(msg.Blocks) == 0 {
		slackError(w, http.StatusBadRequest, "no_text")
		return
	}
	if len(msg.Blocks) > slackMaxBlocks {
		slackError(w, http.StatusBadRequest, "invalid_blocks")
		return
	}
	for _, b := range msg.Blocks {
		var block struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(b, &block) != nil || block.Type == "" {
			slackError(w, http.StatusBadRequest, "invalid_blocks")
			return
		}
	}
	var blocks json.RawMessage
	if len(msg.Blocks) > 0 {
		blocks, _ = json.Marshal(msg.Blocks)
	}
	s.mu.Lock()
	s.messages = append(s.messages, SlackMessage{Hook: r.URL.Path, Text: msg.Text, Blocks: blocks, At: s.opts.Now()})
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok")
}

// Messages returns every message accepted, oldest first.
func (s *Slack) Messages() []SlackMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.messages)
}

func (s *Slack) state() any {
	return map[string]any{"messages": s.Messages()}
}

func (s *Slack) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messages = nil
	s.limits = newSlidingWindow(time.Second)
}

func (s *Slack) tables() []PageTable {
	t := PageTable{Title: "Messages", Columns: []string{"at", "hook", "text", "blocks"}}
	msgs := s.Messages()
	for i := len(msgs) - 1; i >= 0; i-- {
		m := msgs[i]
		t.Rows = append(t.Rows, []string{m.At.Format(time.RFC3339), m.Hook, m.Text, strconv.Itoa(blockCount(m.Blocks))})
	}
	return []PageTable{t}
}

func blockCount(raw json.RawMessage) int {
	var blocks []json.RawMessage
	_ = json.Unmarshal(raw, &blocks)
	return len(blocks)
}
