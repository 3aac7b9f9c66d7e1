package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/money"
	"github.com/brokerflow/brokerflow/pkg/webhooksig"
	crmv1 "github.com/brokerflow/brokerflow/proto/brokerflow/crm/v1"
	ledgerv1 "github.com/brokerflow/brokerflow/proto/brokerflow/ledger/v1"
	"github.com/brokerflow/brokerflow/services/brokerflow/internal/app"
	"github.com/brokerflow/brokerflow/services/crm-sync/crmsync"
	"github.com/brokerflow/brokerflow/services/ledger-sync/ledgersync"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

// demoLeads are what a brokerage website sends on a busy morning. Ada
// comes back: her second lead must become an event on her contact.
var demoLeads = []string{
	`{"type":"lead.created","data":{"first_name":"Ada","last_name":"Lovelace","email":"Ada.Lovelace@example.com","phone":"(415) 555-0134","inquiry_type":"buy","message":"Can I see 12 Main St on Saturday?","property":{"address":"12 Main St","city":"Springfield","state":"IL","postal_code":"62701","mls_number":"MLS123","price":850000}}}`,
	`{"type":"lead.created","data":{"name":"Grace Hopper","email":"grace@example.org","inquiry_type":"sell","message":"What is my condo worth?"}}`,
	`{"type":"lead.created","data":{"name":"Alan Turing","phone":"+44 7911 123456","inquiry_type":"rent","property":{"address":"7 Bletchley Rd","mls_number":"MLS777"}}}`,
	`{"type":"lead.created","data":{"first_name":"Ada","last_name":"Lovelace","email":"ada.lovelace@EXAMPLE.com","inquiry_type":"buy","message":"Also interested in 14 Main St.","property":{"address":"14 Main St","mls_number":"MLS124","price":910000}}}`,
	`{"type":"lead.created","data":{"name":"Katherine Johnson","email":"katherine@example.net","phone":"757-555-0199","message":"Please call me about new listings."}}`,
}

func demoCmd(environ []string, stdout io.Writer) *cobra.Command {
	var url, secret, sandboxURL, natsURL string
	nf := natsFlags{user: bus.UserAnalyst}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Send a handful of signed leads to a running brokerflow (run --sandbox) and show where they landed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			client := &http.Client{Timeout: 10 * time.Second}
			run := time.Now().Unix()
			for i, body := range demoLeads {
				id := fmt.Sprintf("msg_demo_%d_%d", run, i+1)
				h, err := webhooksig.SignedHeaders(secret, id, time.Now(), []byte(body))
				if err != nil {
					return fmt.Errorf("sign: %w", err)
				}
				code, answer, err := post(ctx, client, url+"/webhooks/idx", h, body)
				if err != nil {
					return fmt.Errorf("is brokerflow running (make run)? %w", err)
				}
				fmt.Fprintf(stdout, "lead %d (%s): HTTP %d %s\n", i+1, id, code, strings.TrimSpace(answer))
			}
			if sandboxURL == "" {
				return nil
			}
			people, events := waitForCRM(ctx, client, sandboxURL, len(demoLeads))
			fmt.Fprintf(stdout, "\nFollow Up Boss (sandbox) now holds %d people and %d events.\n", people, events)
			fmt.Fprintf(stdout, "On an empty sandbox the demo makes 4 people and 5 events: Ada Lovelace came back, and her second lead is an event on her contact.\n")
			fmt.Fprintf(stdout, "See %s/ (the sandbox page) and %s/_sandbox/fub/state (JSON).\n", sandboxURL, sandboxURL)
			if natsURL == "" {
				return nil
			}
			nf.cfg.URL = natsURL
			nc, js, err := nf.connect(environ)
			if err != nil {
				return fmt.Errorf("demo: watch the bus at %s: %w", natsURL, err)
			}
			defer nc.Close()
			return demoStageChange(ctx, client, sandboxURL, js, stdout)
		},
	}
	cmd.Flags().StringVar(&url, "url", "http://127.0.0.1:8080", "the gateway's base URL")
	cmd.Flags().StringVar(&secret, "secret", app.DevIDXSecret, "the IDX source's Standard Webhooks secret")
	cmd.Flags().StringVar(&sandboxURL, "sandbox-url", "http://127.0.0.1:8099", "the sandbox to read the result from; empty to skip")
	cmd.Flags().StringVar(&natsURL, "server", "nats://127.0.0.1:4222", "NATS, to watch the stage change flow through; empty to skip it")
	cmd.Flags().StringVar(&nf.cfg.NkeyFile, "nkey", "", "nkey seed file (default $BROKERFLOW_NATS_NKEY_FILE, or the analyst seed brokerflow run made)")
	return cmd
}

func post(ctx context.Context, client *http.Client, url string, h http.Header, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header = h
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b), err
}

// waitForCRM polls the sandbox until it holds events for every lead, or
// ten seconds have passed, and returns what it holds.
func waitForCRM(ctx context.Context, client *http.Client, sandboxURL string, leads int) (people, events int) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var state struct {
			People []json.RawMessage `json:"people"`
			Events []json.RawMessage `json:"events"`
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, sandboxURL+"/_sandbox/fub/state", http.NoBody)
		if err == nil {
			if resp, err := client.Do(req); err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&state)
				_ = resp.Body.Close()
			}
		}
		people, events = len(state.People), len(state.Events)
		if events >= leads || time.Now().After(deadline) || ctx.Err() != nil {
			return people, events
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// demoStageChange plays the agent: it moves Ada to "Active Client" in the
// sandbox's Follow Up Boss, whose webhook reaches the gateway, and waits for
// crm-sync to announce the stage change on the bus.
func demoStageChange(ctx context.Context, client *http.Client, sandboxURL string, js jetstream.JetStream, stdout io.Writer) error {
	var state struct {
		People []struct {
			ID     int64  `json:"id"`
			Name   string `json:"name"`
			Stage  string `json:"stage"`
			Emails []struct {
				Value string `json:"value"`
			} `json:"emails"`
		} `json:"people"`
	}
	if err := getJSON(ctx, client, sandboxURL+"/_sandbox/fub/state", &state); err != nil {
		return err
	}
	var id int64
	for _, p := range state.People {
		for _, e := range p.Emails {
			if e.Value == "ada.lovelace@example.com" {
				id = p.ID
			}
		}
	}
	if id == 0 {
		return errors.New("demo: Ada Lovelace is not in the sandbox's Follow Up Boss")
	}
	watch, err := js.OrderedConsumer(ctx, bus.StreamCRM, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{crmsync.SubjectContactStageChanged},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, fmt.Sprintf("%s/fub/v1/people/%d", sandboxURL, id), strings.NewReader(`{"stage":"Active Client"}`))
	if err != nil {
		return err
	}
	req.SetBasicAuth(sandbox.DefaultFUBAPIKey, "")
	req.Header.Set("X-System", sandbox.DefaultFUBSystem)
	req.Header.Set("X-System-Key", sandbox.DefaultFUBSystemKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_ = resp.Body.Close()
	fmt.Fprintf(stdout, "\nThe agent moves Ada Lovelace (contact %d) to \"Active Client\" in Follow Up Boss (HTTP %d).\n", id, resp.StatusCode)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		batch, err := watch.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			var ev crmv1.ContactStageChanged
			if proto.Unmarshal(m.Data(), &ev) == nil && ev.GetContactId() == strconv.FormatInt(id, 10) {
				fmt.Fprintf(stdout, "crm-sync announced %s: %q -> %q, active client: %v.\n",
					m.Subject(), ev.GetOldStage(), ev.GetNewStage(), ev.GetActiveClient())
				return demoLoop(ctx, client, sandboxURL, js, stdout)
			}
		}
	}
	fmt.Fprintf(stdout, "No crm.contact.stage_changed for contact %d within 15 s: see brokerflow failures ls.\n", id)
	return nil
}

// demoLoop waits for the loop tms-sync opens for Ada in the sandbox's
// Dotloop, read from /_sandbox/dotloop/state, and shows it.
func demoLoop(ctx context.Context, client *http.Client, sandboxURL string, js jetstream.JetStream, stdout io.Writer) error {
	type participant struct {
		FullName string `json:"fullName"`
		Email    string `json:"email"`
		Role     string `json:"role"`
		Phone    string `json:"Phone"`
	}
	var state struct {
		Loops []struct {
			ID              int64                        `json:"id"`
			Name            string                       `json:"name"`
			TransactionType string                       `json:"transactionType"`
			Status          string                       `json:"status"`
			Participants    []participant                `json:"participants"`
			Detail          map[string]map[string]string `json:"detail"`
		} `json:"loops"`
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if err := getJSON(ctx, client, sandboxURL+"/_sandbox/dotloop/state", &state); err != nil {
			return err
		}
		for _, l := range state.Loops {
			for _, p := range l.Participants {
				if p.Email != "ada.lovelace@example.com" {
					continue
				}
				a := l.Detail["Property Address"]
				fmt.Fprintf(stdout, "tms-sync opened Dotloop loop %d %q (%s, %s): %s %s %s as %s; property %q.\n",
					l.ID, l.Name, l.TransactionType, l.Status, p.FullName, p.Email, p.Phone, p.Role,
					strings.Join(slices.DeleteFunc([]string{
						strings.TrimSpace(a["Street Number"] + " " + a["Street Name"]), a["City"],
					}, func(s string) bool { return s == "" }), ", "))
				return demoInvoice(ctx, client, sandboxURL, js, l.ID, stdout)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	fmt.Fprintf(stdout, "No Dotloop loop for Ada within 15 s: is tms-sync on (TMSSYNC_TMS=dotloop)? See brokerflow failures ls.\n")
	return nil
}

// demoInvoice plays the agent again: it marks Ada's loop sold with a price
// and a commission in the sandbox's Dotloop (the page's button does the
// same), whose webhook makes tms-sync announce the closing, and waits for
// the invoice ledger-sync books in the sandbox's QuickBooks Online.
func demoInvoice(ctx context.Context, client *http.Client, sandboxURL string, js jetstream.JetStream, loopID int64, stdout io.Writer) error {
	form := "status=SOLD&price=525000&commission=15750&close_date=" + time.Now().Format(time.DateOnly)
	status, err := postForm(ctx, client, fmt.Sprintf("%s/_sandbox/dotloop/loops/%d/status", sandboxURL, loopID), form)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "The agent marks loop %d sold in Dotloop: $525,000, a $15,750 commission (HTTP %d).\n", loopID, status)
	type object map[string]any
	var state struct {
		Realms []struct {
			ID      string              `json:"realmId"`
			Objects map[string][]object `json:"objects"`
		} `json:"realms"`
	}
	name := func(objs []object, id any) string {
		for _, o := range objs {
			if o["Id"] == id {
				if n, ok := o["DisplayName"].(string); ok {
					return n
				}
				return fmt.Sprint(o["Name"])
			}
		}
		return ""
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if err := getJSON(ctx, client, sandboxURL+"/_sandbox/quickbooks/state", &state); err != nil {
			return err
		}
		for _, r := range state.Realms {
			for _, inv := range r.Objects["Invoice"] {
				if !strings.Contains(fmt.Sprint(inv["PrivateMemo"]), fmt.Sprintf("transaction %d ", loopID)) {
					continue
				}
				total, _ := inv["TotalAmt"].(float64)
				customer, _ := inv["CustomerRef"].(map[string]any)
				class, _ := inv["ClassRef"].(map[string]any)
				ship, _ := inv["ShipAddr"].(map[string]any)
				fmt.Fprintf(stdout, "ledger-sync booked QuickBooks Invoice %v (id %v, company %s) to %s for %.2f: agent %s, property %q.\n",
					inv["DocNumber"], inv["Id"], r.ID, name(r.Objects["Customer"], customer["value"]), total,
					name(r.Objects["Class"], class["value"]), ship["Line1"])
				lines, _ := inv["Line"].([]any)
				for _, l := range lines {
					if m, ok := l.(map[string]any); ok && m["DetailType"] == "SalesItemLineDetail" {
						amount, _ := m["Amount"].(float64)
						fmt.Fprintf(stdout, "  %-44v %10.2f\n", m["Description"], amount)
					}
				}
				fmt.Fprintf(stdout, "lead -> contact -> loop -> invoice. See %s/ (the sandbox page) and %s/_sandbox/quickbooks/state.\n", sandboxURL, sandboxURL)
				return demoPayment(ctx, client, sandboxURL, js, r.ID, fmt.Sprint(inv["Id"]), int64(total*100+0.5), stdout)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	fmt.Fprintf(stdout, "No QuickBooks invoice for loop %d within 20 s: is ledger-sync on (LEDGERSYNC_LEDGER=quickbooks)? See brokerflow failures ls.\n", loopID)
	return nil
}

func getJSON(ctx context.Context, client *http.Client, url string, into any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, http.NoBody)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(into)
}

// demoPayment plays the client: half the invoice is paid in the sandbox's
// QuickBooks (the page's button does the same), whose signed webhook
// reaches the gateway, and ledger-sync announces ledger.commission.paid.
func demoPayment(ctx context.Context, client *http.Client, sandboxURL string, js jetstream.JetStream, realm, invoiceID string, totalMinor int64, stdout io.Writer) error {
	watch, err := js.OrderedConsumer(ctx, bus.StreamLedger, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{ledgersync.SubjectPaid},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return err
	}
	half := totalMinor / 2
	form := fmt.Sprintf("amount=%d.%02d", half/100, half%100)
	status, err := postForm(ctx, client, fmt.Sprintf("%s/_sandbox/quickbooks/realms/%s/invoices/%s/payments", sandboxURL, realm, invoiceID), form)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nThe client pays half of invoice %s in QuickBooks: %s (HTTP %d).\n", invoiceID, money.Format(half), status)
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		batch, err := watch.Fetch(1, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return err
		}
		for m := range batch.Messages() {
			var ev ledgerv1.CommissionPaid
			if proto.Unmarshal(m.Data(), &ev) == nil && ev.GetDocumentId() == invoiceID {
				fmt.Fprintf(stdout, "ledger-sync announced %s: payment %s of %s on transaction %s, balance %s, fully paid: %v.\n",
					m.Subject(), ev.GetPaymentId(), money.Format(ev.GetAmount().GetAmountMinor()), ev.GetTransactionId(),
					money.Format(ev.GetBalance().GetAmountMinor()), ev.GetFullyPaid())
				fmt.Fprintf(stdout, "lead -> contact -> loop -> invoice -> paid.\n")
				return nil
			}
		}
	}
	fmt.Fprintf(stdout, "No ledger.commission.paid for invoice %s within 15 s: are QuickBooks' webhooks on (GATEWAY_QUICKBOOKS_VERIFIER_TOKENS)? See brokerflow failures ls.\n", invoiceID)
	return nil
}

// postForm posts form to one of the sandbox's buttons, as its page does,
// and returns the answer's status.
func postForm(ctx context.Context, client *http.Client, url, form string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(form))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
