package integration_test

import (
	"strings"
	"testing"

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

func period(offset int) string { return monthStart(offset)[:7] }

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
func TestPriceListWorkedExample(t *testing.T) {
	a := admin(t)
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
				if it.EntityType != tc.typ || it.Markup != tc.markup || it.Period != period(0) || it.EffectiveFrom != currentMonthStart() {
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
		a.must(201, "POST", "/api/v1/partners/"+p.ID+"/markups", map[string]any{"markup": "25", "startDate": monthStart(1)}, nil)
		if got := sellTiers(t, prices(t, a, tn.ID, code, period(0))); got != "0.132/0.1056/0.066" {
			t.Fatalf("this period keeps 20 %%: %s", got)
		}
		if got := sellTiers(t, prices(t, a, tn.ID, code, period(1))); got != "0.1375/0.11/0.06875" {
			t.Fatalf("next period at 25 %%: %s", got)
		}
	})
	t.Run("Override", func(t *testing.T) {
		_, partnerAdmin := mkUser(t, a, "partner_admin", p.ID)
		var o struct {
			TenantID string `json:"tenantId"`
			Versions []struct {
				EffectiveFrom string   `json:"effectiveFrom"`
				Rate          *rateOut `json:"rate"`
				CreatedBy     string   `json:"createdBy"`
			} `json:"versions"`
		}
		partnerAdmin.must(200, "PUT", "/api/v1/pricelists/"+tn.ID+"/"+k.ID, map[string]any{"model": "per_unit", "unitPrice": 0.07}, &o)
		if len(o.Versions) != 1 || o.Versions[0].EffectiveFrom != monthStart(1) || *o.Versions[0].Rate.UnitPrice != "0.07" {
			t.Fatalf("override defaults to the next period: %+v", o)
		}
		if it := prices(t, a, tn.ID, code, ""); it.Overridden {
			t.Fatal("this period has no override yet")
		}
		next := prices(t, partnerAdmin, tn.ID, code, period(1))
		if !next.Overridden || next.Sell.Model != "per_unit" || *next.Sell.UnitPrice != "0.07" || next.OverrideFrom != monthStart(1) ||
			tiers(t, next.Buy) != "0.1375/0.11/0.06875" {
			t.Fatalf("next period: %+v", next)
		}
		// The partner's own price list is unchanged by its tenant's override.
		if got := sellTiers(t, prices(t, a, p.ID, code, period(1))); got != "0.1375/0.11/0.06875" {
			t.Fatalf("partner sell %s", got)
		}
		// End it from the period after next: next period keeps it.
		partnerAdmin.must(200, "DELETE", "/api/v1/pricelists/"+tn.ID+"/"+k.ID+"?effectiveFrom="+monthStart(2), nil, &o)
		if !prices(t, a, tn.ID, code, period(1)).Overridden || prices(t, a, tn.ID, code, period(2)).Overridden {
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
		env := a.must(200, "GET", "/api/v1/pricelists/"+tn.ID+"?page_size=2&period="+period(1)+"&search="+prefix, nil, &items)
		if len(items) != 2 || env.Page == nil || env.Page.Next == "" {
			t.Fatalf("first page %+v %+v", items, env.Page)
		}
		env = a.must(200, "GET", "/api/v1/pricelists/"+tn.ID+"?next="+env.Page.Next, nil, &items)
		if len(items) != 1 || items[0].Period != period(1) || items[0].Code != prefix+"-c" || env.Page.Next != "" {
			t.Fatalf("second page %+v", items)
		}
	})
}
