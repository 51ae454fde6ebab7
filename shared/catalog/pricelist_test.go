package catalog_test

import (
	"context"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/pricing"
)

// fakeEntities is the read side of hierarchy.Store over a fixed tree; the price lists never
// write entities, so the writes answer an error.
type fakeEntities map[string]*hierarchy.Entity

func (f fakeEntities) GetEntity(_ context.Context, id string) (*hierarchy.Entity, error) {
	if e, ok := f[id]; ok {
		c := *e
		return &c, nil
	}
	return nil, apperr.NotFoundf("no entity")
}

func (f fakeEntities) GetEntities(ctx context.Context, ids []string) (map[string]*hierarchy.Entity, error) {
	out := map[string]*hierarchy.Entity{}
	for _, id := range ids {
		if e, err := f.GetEntity(ctx, id); err == nil {
			out[id] = e
		}
	}
	return out, nil
}

func (f fakeEntities) CreateEntity(context.Context, *hierarchy.Entity) error {
	return apperr.New(apperr.Internal, "read_only", "read-only fake")
}

func (f fakeEntities) UpdateEntity(context.Context, string, func(*hierarchy.Entity) error) (*hierarchy.Entity, error) {
	return nil, apperr.New(apperr.Internal, "read_only", "read-only fake")
}

func (f fakeEntities) DeleteEntity(context.Context, string) error {
	return apperr.New(apperr.Internal, "read_only", "read-only fake")
}

func (f fakeEntities) ListSubtree(context.Context, access.EntityType, string) ([]*hierarchy.Entity, error) {
	return nil, apperr.New(apperr.Internal, "read_only", "read-only fake")
}

// channel is the SPEC 15 tree: D (10 % from 2026-01-01, 15 % from 2026-12-01) > P (20 %) > T.
func channel() fakeEntities {
	return fakeEntities{
		"platform": {ID: "platform", Type: access.Platform, Path: "/platform/", Currency: "EUR"},
		"D": {ID: "D", Type: access.Distributor, Path: "/platform/D/", Currency: "EUR", Markups: []hierarchy.Markup{
			{Markup: "15", StartDate: "2026-12-01"}, {Markup: "10.0", StartDate: "2026-01-01"}}},
		"P": {ID: "P", Type: access.Partner, Path: "/platform/D/P/", Currency: "EUR", Markups: []hierarchy.Markup{{Markup: "20", StartDate: "2026-01-01"}}},
		"T": {ID: "T", Type: access.Tenant, Path: "/platform/D/P/T/", Currency: "EUR"},
		"Q": {ID: "Q", Type: access.Partner, Path: "/platform/Q/", Currency: "EUR"},
	}
}

func TestPriceLists(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)
	cat, st := newService(now)
	k := mustSKU(t, cat, `{"code":"storage-gb","name":"Storage","unit":"GB","model":"graduated","includedQuantity":50,
		"tiers":[{"upTo":100,"unitPrice":"0.10"},{"upTo":1000,"unitPrice":"0.08"},{"upTo":null,"unitPrice":"0.05"}]}`)
	mustSKU(t, cat, `{"code":"usd-only","name":"USD","currency":"USD","model":"per_unit","unitPrice":"1"}`)
	mustSKU(t, cat, `{"code":"later","name":"Later","model":"per_unit","unitPrice":"1","effectiveFrom":"2027-01-01"}`)
	pl := &catalog.PriceLists{Catalog: st, Entities: channel(), PlatformCurrency: "EUR", Now: func() time.Time { return now }}
	partnerAdmin := access.Principal{UserID: "usr_p", Role: access.PartnerAdmin, ScopeID: "P", ScopeType: access.Partner, ScopePath: "/platform/D/P/"}

	list := func(p access.Principal, id, period string) []*catalog.PriceListItem {
		t.Helper()
		q := listing.Query{}
		if period != "" {
			q.Filters = map[string]string{"period": period}
		}
		page, err := pl.List(ctx, p, id, q, nil)
		if err != nil {
			t.Fatal(err)
		}
		return page.Items
	}
	t.Run("OK/Tenant", func(t *testing.T) {
		items := list(admin, "T", "")
		if len(items) != 1 || items[0].Code != "storage-gb" || items[0].Period.String() != "2026-11" {
			t.Fatalf("only the EUR SKU in effect now: %v", items)
		}
		if got := tierPrices(&items[0].Sell); !equal(got, []string{"0.132", "0.1056", "0.066"}) || items[0].Overridden {
			t.Fatalf("sell %v", got)
		}
	})
	t.Run("OK/MarkupChangeTakesEffectNextPeriod", func(t *testing.T) {
		items := list(admin, "D", "2026-12")
		if got := tierPrices(&items[0].Sell); !equal(got, []string{"0.115", "0.092", "0.0575"}) || items[0].Markup != "15" {
			t.Fatalf("December: sell %v markup %s", got, items[0].Markup)
		}
	})
	t.Run("OK/PlatformSeesEverySKUAtList", func(t *testing.T) {
		items := list(admin, "platform", "2027-01")
		if len(items) != 3 || items[0].Buy != nil {
			t.Fatalf("platform list: %v", items)
		}
	})
	t.Run("ErrOutsideSubtree", func(t *testing.T) {
		for _, id := range []string{"D", "Q", "nope"} {
			if _, err := pl.List(ctx, partnerAdmin, id, listing.Query{}, nil); !apperr.Is(err, apperr.NotFound) {
				t.Fatalf("%s: %v", id, err)
			}
		}
	})
	t.Run("ErrBadPeriod", func(t *testing.T) {
		_, err := pl.List(ctx, admin, "T", listing.Query{Filters: map[string]string{"period": "2026-1"}}, nil)
		if !fieldsOf(err)["period:invalid"] {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("OK/Override", func(t *testing.T) {
		var in catalog.OverrideInput
		decode(t, `{"model":"per_unit","unitPrice":"0.07"}`, &in)
		o, err := pl.PutOverride(ctx, partnerAdmin, "T", k.ID, in)
		if err != nil || len(o.Versions) != 1 || o.Versions[0].EffectiveFrom != "2026-12-01" {
			t.Fatalf("%+v %v", o, err)
		}
		if items := list(admin, "T", "2026-11"); items[0].Overridden {
			t.Fatal("the override starts next period")
		}
		dec := list(admin, "T", "2026-12")[0]
		if !dec.Overridden || dec.Sell.Model != "per_unit" || dec.OverrideFrom != "2026-12-01" || tierPrices(dec.Buy)[0] != "0.138" {
			t.Fatalf("December: %+v", dec)
		}
		// End it from January: December keeps it.
		if _, err := pl.EndOverride(ctx, partnerAdmin, "T", k.ID, "2027-01-01"); err != nil {
			t.Fatal(err)
		}
		if !list(admin, "T", "2026-12")[0].Overridden || list(admin, "T", "2027-01")[0].Overridden {
			t.Fatal("override must run in December only")
		}
		// Ending again changes nothing; a SKU never overridden answers 404.
		o, err = pl.EndOverride(ctx, partnerAdmin, "T", k.ID, "2027-01-01")
		if err != nil || len(o.Versions) != 2 {
			t.Fatalf("idempotent end: %+v %v", o, err)
		}
		later := mustSKU(t, cat, `{"code":"other","name":"Other","model":"per_unit","unitPrice":"1"}`)
		if _, err := pl.EndOverride(ctx, partnerAdmin, "T", later.ID, ""); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrOverrideRules", func(t *testing.T) {
		var in catalog.OverrideInput
		decode(t, `{"model":"per_unit","unitPrice":"0.07","effectiveFrom":"2026-10-01"}`, &in)
		if _, err := pl.PutOverride(ctx, partnerAdmin, "T", k.ID, in); !fieldsOf(err)["effectiveFrom:in_past"] {
			t.Fatalf("past: %v", err)
		}
		decode(t, `{"model":"per_unit","unitPrice":"0.07","effectiveFrom":"2026-12-01"}`, &in)
		if _, err := pl.PutOverride(ctx, admin, "P", k.ID, in); apperr.As(err).Code != "not_a_tenant" {
			t.Fatalf("partner: %v", err)
		}
		usd, _ := st.ListSKUs(ctx)
		for _, u := range usd {
			if u.Currency == "USD" {
				if _, err := pl.PutOverride(ctx, admin, "T", u.ID, in); apperr.As(err).Code != "currency_mismatch" {
					t.Fatalf("currency: %v", err)
				}
			}
		}
		tenantAdmin := access.Principal{UserID: "usr_t", Role: access.TenantAdmin, ScopeID: "T", ScopeType: access.Tenant, ScopePath: "/platform/D/P/T/"}
		if _, err := pl.PutOverride(ctx, tenantAdmin, "T", k.ID, in); !apperr.Is(err, apperr.Forbidden) {
			t.Fatalf("tenant: %v", err)
		}
	})
}

// TestChangeDatedOnRunningPeriod pins the edge of the effective-dating rule (SPEC 8.3, kept to
// the letter): a rate change, an override or its end dated on the current period's first day is
// accepted and applies to the running period; one dated a day earlier is refused (that period
// may be invoiced); one dated later in the running period waits for the next. The clock is put
// mid-month, at the period's first instant and at its last.
func TestChangeDatedOnRunningPeriod(t *testing.T) {
	ctx := context.Background()
	partnerAdmin := access.Principal{UserID: "usr_p", Role: access.PartnerAdmin, ScopeID: "P", ScopeType: access.Partner, ScopePath: "/platform/D/P/"}
	unitPrice := func(r *pricing.Rate) string {
		if r == nil || r.UnitPrice == nil {
			return "<none>"
		}
		return r.UnitPrice.String()
	}
	for _, now := range []time.Time{
		time.Date(2026, 11, 18, 10, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 11, 30, 23, 59, 59, 999999999, time.UTC),
	} {
		t.Run(now.Format(time.RFC3339Nano), func(t *testing.T) {
			cat, st := newService(now)
			pl := &catalog.PriceLists{Catalog: st, Entities: channel(), PlatformCurrency: "EUR", Now: func() time.Time { return now }}
			k := mustSKU(t, cat, `{"code":"api","name":"API","model":"per_unit","unitPrice":"0.10"}`)
			nov, dec := MustPeriod(t, "2026-11"), MustPeriod(t, "2026-12")

			t.Run("ErrDayBeforeTheRunningPeriod", func(t *testing.T) {
				var in catalog.SKUUpdateInput
				decode(t, `{"model":"per_unit","unitPrice":"0.20","effectiveFrom":"2026-10-31"}`, &in)
				if _, err := cat.UpdateSKU(ctx, admin, k.ID, in); !fieldsOf(err)["effectiveFrom:in_past"] {
					t.Fatalf("rate: %v", err)
				}
				var o catalog.OverrideInput
				decode(t, `{"model":"per_unit","unitPrice":"0.07","effectiveFrom":"2026-10-31"}`, &o)
				if _, err := pl.PutOverride(ctx, partnerAdmin, "T", k.ID, o); !fieldsOf(err)["effectiveFrom:in_past"] {
					t.Fatalf("override: %v", err)
				}
				if _, err := pl.EndOverride(ctx, partnerAdmin, "T", k.ID, "2026-10-31"); !fieldsOf(err)["effectiveFrom:in_past"] {
					t.Fatalf("end of override: %v", err)
				}
			})
			t.Run("OK/RateOnTheFirstDayRepricesTheRunningPeriod", func(t *testing.T) {
				var in catalog.SKUUpdateInput
				decode(t, `{"model":"per_unit","unitPrice":"0.20","effectiveFrom":"2026-11-01"}`, &in)
				got, err := cat.UpdateSKU(ctx, admin, k.ID, in)
				if err != nil {
					t.Fatal(err)
				}
				if v, _ := got.RateAt(nov); unitPrice(&v.Rate) != "0.20" || unitPrice(&got.Rate) != "0.20" || got.EffectiveFrom != "2026-11-01" {
					t.Fatalf("November rate %s, shown %s from %s", unitPrice(&v.Rate), unitPrice(&got.Rate), got.EffectiveFrom)
				}
				decode(t, `{"model":"per_unit","unitPrice":"0.30","effectiveFrom":"2026-11-02"}`, &in)
				if got, err = cat.UpdateSKU(ctx, admin, k.ID, in); err != nil {
					t.Fatal(err)
				}
				n, _ := got.RateAt(nov)
				d, _ := got.RateAt(dec)
				if unitPrice(&n.Rate) != "0.20" || unitPrice(&d.Rate) != "0.30" {
					t.Fatalf("a date inside the period waits for the next: November %s, December %s", unitPrice(&n.Rate), unitPrice(&d.Rate))
				}
			})
			t.Run("OK/OverrideOnTheFirstDayRepricesTheRunningPeriod", func(t *testing.T) {
				var o catalog.OverrideInput
				decode(t, `{"model":"per_unit","unitPrice":"0.07","effectiveFrom":"2026-11-01"}`, &o)
				if _, err := pl.PutOverride(ctx, partnerAdmin, "T", k.ID, o); err != nil {
					t.Fatal(err)
				}
				page, err := pl.List(ctx, admin, "T", listing.Query{}, nil)
				if err != nil || len(page.Items) != 1 || page.Period != nov {
					t.Fatalf("%+v %v", page, err)
				}
				if it := page.Items[0]; !it.Overridden || it.OverrideFrom != "2026-11-01" || unitPrice(&it.Sell) != "0.07" {
					t.Fatalf("November item %+v", it)
				}
				// Ended from the same day: the running period is back at the partner's price.
				if _, err := pl.EndOverride(ctx, partnerAdmin, "T", k.ID, "2026-11-01"); err != nil {
					t.Fatal(err)
				}
				page, err = pl.List(ctx, admin, "T", listing.Query{}, nil)
				if err != nil || page.Items[0].Overridden {
					t.Fatalf("after the end: %+v %v", page.Items, err)
				}
			})
		})
	}
}
