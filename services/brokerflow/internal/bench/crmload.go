package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// person is one person of a CRM workload: each lead carries an email and a
// phone.
type person struct {
	email, phone string // the phone as the normalizer writes it (E.164)
	returning    bool   // they sent a lead before the measurement
}

// workload is n leads of which 30% come from returning people (each of
// them writes twice during the measurement) and 70% from new ones, mixed
// evenly; seed are the returning people's first leads, sent beforehand.
func workload(n int, tag string, area int) (leads, seed []person) {
	returning := n * 3 / 10
	var back []person
	for i := range returning / 2 {
		p := person{email: fmt.Sprintf("back%05d@%s.example", i, tag), phone: fmt.Sprintf("+1%03d2%06d", area, i), returning: true}
		seed = append(seed, p)
		back = append(back, p, p)
	}
	returning = len(back)
	for i := range n {
		// Every tenth lead is a returning one while they last: 3 of 10.
		if j := i / 10 * 3; i%10 < 3 && j+i%10 < returning {
			leads = append(leads, back[j+i%10])
			continue
		}
		leads = append(leads, person{email: fmt.Sprintf("new%05d@%s.example", i, tag), phone: fmt.Sprintf("+1%03d3%06d", area, i)})
	}
	return leads, seed
}

// body is the IDX webhook of one lead of p.
func (p person) body(i int) string {
	return fmt.Sprintf(`{"type":"lead.created","data":{"name":"Bench Lead%d","email":%q,"phone":%q,"inquiry_type":"buy","message":"Is 12 Main St still available?"}}`, i, p.email, p.phone)
}

// digits keeps the digits of a phone, as a key.
func digits(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// fubCalls attributes the sandbox Follow Up Boss's calls to people: a
// search names an email or a phone, a person's read or update, a note and
// a lookup of events name a person id, and POST /v1/events carries the
// person. It keeps each person's counted calls, the time their calls spent
// in the vendor, and when each of their leads was recorded.
type fubCalls struct {
	fub *sandbox.FUB

	mu       sync.Mutex
	byKey    map[string]string // email or phone digits → email
	byID     map[string]int64  // person id → counted calls, until resolved
	idTime   map[string]time.Duration
	counted  map[string]int
	inVendor map[string]time.Duration
	recorded map[string][]time.Time
	other    int // counted calls that name no person
	first    time.Time
	last     time.Time
	// countedAt is when the sandbox counted each counted call, in order.
	countedAt []time.Time
}

func watchFUB(fub *sandbox.FUB, people []person) *fubCalls {
	c := &fubCalls{
		fub: fub, byKey: map[string]string{}, byID: map[string]int64{}, idTime: map[string]time.Duration{},
		counted: map[string]int{}, inVendor: map[string]time.Duration{}, recorded: map[string][]time.Time{},
	}
	for _, p := range people {
		c.byKey[p.email], c.byKey[digits(p.phone)] = p.email, p.email
	}
	fub.OnCall(c.observe)
	return c
}

func (c *fubCalls) observe(call sandbox.Call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	took := call.End.Sub(call.Start)
	if call.Counted {
		if c.first.IsZero() {
			c.first = call.Start
		}
		c.last = call.End
		c.countedAt = append(c.countedAt, call.CountedAt)
	}
	who, id := "", ""
	switch {
	case call.Method == http.MethodPost && call.Path == "/v1/events":
		var ev struct {
			Person struct {
				Emails []struct {
					Value string `json:"value"`
				} `json:"emails"`
			} `json:"person"`
		}
		if json.Unmarshal(call.Body, &ev) == nil && len(ev.Person.Emails) > 0 {
			who = c.byKey[ev.Person.Emails[0].Value]
		}
		if who != "" {
			c.recorded[who] = append(c.recorded[who], call.End)
		}
	case call.Query.Get("email") != "":
		who = c.byKey[call.Query.Get("email")]
	case call.Query.Get("phone") != "":
		who = c.byKey[digits(call.Query.Get("phone"))]
	case call.Query.Get("personId") != "":
		id = call.Query.Get("personId")
	case strings.HasPrefix(call.Path, "/v1/people/"):
		id = strings.TrimPrefix(call.Path, "/v1/people/")
	case call.Path == "/v1/notes":
		var n struct {
			PersonID json.Number `json:"personId"`
		}
		if json.Unmarshal(call.Body, &n) == nil {
			id = n.PersonID.String()
		}
	}
	switch {
	case who != "":
		c.inVendor[who] += took
		if call.Counted {
			c.counted[who]++
		}
	case id != "":
		c.idTime[id] += took
		if call.Counted {
			c.byID[id]++
		}
	case call.Counted:
		c.other++
	}
}

// resolve attributes the calls that named a person id, now that the
// sandbox knows whose each id is.
func (c *fubCalls) resolve() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.fub.People() {
		id := fmt.Sprint(p.ID)
		for _, e := range p.Emails {
			if who := c.byKey[e.Value]; who != "" {
				c.counted[who] += int(c.byID[id])
				c.inVendor[who] += c.idTime[id]
				delete(c.byID, id)
				delete(c.idTime, id)
				break
			}
		}
	}
	for _, n := range c.byID {
		c.other += int(n)
	}
	clear(c.byID)
}

// recordedCount is how many leads of people have been recorded.
func (c *fubCalls) recordedCount(people []person) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	seen := map[string]bool{}
	for _, p := range people {
		if !seen[p.email] {
			seen[p.email] = true
			n += len(c.recorded[p.email])
		}
	}
	return n
}

// reset forgets what was seen (after the seed leads).
func (c *fubCalls) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.byID)
	clear(c.idTime)
	clear(c.counted)
	clear(c.inVendor)
	clear(c.recorded)
	c.other, c.first, c.last = 0, time.Time{}, time.Time{}
	c.countedAt = nil
}

// send posts each lead to the IDX webhook, 32 at a time, and returns when
// each was posted and how many posts failed.
func send(ctx context.Context, url string, leads []person, tag string) (sent []time.Time, failed int) {
	client := newClient()
	sent = make([]time.Time, len(leads))
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		sem = make(chan struct{}, 32)
	)
	for i, p := range leads {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			sent[i] = time.Now()
			if !postSigned(ctx, client, url, app.DevIDXSecret, fmt.Sprintf("msg_%s_%d", tag, i), p.body(i)) {
				mu.Lock()
				failed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return sent, failed
}

// waitRecorded waits until n leads of people are recorded in the CRM, or
// the timeout passes.
func waitRecorded(ctx context.Context, c *fubCalls, people []person, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for c.recordedCount(people) < n {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d leads recorded in the CRM after %s", c.recordedCount(people), n, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

func newClient() *http.Client { return &http.Client{Timeout: 30 * time.Second} }
