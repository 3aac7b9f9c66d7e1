package skyslope_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/brokerflow/brokerflow/pkg/bus"
	"github.com/brokerflow/brokerflow/pkg/natstest"
	"github.com/brokerflow/brokerflow/pkg/tms"
	"github.com/brokerflow/brokerflow/pkg/tms/skyslope"
	"github.com/brokerflow/brokerflow/pkg/tms/tmstest"
	"github.com/brokerflow/brokerflow/services/sandbox/sandbox"
)

func TestSkySlope_contract(t *testing.T) {
	t.Parallel()
	tmstest.Run(t, func(t *testing.T) (tms.TMS, tmstest.Backend) {
		a, be := tmstest.SkySlope(t)
		return a, be
	})
}

// TestSkySlope_openSendsTheFile: the Forms file has the representation type
// and the property; the sale it became is read through the Files API, with
// its price once closed and never a commission.
func TestSkySlope_openSendsTheFile(t *testing.T) {
	t.Parallel()
	a, be := tmstest.SkySlope(t)
	ctx := natstest.Context(t, 30*time.Second)
	tx, err := a.Open(ctx, tmstest.OpenRequest(""))
	if err != nil {
		t.Fatal(err)
	}
	f := be.S.Files()[0]
	if f.RepresentationType != "Buyer" || f.Name != "Ada Lovelace" || f.Property.StreetNumber != "12" || f.Property.StreetName != "Main St" ||
		f.Property.City != "Springfield" || f.Property.State != "IL" || f.Property.PostalCode != "62701" || tx.ID != "477309" {
		t.Fatalf("file = %+v, transaction %+v", f, tx)
	}
	sale, _ := be.S.SaleOfFile(f.FileID)
	if err := be.S.CloseSale(sale.SaleGUID, sandbox.SkySlopeClosing{Price: 525000, Commission: 15750, CloseDate: "2026-12-01"}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{tx.ID, sale.SaleGUID} {
		d, err := a.Details(ctx, "", id)
		if err != nil || d.Field(skyslope.SectionSale, skyslope.FieldSalePrice) != "525000.00" || d.Field(skyslope.SectionSale, skyslope.FieldStatus) != skyslope.StatusClosed ||
			d.Field(skyslope.SectionSale, skyslope.FieldCloseDate) != "2026-12-01" {
			t.Fatalf("Details(%s) = %v, %v", id, d, err)
		}
		for sec, fields := range d {
			for k := range fields {
				if k == "Commission" || sec == "Commission" {
					t.Fatalf("Details carry a commission: %v", d)
				}
			}
		}
	}
	sales, err := a.Sales(ctx, time.Now().Add(-time.Minute))
	if err != nil || len(sales) != 1 || sales[0].Change().Transaction.ID != tx.ID || sales[0].Status != skyslope.StatusClosed || !strings.Contains(string(sales[0].Raw), `"saleGuid"`) {
		t.Fatalf("Sales = %+v, %v", sales, err)
	}
	if _, err := a.Details(ctx, "", "999"); !errors.Is(err, tms.ErrNotFound) {
		t.Fatalf("Details of an unknown file: %v", err)
	}
}

// TestSkySlope_incompletePropertyIsPermanent: a property without what the
// Forms API requires fails before any call, permanently, saying what.
func TestSkySlope_incompletePropertyIsPermanent(t *testing.T) {
	t.Parallel()
	a, be := tmstest.SkySlope(t)
	o := tmstest.OpenRequest("")
	o.Property = &tms.Property{StreetName: "Main St", City: "Springfield", State: "IL"}
	_, err := a.Open(natstest.Context(t, 10*time.Second), o)
	if !errors.Is(err, skyslope.ErrIncomplete) || bus.DefaultPolicy().Classify(err) != bus.Permanent || be.Transactions(t) != 0 {
		t.Fatalf("Open = %v (class %v), %d files", err, bus.DefaultPolicy().Classify(err), be.Transactions(t))
	}
}

// TestSkySlope_sessionRenewedAfterExpiry: an expired Files API session is
// replaced by a new login.
func TestSkySlope_sessionRenewedAfterExpiry(t *testing.T) {
	t.Parallel()
	a, be := tmstest.SkySlope(t)
	ctx := natstest.Context(t, 30*time.Second)
	if _, err := a.Sales(ctx, time.Time{}); err != nil {
		t.Fatal(err)
	}
	be.S.ExpireSessions()
	if _, err := a.Sales(ctx, time.Time{}); err != nil {
		t.Fatalf("after the session expired: %v", err)
	}
	if _, _, logins := be.S.TokenCounts(); logins != 2 {
		t.Fatalf("%d logins, want 2", logins)
	}
}

// FuzzParseSale: a sale from the Files API (or a stored one) parses or is
// refused with ErrBadSale; one that parses has its GUID and status, and its
// change names a transaction.
func FuzzParseSale(f *testing.F) {
	f.Add([]byte(`{"saleGuid":"5a1e0000-0000-4000-8000-000000000001","fileId":477309,"status":"Closed","salePrice":525000,"actualClosingDate":"2026-12-01","modifiedOn":"2026-11-29T10:00:00Z"}`))
	f.Add([]byte(`{"saleGuid":"x","status":"Pending","salePrice":null,"property":{"streetNumber":"1"}}`))
	f.Add([]byte(`{"saleGuid":"","status":"Closed"}`))
	f.Add([]byte(`{"saleGuid":"g","status":"Closed","salePrice":-1e308,"fileId":-3}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		x, err := skyslope.ParseSale(body)
		if err != nil {
			if !errors.Is(err, skyslope.ErrBadSale) {
				t.Fatalf("error %v is not ErrBadSale", err)
			}
			return
		}
		c := x.Change()
		if x.SaleGUID == "" || x.Status == "" || c.Transaction.ID == "" || c.Details.Field(skyslope.SectionSale, skyslope.FieldSaleGUID) != x.SaleGUID {
			t.Fatalf("parsed %+v into %+v", x, c)
		}
	})
}

// TestFileBody_matchesTheReference: the body the adapter sends for the
// reference's file has the reference's fields and values (the county aside:
// leads carry none).
func TestFileBody_matchesTheReference(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../../services/sandbox/sandbox/testdata/skyslope/create_file_request.json")
	if err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	if err := json.Unmarshal(raw, &want); err != nil {
		t.Fatal(err)
	}
	body, err := skyslope.FileBody(tms.Open{Name: "Brian Erwin", Type: tms.TypePurchase, Property: &tms.Property{
		StreetNumber: "2100", StreetName: "Waterview Dr", Unit: "12", City: "San Francisco", State: "CA", PostalCode: "94114",
	}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(body)
	var got map[string]any
	_ = json.Unmarshal(b, &got)
	delete(want["property"].(map[string]any), "county")
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("body %s\nwant %s", b, raw)
	}
}
