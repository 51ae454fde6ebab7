package billing_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
)

// TestExports renders a period's exports the way the close streams them (row by row) and
// checks what a reader of the files relies on: every JSON file is exactly what
// json.MarshalIndent(rows, "", "  ") writes for the whole array, every CSV parses with its
// header, rows come by issuer then number, and an empty period gives "[]" and headers only.
func TestExports(t *testing.T) {
	p, _ := period.Parse("2026-03")
	at := time.Date(2026, 4, 1, 0, 5, 0, 123, time.UTC)
	inv := func(id, issuer, number, tenant, total string, lines ...billing.InvoiceLine) *billing.Invoice {
		return &billing.Invoice{ID: id, Number: number, TenantID: tenant, IssuerID: issuer, Period: "2026-03", Status: billing.InvoiceIssued,
			Currency: "EUR", IssuedAt: at, Total: money.Money{Amount: dec(t, total), Currency: "EUR"}, Lines: lines,
			PlatformRevenue: dec(t, total), Shares: []billing.EntityShare{{EntityID: issuer, EntityPath: "/platform/" + issuer + "/",
				Revenue: dec(t, total), Cost: dec(t, total), Commission: money.Zero}}}
	}
	op := "2026-02"
	invs := []*billing.Invoice{
		inv("inv_b", "prt_2", "P2-2026-000001", "tnt_3", "10.00", billing.InvoiceLine{Kind: billing.KindSeats, SubscriptionID: "sub_3",
			Description: `pro <"fast"> & co`, Quantity: dec(t, "1"), Amount: money.Money{Amount: dec(t, "10.00"), Currency: "EUR"}}),
		inv("inv_c", "prt_1", "P1-2026-000002", "tnt_2", "2.50", billing.InvoiceLine{Kind: billing.KindAdjustment, SubscriptionID: "sub_2",
			SKU: "gb", Quantity: dec(t, "50"), Amount: money.Money{Amount: dec(t, "2.50"), Currency: "EUR"}, OriginalPeriod: &op}),
		inv("inv_a", "prt_1", "P1-2026-000001", "tnt_1", "0.00"),
	}
	totals, lines := billing.Commissions(p, invs)
	if len(totals) != 2 || totals[0].PeriodInvoices != 3 || totals[0].Tenants != 2 || totals[1].Tenants != 1 {
		t.Fatalf("totals %+v", totals)
	}
	files, err := billing.Exports(p, invs, lines)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, f := range files {
		keys = append(keys, f.Key)
	}
	if strings.Join(keys, " ") != "exports/2026-03/invoices.csv exports/2026-03/invoices.json exports/2026-03/invoice_lines.csv "+
		"exports/2026-03/invoice_lines.json exports/2026-03/commissions.csv exports/2026-03/commissions.json" {
		t.Fatalf("keys %v", keys)
	}
	for _, f := range files {
		if strings.HasSuffix(f.Key, ".json") {
			var compact, canon bytes.Buffer
			if err := json.Compact(&compact, f.Body); err != nil {
				t.Fatalf("%s is not JSON: %v\n%s", f.Key, err, f.Body)
			}
			if err := json.Indent(&canon, compact.Bytes(), "", "  "); err != nil {
				t.Fatal(err)
			}
			canon.WriteByte('\n')
			if !bytes.Equal(canon.Bytes(), f.Body) {
				t.Errorf("%s is not json.MarshalIndent's output:\n%s\n---\n%s", f.Key, f.Body, canon.Bytes())
			}
			continue
		}
		rows, err := csv.NewReader(bytes.NewReader(f.Body)).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", f.Key, err)
		}
		want := map[string]int{"invoices.csv": 4, "invoice_lines.csv": 3, "commissions.csv": 4}[f.Key[len("exports/2026-03/"):]]
		if len(rows) != want {
			t.Errorf("%s: %d rows, want %d", f.Key, len(rows), want)
		}
		if f.Key == "exports/2026-03/invoices.csv" {
			var order []string
			for _, r := range rows[1:] {
				order = append(order, r[0])
			}
			if strings.Join(order, " ") != "inv_a inv_c inv_b" {
				t.Errorf("invoice order %v, want by issuer then number", order)
			}
		}
	}
	if !bytes.Contains(files[3].Body, []byte(`"originalPeriod": "2026-02"`)) || !bytes.Contains(files[3].Body, []byte(`\u003c\"fast\"\u003e \u0026 co`)) {
		t.Errorf("invoice lines JSON:\n%s", files[3].Body)
	}

	t.Run("Empty", func(t *testing.T) {
		files, err := billing.Exports(p, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f.Key, ".json") && string(f.Body) != "[]\n" {
				t.Errorf("%s: %q", f.Key, f.Body)
			}
			if strings.HasSuffix(f.Key, ".csv") && bytes.Count(f.Body, []byte("\n")) != 1 {
				t.Errorf("%s: %q", f.Key, f.Body)
			}
		}
	})
}
