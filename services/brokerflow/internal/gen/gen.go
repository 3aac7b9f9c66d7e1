// Package gen makes a synthetic day of a brokerage's lead activity: leads
// from several sources, returning people, rejected leads, stage changes,
// loops opened for active clients and some of them sold, and spend, as real
// signed requests to the running system, and knows from what it sends what
// the reports must say.
package gen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/brokerflow/brokerflow/pkg/webhooksig"
)

// SourcesFile declares the day's sources, with the presets the system
// ships; Env holds their secrets.
const SourcesFile = `
sources:
  - {name: website, preset: idx}
  - {name: zillow, preset: zillow}
  - {name: realtor, preset: realtor}
`

// Secrets of the day's sources.
const (
	ZillowSecret  = "zillow-shared-secret-gen"
	RealtorAPIKey = "realtor-api-key-gen"
)

// Env returns the settings that give the day's sources their secrets;
// websiteSecret signs the website (Standard Webhooks).
func Env(websiteSecret string) []string {
	return []string{
		"SOURCE_WEBSITE_SECRETS=" + websiteSecret,
		"SOURCE_ZILLOW_SECRETS=" + ZillowSecret,
		"SOURCE_REALTOR_SECRETS=" + RealtorAPIKey,
	}
}

// Lead is one lead the day sends.
type Lead struct {
	Source string
	// Person is who sends it; a person sending again is a returning one.
	Person int
	// Reject: the lead has neither an email nor a phone.
	Reject bool
	// Slow: the CRM answers its first attempt with a 500, so that it
	// reaches the CRM only after crm-sync's first retry delay.
	Slow bool
	// DeliveryID is the webhook id (website) or the vendor's lead id (realtor).
	DeliveryID string
}

// Plan is a day: the leads in the order they are sent, who becomes an
// active client (and so gets a loop in the TMS), whose loop is sold, who is
// moved to another stage, and each source's spend.
type Plan struct {
	Month   string
	Leads   []Lead
	Active  []int
	Nurture []int
	// Closings are the active clients whose loop is marked sold.
	Closings []Closing
	// Spend in minor units, per source.
	Spend map[string]int64
}

// Closing is an active client's loop sold, with its price and the gross
// commission in whole dollars, as the sandbox Dotloop's sold button takes them.
type Closing struct {
	Person            int
	Price, Commission int64
}

// Day is the synthetic day: 22 people across three sources, four of them
// coming back through another source, three leads rejected, three slow
// website leads, four active clients (four loops, three of them sold) and
// two nurtured contacts.
func Day(month, run string) Plan {
	p := Plan{Month: month, Spend: map[string]int64{"website": 30000, "zillow": 120000, "realtor": 45000}}
	add := func(source string, person int, reject, slow bool) {
		p.Leads = append(p.Leads, Lead{Source: source, Person: person, Reject: reject, Slow: slow,
			DeliveryID: fmt.Sprintf("gen_%s_%s_%d", run, source, len(p.Leads))})
	}
	for i := range 10 { // website: 7, 8 and 9 are slow
		add("website", i, false, i >= 7)
	}
	for i := 10; i < 18; i++ {
		add("zillow", i, false, false)
	}
	for i := 18; i < 22; i++ {
		add("realtor", i, false, false)
	}
	// Returning people, each through another source than their first.
	add("zillow", 0, false, false)
	add("website", 10, false, false)
	add("zillow", 18, false, false)
	add("realtor", 3, false, false)
	// Leads that cannot be used.
	add("website", 100, true, false)
	add("website", 101, true, false)
	add("zillow", 102, true, false)
	p.Active = []int{0, 1, 10, 18}
	p.Nurture = []int{2, 11}
	// Three of the four active clients' loops are sold; person 1's stays open.
	p.Closings = []Closing{{0, 525000, 15750}, {10, 410000, 12300}, {18, 298000, 8940}}
	return p
}

// Email is person i's email.
func Email(i int) string { return fmt.Sprintf("person%03d@day.example", i) }

// Counts are what the reports must say of one source, crediting each
// contact to its first lead's source.
type Counts struct {
	Leads, Rejected, Contacts, ActiveClients int
	// Synced are the leads that reached a contact (the speed-to-lead n).
	Synced int
	// Slow are the leads that could only reach the CRM after a retry.
	Slow int
	// Transactions are the loops opened (one per active client), Closings
	// those sold, GrossMinor their gross commission in minor units.
	Transactions, Closings int
	GrossMinor             int64
	SpendMinor             int64
	// NetMinor is the brokerage's net of the closings as the ledger booked
	// them. The plan does not split commissions, so Truth leaves it 0 and
	// whoever reads the bookings (ledger.commission.booked) fills it in.
	NetMinor int64
}

// FirstSource is the source of person's first usable lead: the source a
// contact, and its closing, are credited to.
func (p Plan) FirstSource(person int) string {
	for _, l := range p.Leads {
		if l.Person == person && !l.Reject {
			return l.Source
		}
	}
	return ""
}

// Truth is what the day must yield per source.
func (p Plan) Truth() map[string]*Counts {
	out := map[string]*Counts{}
	first := map[int]string{}
	for _, l := range p.Leads {
		c := out[l.Source]
		if c == nil {
			c = &Counts{}
			out[l.Source] = c
		}
		c.Leads++
		if l.Reject {
			c.Rejected++
			continue
		}
		c.Synced++
		if l.Slow {
			c.Slow++
		}
		if _, ok := first[l.Person]; !ok {
			first[l.Person] = l.Source
			c.Contacts++
		}
	}
	for _, i := range p.Active {
		out[first[i]].ActiveClients++
		out[first[i]].Transactions++
	}
	for _, c := range p.Closings {
		out[first[c.Person]].Closings++
		out[first[c.Person]].GrossMinor += c.Commission * 100
	}
	for s, v := range p.Spend {
		out[s].SpendMinor = v
	}
	return out
}

// Request is the signed HTTP request of lead l to the gateway at baseURL,
// as its source sends it; websiteSecret signs the website's.
func Request(ctx context.Context, baseURL, websiteSecret string, l Lead) (*http.Request, error) {
	name := fmt.Sprintf("Person%03d Day", l.Person)
	email, phone := Email(l.Person), fmt.Sprintf("+1415555%04d", l.Person)
	if l.Reject {
		email, phone = "", ""
	}
	var body, contentType string
	h := http.Header{}
	switch l.Source {
	case "website":
		body = fmt.Sprintf(`{"type":"lead.created","data":{"name":%q,"email":%q,"phone":%q,"inquiry_type":"buy"}}`, name, email, phone)
		sig, err := webhooksig.SignedHeaders(websiteSecret, l.DeliveryID, time.Now(), []byte(body))
		if err != nil {
			return nil, err
		}
		h, contentType = sig, "application/json"
	case "zillow":
		v := url.Values{"name": {name}, "listingId": {"ZL-" + l.DeliveryID}, "message": {"Is it still available?"}}
		if email != "" {
			v.Set("email", email)
			v.Set("phone", phone)
		}
		body, contentType = v.Encode(), "application/x-www-form-urlencoded"
		h.Set("X-Brokerflow-Secret", ZillowSecret)
	case "realtor":
		body = fmt.Sprintf(`{"lead_id":%q,"role":"buyer","contact":{"first_name":"Person%03d","last_name":"Day","email":%q,"phone":%q},"message":"Tour?"}`,
			l.DeliveryID, l.Person, email, phone)
		contentType = "application/json"
		h.Set("X-Api-Key", RealtorAPIKey)
	default:
		return nil, fmt.Errorf("gen: no source %q", l.Source)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/webhooks/"+l.Source, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header = h
	req.Header.Set("Content-Type", contentType)
	return req, nil
}

// Post sends lead l and fails unless the gateway accepts it.
func Post(ctx context.Context, client *http.Client, baseURL, websiteSecret string, l Lead) error {
	req, err := Request(ctx, baseURL, websiteSecret, l)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("gen: %s lead %s: HTTP %d %s", l.Source, l.DeliveryID, resp.StatusCode, b)
	}
	return nil
}

// SpendCSV is the day's spend as a file for brokerflow spend set --file.
func (p Plan) SpendCSV() string {
	var b strings.Builder
	b.WriteString("source,month,amount\n")
	sources := make([]string, 0, len(p.Spend))
	for s := range p.Spend {
		sources = append(sources, s)
	}
	slices.Sort(sources)
	for _, s := range sources {
		fmt.Fprintf(&b, "%s,%s,%d.%02d\n", s, p.Month, p.Spend[s]/100, p.Spend[s]%100)
	}
	return b.String()
}
