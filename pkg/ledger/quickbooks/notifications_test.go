package quickbooks_test

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/ledger"
	"github.com/brokerflow/brokerflow/pkg/ledger/quickbooks"
)

func TestParseNotifications(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 9, 8, 20, 52, 31, 657e6, time.UTC)
	for _, tt := range []struct {
		name string
		body string
		want []ledger.Change
	}{
		{
			// Intuit's documented legacy example.
			name: "legacy",
			body: `{"eventNotifications":[{"realmId":"310687","dataChangeEvent":{"entities":[{"id":"1234","operation":"Create","name":"Account","lastUpdated":"2025-09-08T20:52:31.657Z"}]}}]}`,
			want: []ledger.Change{{Company: "310687", Entity: "Account", ID: "1234", Operation: "Create", At: at}},
		},
		{
			// Intuit's documented CloudEvents example.
			name: "cloudevents",
			body: `[{"specversion":"1.0","id":"evt-1","source":"intuit.abc","type":"qbo.account.created.v1","datacontenttype":"application/json","time":"2025-09-08T20:52:31.657Z","intuitentityid":"1234","intuitaccountid":"310687","data":{}}]`,
			want: []ledger.Change{{Company: "310687", Entity: "Account", ID: "1234", Operation: "Create", At: at, EventID: "evt-1"}},
		},
		{
			name: "legacy_batched_companies_and_entities",
			body: `{"eventNotifications":[
				{"realmId":"1","dataChangeEvent":{"entities":[{"id":"7","operation":"Create","name":"Payment"},{"id":8,"operation":"Update","name":"Invoice"}]}},
				{"realmId":"2","dataChangeEvent":{"entities":[{"id":"9","operation":"Void","name":"SalesReceipt"}]}}]}`,
			want: []ledger.Change{
				{Company: "1", Entity: "Payment", ID: "7", Operation: "Create"},
				{Company: "1", Entity: "Invoice", ID: "8", Operation: "Update"},
				{Company: "2", Entity: "SalesReceipt", ID: "9", Operation: "Void"},
			},
		},
		{
			name: "cloudevents_batched",
			body: `[{"specversion":"1.0","id":"a","type":"qbo.payment.created.v1","intuitentityid":"7","intuitaccountid":"1"},
				{"specversion":"1.0","id":"b","type":"qbo.salesreceipt.updated.v1","intuitentityid":"9","intuitaccountid":"1"},
				{"specversion":"1.0","id":"c","type":"qbo.newthing.emailed.v2","intuitentityid":"3","intuitaccountid":"1"}]`,
			want: []ledger.Change{
				{Company: "1", Entity: "Payment", ID: "7", Operation: "Create", EventID: "a"},
				{Company: "1", Entity: "SalesReceipt", ID: "9", Operation: "Update", EventID: "b"},
				{Company: "1", Entity: "newthing", ID: "3", Operation: "Emailed", EventID: "c"},
			},
		},
		{name: "legacy_empty", body: `{"eventNotifications":[]}`, want: nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := quickbooks.ParseNotifications([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseNotifications_refusesWhatIsNotANotification(t *testing.T) {
	t.Parallel()
	for name, body := range map[string]string{
		"empty":            ``,
		"string":           `"hello"`,
		"no_notifications": `{"foo":1}`,
		"no_realm":         `{"eventNotifications":[{"dataChangeEvent":{"entities":[{"id":"1","operation":"Create","name":"Payment"}]}}]}`,
		"no_id":            `{"eventNotifications":[{"realmId":"1","dataChangeEvent":{"entities":[{"operation":"Create","name":"Payment"}]}}]}`,
		"bad_time":         `{"eventNotifications":[{"realmId":"1","dataChangeEvent":{"entities":[{"id":"1","operation":"Create","name":"Payment","lastUpdated":"yesterday"}]}}]}`,
		"spec_version":     `[{"specversion":"0.3","id":"a","type":"qbo.payment.created.v1","intuitentityid":"7","intuitaccountid":"1"}]`,
		"type":             `[{"specversion":"1.0","id":"a","type":"com.example.payment","intuitentityid":"7","intuitaccountid":"1"}]`,
		"verb":             `[{"specversion":"1.0","id":"a","type":"qbo.payment.exploded.v1","intuitentityid":"7","intuitaccountid":"1"}]`,
		"no_account":       `[{"specversion":"1.0","id":"a","type":"qbo.payment.created.v1","intuitentityid":"7"}]`,
		"truncated":        `[{"specversion":"1.0"`,
	} {
		t.Run(name, func(t *testing.T) {
			if got, err := quickbooks.ParseNotifications([]byte(body)); !errors.Is(err, quickbooks.ErrNotification) {
				t.Fatalf("ParseNotifications = %+v, %v; want ErrNotification", got, err)
			}
		})
	}
}

func FuzzParseNotifications(f *testing.F) {
	f.Add([]byte(`{"eventNotifications":[{"realmId":"1","dataChangeEvent":{"entities":[{"id":"7","operation":"Create","name":"Payment"}]}}]}`))
	f.Add([]byte(`[{"specversion":"1.0","id":"a","type":"qbo.payment.created.v1","intuitentityid":"7","intuitaccountid":"1"}]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := quickbooks.ParseNotifications(body)
		if err != nil {
			if !errors.Is(err, quickbooks.ErrNotification) {
				t.Fatalf("error %v does not wrap ErrNotification", err)
			}
			return
		}
		for _, c := range got {
			if c.Company == "" || c.Entity == "" || c.ID == "" {
				t.Fatalf("an incomplete change was returned: %+v", c)
			}
		}
	})
}
