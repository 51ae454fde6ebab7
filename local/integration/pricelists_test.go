package integration_test

import (
	"strings"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/money"
)

type priceItem struct {
	EntityID      string   `json:"entityId"`
	EntityType    string   `json:"entityType"`
	Period        string   `json:"period"`
	SKUID         string   `json:"skuId"`
	Code          string   `json:"code"`
	Currency      string   `json:"currency"`
	EffectiveFrom string   `json:"effectiveFrom"`
	Markup        string   `json:"markup"`
	Buy           *rateOut `json:"buy"`
	Sell          rateOut  `json:"sell"`
	Overridden    bool     `json:"overridden"`
	OverrideFrom  string   `json:"overrideFrom"`
}

// prices reads the price list of entity for one SKU code in a period ("" for the default).
func prices(tb testing.TB, c client, entityID, code, per string) priceItem {
	tb.Helper()
	path := "/api/v1/pricelists/" + entityID + "?search=" + code
	if per != "" {
		path += "&period=" + per
	}
	var items []priceItem
	c.must(200, "GET", path, nil, &items)
	if len(items) != 1 || items[0].Code != code {
		tb.Fatalf("price list of %s for %s: %+v", entityID, code, items)
	}
	return items[0]
}

// tiers writes a rate's tier unit prices as exact values without trailing zeros: "0.132/0.1056/0.066".
func tiers(tb testing.TB, r *rateOut) string {
	tb.Helper()
	if r == nil {
		return "<none>"
	}
	var out []string
	for _, t := range r.Tiers {
		d, err := money.Parse(t.UnitPrice)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, d.Reduce().String())
	}
	return strings.Join(out, "/")
}

// sellTiers is tiers of an item's sell rate.
func sellTiers(tb testing.TB, it priceItem) string { return tiers(tb, &it.Sell) }

// TestPriceListWorkedExample reproduces the SPEC 15 chain: D 10 %, P 20 %, storage-gb graduated.
// It runs on the clocked server: "this period" and "the next" are the server's.
func TestPriceListWorkedExample(t *testing.T) {
	api := clockedServer(t)
	now := api.freeze(t)
	a := api.on(admin(t))
	d := create(t, a, "distributors", map[string]any{"name": "D", "markups": []map[string]any{{"markup": "10.0", "startDate": "2026-01-01"}}})
	p := create(t, a, "partners", map[string]any{"name": "P", "parent": parent("distributor", d.ID),
		"markups": []map[string]any{{"markup": "20", "startDate": "2026-01-01"}}})
	tn := create(t, a, "tenants", map[string]any{"name": "T", "parent": parent("partner", p.ID)})
	code := uniq("storage-gb")
	k := mkSKU(t, a, storageSKU(code))

	t.Run("Chain", func(t *testing.T) {
		for _, tc := range []struct {
			name, entity, typ, markup, buy, sell string
		}{
			{"Platform", "platform", "platform", "", "<none>", "0.1/0.08/0.05"},
			{"Distributor", d.ID, "distributor", "10.0", "0.1/0.08/0.05", "0.11/0.088/0.055"},
			{"Partner", p.ID, "partner", "20", "0.11/0.088/0.055", "0.132/0.1056/0.066"},
			{"Tenant", tn.ID, "tenant", "", "0.132/0.1056/0.066", "0.132/0.1056/0.066"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				it := prices(t, a, tc.entity, code, "")
				if it.EntityType != tc.typ || it.Markup != tc.markup || it.Period != periodAt(now, 0) || it.EffectiveFrom != monthAt(now, 0) {
					t.Fatalf("%+v", it)
				}
				if got := tiers(t, it.Buy); got != tc.buy {
					t.Errorf("buy %s, want %s", got, tc.buy)
				}
				if got := tiers(t, &it.Sell); got != tc.sell {
					t.Errorf("sell %s, want %s", got, tc.sell)
				}
				if it.Sell.IncludedQuantity != "50" || it.Overridden {
					t.Errorf("included %s overridden %v", it.Sell.IncludedQuantity, it.Overridden)
				}
			})
		}
	})
	t.Run("MarkupChangeNextPeriod", func(t *testing.T) {
		a.must(201, "POST", "/api/v1/partners/"+p.ID+"/markups", map[string]any{"markup": "25", "startDate": monthAt(now, 1)}, nil)
		if got := sellTiers(t, prices(t, a, tn.ID, code, periodAt(now, 0))); got != "0.132/0.1056/0.066" {
			t.Fatalf("this period keeps 20 %%: %s", got)
		}
		if got := sellTiers(t, prices(t, a, tn.ID, code, periodAt(now, 1))); got != "0.1375/0.11/0.06875" {
			t.Fatalf("next period at 25 %%: %s", got)
		}
	})
	t.Run("Override", func(t *testing.T) {
		_, partnerAdmin := mkUser(t, a, "partner_admin", p.ID)
		partnerAdmin = api.on(partnerAdmin)
		var o struct {
			TenantID string `json:"tenantId"`
			Versions []struct {
				EffectiveFrom string   `json:"effectiveFrom"`
				Rate          *rateOut `json:"rate"`
				CreatedBy     string   `json:"createdBy"`
			} `json:"versions"`
		}
		partnerAdmin.must(200, "PUT", "/api/v1/pricelists/"+tn.ID+"/"+k.ID, map[string]any{"model": "per_unit", "unitPrice": 0.07}, &o)
		if len(o.Versions) != 1 || o.Versions[0].EffectiveFrom != monthAt(now, 1) || *o.Versions[0].Rate.UnitPrice != "0.07" {
			t.Fatalf("override defaults to the next period: %+v", o)
		}
		if it := prices(t, a, tn.ID, code, ""); it.Overridden {
			t.Fatal("this period has no override yet")
		}
		next := prices(t, partnerAdmin, tn.ID, code, periodAt(now, 1))
		if !next.Overridden || next.Sell.Model != "per_unit" || *next.Sell.UnitPrice != "0.07" || next.OverrideFrom != monthAt(now, 1) ||
			tiers(t, next.Buy) != "0.1375/0.11/0.06875" {
			t.Fatalf("next period: %+v", next)
		}
		// The partner's own price list is unchanged by its tenant's override.
		if got := sellTiers(t, prices(t, a, p.ID, code, periodAt(now, 1))); got != "0.1375/0.11/0.06875" {
			t.Fatalf("partner sell %s", got)
		}
		// End it from the period after next: next period keeps it.
		partnerAdmin.must(200, "DELETE", "/api/v1/pricelists/"+tn.ID+"/"+k.ID+"?effectiveFrom="+monthAt(now, 2), nil, &o)
		if !prices(t, a, tn.ID, code, periodAt(now, 1)).Overridden || prices(t, a, tn.ID, code, periodAt(now, 2)).Overridden {
			t.Fatal("the override must run for exactly one period")
		}
		if env := partnerAdmin.do("DELETE", "/api/v1/pricelists/"+tn.ID+"/"+k.ID+"?effectiveFrom=2020-01-01", nil); env.status != 400 || !env.hasError("in_past", "effectiveFrom") {
			t.Fatalf("ending in the past: %s", env.raw)
		}
		other := mkSKU(t, a, map[string]any{"code": uniq("x"), "name": "X", "model": "per_unit", "unitPrice": 1})
		if env := partnerAdmin.do("DELETE", "/api/v1/pricelists/"+tn.ID+"/"+other.ID, nil); env.status != 404 {
			t.Fatalf("no override to end: %s", env.raw)
		}
		env := partnerAdmin.do("PUT", "/api/v1/pricelists/"+tn.ID+"/"+k.ID, map[string]any{"model": "graduated",
			"tiers": []map[string]any{{"upTo": 10, "unitPrice": 1}}})
		if env.status != 400 || !env.hasError("invalid", "tiers[0].upTo") {
			t.Fatalf("an override is validated like a SKU rate: %s", env.raw)
		}
		if env := a.do("PUT", "/api/v1/pricelists/"+p.ID+"/"+k.ID, map[string]any{"model": "per_unit", "unitPrice": 1}); env.status != 422 || !env.hasError("not_a_tenant", "") {
			t.Fatalf("override of a partner: %s", env.raw)
		}
	})
	t.Run("Scoping", func(t *testing.T) {
		_, partnerViewer := mkUser(t, a, "partner_viewer", p.ID)
		partnerViewer = api.on(partnerViewer)
		if env := partnerViewer.do("GET", "/api/v1/pricelists/"+d.ID, nil); env.status != 404 {
			t.Fatalf("an ancestor's price list: %s", env.raw)
		}
		if env := partnerViewer.do("GET", "/api/v1/pricelists/"+p.ID+"?period=2026-13", nil); env.status != 400 || !env.hasError("invalid", "period") {
			t.Fatalf("bad period: %s", env.raw)
		}
	})
	t.Run("PagesKeepThePeriod", func(t *testing.T) {
		prefix := uniq("page")
		for i := 0; i < 3; i++ {
			mkSKU(t, a, map[string]any{"code": prefix + "-" + string(rune('a'+i)), "name": "Page", "model": "per_unit", "unitPrice": 1})
		}
		var items []priceItem
		env := a.must(200, "GET", "/api/v1/pricelists/"+tn.ID+"?page_size=2&period="+periodAt(now, 1)+"&search="+prefix, nil, &items)
		if len(items) != 2 || env.Page == nil || env.Page.Next == "" {
			t.Fatalf("first page %+v %+v", items, env.Page)
		}
		env = a.must(200, "GET", "/api/v1/pricelists/"+tn.ID+"?next="+env.Page.Next, nil, &items)
		if len(items) != 1 || items[0].Period != periodAt(now, 1) || items[0].Code != prefix+"-c" || env.Page.Next != "" {
			t.Fatalf("second page %+v", items)
		}
	})
}

// TestChangesDatedOnTheRunningPeriod pins the edge of SPEC 8.3's rule, kept to the letter, over
// HTTP: on the clocked server in mid-November 2026, a SKU rate, a markup and a tenant override
// dated 2026-11-01 (the running period's first day) are accepted and reprice November at once;
// dated 2026-10-31 they are refused (in_past: October may be invoiced); dated 2026-11-18 they
// wait for December, the first period starting on or after that date.
func TestChangesDatedOnTheRunningPeriod(t *testing.T) {
	api := clockedServer(t)
	api.setNow(t, time.Date(2026, 11, 18, 10, 0, 0, 0, time.UTC))
	a := api.on(admin(t))
	d := create(t, a, "distributors", map[string]any{"name": "Edge D"})
	p := create(t, a, "partners", map[string]any{"name": "Edge P", "parent": parent("distributor", d.ID)})
	tn := create(t, a, "tenants", map[string]any{"name": "Edge T", "parent": parent("partner", p.ID)})
	code := uniq("edge")
	k := mkSKU(t, a, map[string]any{"code": code, "name": "Edge", "model": "per_unit", "unitPrice": "1.00"})
	if k.EffectiveFrom != "2026-11-01" {
		t.Fatalf("a new SKU is priced from the running period: %s", k.EffectiveFrom)
	}
	// reduced writes a unit price without trailing zeros.
	reduced := func(t *testing.T, price *string) string {
		t.Helper()
		if price == nil {
			t.Fatal("no unit price")
		}
		v, err := money.Parse(*price)
		if err != nil {
			t.Fatal(err)
		}
		return v.Reduce().String()
	}
	// sell returns the unit price entity sells the SKU at in period ("" for the current one)
	// and its markup.
	sell := func(t *testing.T, entityID, per string) (string, string) {
		t.Helper()
		it := prices(t, a, entityID, code, per)
		return reduced(t, it.Sell.UnitPrice), it.Markup
	}

	t.Run("ErrDayBeforeTheRunningPeriod", func(t *testing.T) {
		for _, tc := range []struct {
			name, method, path, field string
			body                      map[string]any
		}{
			{"Rate", "PUT", "/api/v1/pricing/" + k.ID, "effectiveFrom", map[string]any{"model": "per_unit", "unitPrice": "2", "effectiveFrom": "2026-10-31"}},
			{"Markup", "POST", "/api/v1/distributors/" + d.ID + "/markups", "startDate", map[string]any{"markup": "10", "startDate": "2026-10-31"}},
			{"Override", "PUT", "/api/v1/pricelists/" + tn.ID + "/" + k.ID, "effectiveFrom", map[string]any{"model": "per_unit", "unitPrice": "0.5", "effectiveFrom": "2026-10-31"}},
			{"OverrideEnd", "DELETE", "/api/v1/pricelists/" + tn.ID + "/" + k.ID + "?effectiveFrom=2026-10-31", "effectiveFrom", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var body any
				if tc.body != nil {
					body = tc.body
				}
				if env := a.do(tc.method, tc.path, body); env.status != 400 || !env.hasError("in_past", tc.field) {
					t.Fatalf("got %s", env.raw)
				}
			})
		}
	})
	t.Run("Rate", func(t *testing.T) {
		var got skuOut
		a.must(200, "PUT", "/api/v1/pricing/"+k.ID, map[string]any{"model": "per_unit", "unitPrice": "2.00", "effectiveFrom": "2026-11-01"}, &got)
		if *got.UnitPrice != "2.00" || got.EffectiveFrom != "2026-11-01" {
			t.Fatalf("the running period's rate: %s from %s", *got.UnitPrice, got.EffectiveFrom)
		}
		if v, _ := sell(t, "platform", ""); v != "2" {
			t.Fatalf("November list price %s", v)
		}
		a.must(200, "PUT", "/api/v1/pricing/"+k.ID, map[string]any{"model": "per_unit", "unitPrice": "3.00", "effectiveFrom": "2026-11-18"}, nil)
		nov, _ := sell(t, "platform", "2026-11")
		dec, _ := sell(t, "platform", "2026-12")
		if nov != "2" || dec != "3" {
			t.Fatalf("a rate dated mid-November waits for December: November %s, December %s", nov, dec)
		}
	})
	t.Run("Markup", func(t *testing.T) {
		a.must(201, "POST", "/api/v1/distributors/"+d.ID+"/markups", map[string]any{"markup": "10", "startDate": "2026-11-01"}, nil)
		if v, m := sell(t, d.ID, ""); v != "2.2" || m != "10" {
			t.Fatalf("November: D sells at %s with markup %s", v, m)
		}
		a.must(201, "POST", "/api/v1/distributors/"+d.ID+"/markups", map[string]any{"markup": "20", "startDate": "2026-11-18"}, nil)
		nov, mNov := sell(t, d.ID, "2026-11")
		dec, mDec := sell(t, d.ID, "2026-12")
		if nov != "2.2" || mNov != "10" || dec != "3.6" || mDec != "20" {
			t.Fatalf("November %s (%s %%), December %s (%s %%)", nov, mNov, dec, mDec)
		}
	})
	t.Run("Override", func(t *testing.T) {
		a.must(200, "PUT", "/api/v1/pricelists/"+tn.ID+"/"+k.ID, map[string]any{"model": "per_unit", "unitPrice": "0.50", "effectiveFrom": "2026-11-01"}, nil)
		it := prices(t, a, tn.ID, code, "")
		if !it.Overridden || it.OverrideFrom != "2026-11-01" || reduced(t, it.Sell.UnitPrice) != "0.5" || it.Buy == nil || reduced(t, it.Buy.UnitPrice) != "2.2" {
			t.Fatalf("November: %+v", it)
		}
		a.must(200, "DELETE", "/api/v1/pricelists/"+tn.ID+"/"+k.ID+"?effectiveFrom=2026-11-01", nil, nil)
		if it := prices(t, a, tn.ID, code, ""); it.Overridden {
			t.Fatalf("ended from the running period's first day: %+v", it)
		}
	})
}
