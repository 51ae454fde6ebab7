package usagecatalog_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/pricing"
	"github.com/channelbilling/cms/shared/subscriptions"
	"github.com/channelbilling/cms/shared/usage"
	"github.com/channelbilling/cms/shared/usagecatalog"
)

func dec(tb testing.TB, s string) money.Decimal {
	tb.Helper()
	d, err := money.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func decp(tb testing.TB, s string) *money.Decimal { d := dec(tb, s); return &d }

type fakeEntities struct{ m map[string]*hierarchy.Entity }

func (f *fakeEntities) GetEntity(_ context.Context, id string) (*hierarchy.Entity, error) {
	if e, ok := f.m[id]; ok {
		return e, nil
	}
	return nil, apperr.NotFoundf("No entity with this id.")
}

func (f *fakeEntities) GetEntities(_ context.Context, ids []string) (map[string]*hierarchy.Entity, error) {
	out := map[string]*hierarchy.Entity{}
	for _, id := range ids {
		if e, ok := f.m[id]; ok {
			out[id] = e
		}
	}
	return out, nil
}

type fakeCatalog struct {
	skus      []*catalog.SKU
	plans     map[string]*catalog.Plan
	overrides map[string][]*catalog.Override
	listCalls atomic.Int32
}

func (f *fakeCatalog) ListSKUs(context.Context) ([]*catalog.SKU, error) {
	f.listCalls.Add(1)
	return f.skus, nil
}

func (f *fakeCatalog) GetPlan(_ context.Context, id string) (*catalog.Plan, error) {
	if p, ok := f.plans[id]; ok {
		return p, nil
	}
	return nil, apperr.NotFoundf("No plan with this id.")
}

func (f *fakeCatalog) GetOverrides(_ context.Context, tenantID string) ([]*catalog.Override, error) {
	return f.overrides[tenantID], nil
}

type fakeSubs struct {
	subs      []*subscriptions.Subscription
	hist      map[string][]subscriptions.HistoryEntry
	listCalls atomic.Int32
}

func (f *fakeSubs) GetSubscription(_ context.Context, id string) (*subscriptions.Subscription, error) {
	for _, s := range f.subs {
		if s.ID == id {
			return s, nil
		}
	}
	return nil, apperr.NotFoundf("No subscription with this id.")
}

func (f *fakeSubs) ListSubscriptions(_ context.Context, prefix string) ([]*subscriptions.Subscription, error) {
	f.listCalls.Add(1)
	var out []*subscriptions.Subscription
	for _, s := range f.subs {
		if strings.HasPrefix(s.TenantPath, prefix) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeSubs) History(_ context.Context, id string) ([]subscriptions.HistoryEntry, error) {
	return f.hist[id], nil
}

var (
	oct     = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	octP, _ = period.Parse("2026-10")
)

// worked is SPEC 15: D (10 %) > P (20 %) > T; storage-gb graduated with 50 included; plan pro.
// T also has an ended subscription to plan "old" (Sept.) and a plan change on sub_t2 on 15 Oct
// from "old" to "pro".
func worked(t *testing.T) (*usagecatalog.Source, *fakeCatalog, *fakeSubs) {
	ents := &fakeEntities{m: map[string]*hierarchy.Entity{
		"platform": {ID: "platform", Type: access.Platform, Path: "/platform/"},
		"dst_d":    {ID: "dst_d", Type: access.Distributor, Path: "/platform/dst_d/", Markups: []hierarchy.Markup{{Markup: "10", StartDate: "2026-01-01"}}},
		"prt_p":    {ID: "prt_p", Type: access.Partner, Path: "/platform/dst_d/prt_p/", Markups: []hierarchy.Markup{{Markup: "20", StartDate: "2026-01-01"}}},
		"tnt_t":    {ID: "tnt_t", Type: access.Tenant, Path: "/platform/dst_d/prt_p/tnt_t/", Currency: "EUR", InvoicedThrough: "2026-08"},
	}}
	storage := &catalog.SKU{ID: "sku_st", Code: "storage-gb", Currency: "EUR", Thresholds: []money.Decimal{dec(t, "1000")},
		Rates: []catalog.RateVersion{{EffectiveFrom: "2026-01-01", Rate: pricing.Rate{Model: pricing.Graduated, IncludedQuantity: dec(t, "50"),
			Tiers: []pricing.Tier{{UpTo: decp(t, "100"), UnitPrice: dec(t, "0.10")}, {UpTo: decp(t, "1000"), UnitPrice: dec(t, "0.08")}, {UnitPrice: dec(t, "0.05")}}}}}}
	vm := &catalog.SKU{ID: "sku_vm", Code: "VM-Hours", Currency: "EUR",
		Rates: []catalog.RateVersion{{EffectiveFrom: "2027-01-01", Rate: pricing.Rate{Model: pricing.PerUnit, UnitPrice: decp(t, "1")}}}}
	cat := &fakeCatalog{skus: []*catalog.SKU{storage, vm}, plans: map[string]*catalog.Plan{
		"pln_pro": {ID: "pln_pro", Code: "pro", Charges: []catalog.PlanCharge{{SKUID: "sku_st", SKUCode: "storage-gb"}}},
		"pln_old": {ID: "pln_old", Code: "old", Charges: []catalog.PlanCharge{{SKUID: "sku_vm", SKUCode: "VM-Hours"}, {SKUID: "sku_st", SKUCode: "storage-gb", IncludedQuantity: decp(t, "0")}}},
	}}
	ended := oct
	path := "/platform/dst_d/prt_p/tnt_t/"
	subs := &fakeSubs{subs: []*subscriptions.Subscription{
		{ID: "sub_t", TenantID: "tnt_t", TenantPath: path, PlanID: "pln_pro", Status: subscriptions.StatusActive, StartDate: time.Date(2026, 10, 11, 0, 0, 0, 0, time.UTC)},
		{ID: "sub_old", TenantID: "tnt_t", TenantPath: path, PlanID: "pln_old", Status: subscriptions.StatusCancelled, StartDate: oct.AddDate(0, -2, 0), CancelAt: &ended},
		{ID: "sub_t2", TenantID: "tnt_t", TenantPath: path, PlanID: "pln_pro", Status: subscriptions.StatusActive, StartDate: oct.AddDate(0, -1, 0)},
	}, hist: map[string][]subscriptions.HistoryEntry{
		"sub_t":   {{At: oct, Action: "create", After: &subscriptions.State{PlanID: "pln_pro"}}},
		"sub_old": {{At: oct, Action: "create", After: &subscriptions.State{PlanID: "pln_old"}}},
		"sub_t2": {
			{At: oct.AddDate(0, -1, 0), Action: "create", After: &subscriptions.State{PlanID: "pln_old"}},
			{At: oct.AddDate(0, 0, 14), Action: "update", Before: &subscriptions.State{PlanID: "pln_old"}, After: &subscriptions.State{PlanID: "pln_pro"}},
		},
	}}
	src := usagecatalog.New(ents, cat, subs, "EUR")
	src.Now = func() time.Time { return time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC) }
	return src, cat, subs
}

func TestTenant(t *testing.T) {
	src, _, _ := worked(t)
	ctx := context.Background()
	tn, err := src.Tenant(ctx, "tnt_t")
	if err != nil || tn.Path != "/platform/dst_d/prt_p/tnt_t/" || tn.Currency != "EUR" || tn.InvoicedThrough != "2026-08" {
		t.Fatalf("%+v %v", tn, err)
	}
	if !tn.Invoiced(octP.Prev().Prev()) || tn.Invoiced(octP) {
		t.Error("Invoiced")
	}
	for _, id := range []string{"prt_p", "tnt_404"} {
		if _, err := src.Tenant(ctx, id); !apperr.Is(err, apperr.NotFound) {
			t.Errorf("%s: %v, want NotFound", id, err)
		}
	}
}

func TestResolve(t *testing.T) {
	ctx := context.Background()
	at := func(d int) time.Time { return oct.AddDate(0, 0, d-1).Add(12 * time.Hour) }
	cases := []struct {
		name, sub, sku string
		at             time.Time
		want           string // subscription id, or field:code
	}{
		// Before 15 Oct sub_t2 is on "old" (which charges storage too) and sub_t is not started:
		// two candidates in September (sub_old, sub_t2).
		{"AmbiguousInSeptember", "", "storage-gb", oct.AddDate(0, 0, -5), "subscriptionId:ambiguous"},
		{"NamedInSeptember", "sub_old", "STORAGE-GB", oct.AddDate(0, 0, -5), "sub_old"},
		{"OnlyOldPlanChargesVM", "", "vm-hours", at(3), "sub_t2"},
		{"VMAfterThePlanChange", "", "vm-hours", at(20), "sku:no_subscription"},
		{"StorageAfterBothStarted", "", "storage-gb", at(20), "subscriptionId:ambiguous"},
		{"NamedAfterBothStarted", "sub_t", "storage-gb", at(20), "sub_t"},
		{"ErrNamedNotStarted", "sub_t", "storage-gb", at(5), "subscriptionId:not_active"},
		{"ErrNamedEnded", "sub_old", "storage-gb", at(5), "subscriptionId:not_active"},
		{"ErrNamedNotInPlan", "sub_t", "vm-hours", at(20), "sku:not_in_plan"},
		{"ErrNamedUnknown", "sub_x", "storage-gb", at(20), "subscriptionId:not_found"},
		{"ErrUnknownSKU", "", "cpu", at(20), "sku:unknown_sku"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, _, _ := worked(t)
			tn, _ := src.Tenant(ctx, "tnt_t")
			res, err := src.Resolve(ctx, tn, tc.sub, tc.sku, tc.at)
			got := res.SubscriptionID
			if err != nil {
				ae := apperr.As(err)
				if len(ae.Fields) != 1 || !apperr.Is(err, apperr.Invalid) {
					t.Fatalf("error %v", err)
				}
				got = ae.Fields[0].Field + ":" + ae.Fields[0].Code
			}
			if got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
			if err == nil && !strings.EqualFold(res.SKU, tc.sku) {
				t.Errorf("sku %q", res.SKU)
			}
		})
	}
	t.Run("CachesAndRefreshesOnMiss", func(t *testing.T) {
		src, cat, subs := worked(t)
		clock := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
		src.Now = func() time.Time { return clock }
		tn, _ := src.Tenant(ctx, "tnt_t")
		for range 100 {
			if _, err := src.Resolve(ctx, tn, "sub_t", "storage-gb", at(20)); err != nil {
				t.Fatal(err)
			}
		}
		if cat.listCalls.Load() != 1 || subs.listCalls.Load() != 1 {
			t.Fatalf("list calls: skus %d, subscriptions %d; want 1 each", cat.listCalls.Load(), subs.listCalls.Load())
		}
		// A SKU and a subscription created after the cache was filled are found at once.
		cat.skus = append(cat.skus, &catalog.SKU{ID: "sku_new", Code: "new"})
		cat.plans["pln_new"] = &catalog.Plan{ID: "pln_new", Charges: []catalog.PlanCharge{{SKUID: "sku_new", SKUCode: "new"}}}
		subs.subs = append(subs.subs, &subscriptions.Subscription{ID: "sub_new", TenantID: "tnt_t", TenantPath: tn.Path, PlanID: "pln_new", StartDate: oct})
		clock = clock.Add(200 * time.Millisecond)
		res, err := src.Resolve(ctx, tn, "", "new", at(20))
		if err != nil || res.SubscriptionID != "sub_new" {
			t.Fatalf("%+v %v", res, err)
		}
	})
	t.Run("ClockMovingBackExpiresTheCache", func(t *testing.T) {
		// A cache filled "later" than now (a clock set back: a test clock, a wall clock
		// stepped back) is stale, not fresh for ever.
		src, cat, subs := worked(t)
		clock := time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)
		src.Now = func() time.Time { return clock }
		tn, _ := src.Tenant(ctx, "tnt_t")
		if _, err := src.Resolve(ctx, tn, "sub_t", "storage-gb", at(20)); err != nil {
			t.Fatal(err)
		}
		cat.skus = append(cat.skus, &catalog.SKU{ID: "sku_new", Code: "new"})
		cat.plans["pln_new"] = &catalog.Plan{ID: "pln_new", Charges: []catalog.PlanCharge{{SKUID: "sku_new", SKUCode: "new"}}}
		subs.subs = append(subs.subs, &subscriptions.Subscription{ID: "sub_new", TenantID: "tnt_t", TenantPath: tn.Path, PlanID: "pln_new", StartDate: oct})
		clock = clock.AddDate(0, 0, -1)
		res, err := src.Resolve(ctx, tn, "", "new", at(20))
		if err != nil || res.SubscriptionID != "sub_new" {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

func TestCharge(t *testing.T) {
	ctx := context.Background()
	src, cat, _ := worked(t)
	ref := usage.AggregateRef{Key: usage.AggregateKey{SubscriptionID: "sub_t", SKU: "storage-gb", Period: octP}, TenantID: "tnt_t", TenantPath: "/platform/dst_d/prt_p/tnt_t/"}
	t.Run("WorkedExample", func(t *testing.T) {
		m, err := src.Charge(ctx, ref, dec(t, "1250"))
		if err != nil || m.Amount.String() != "121.44" || m.Currency != "EUR" {
			t.Fatalf("%v %v, want 121.44 EUR (SPEC 15)", m, err)
		}
		m, _ = src.Charge(ctx, ref, dec(t, "0"))
		if !m.Amount.IsZero() {
			t.Fatalf("zero usage costs %v", m)
		}
	})
	t.Run("PlanAtPeriodEnd", func(t *testing.T) {
		// sub_t2 moved to "pro" (50 included) on 15 Oct: October is priced with "pro".
		r2 := ref
		r2.Key.SubscriptionID = "sub_t2"
		m, err := src.Charge(ctx, r2, dec(t, "1250"))
		if err != nil || m.Amount.String() != "121.44" {
			t.Fatalf("%v %v", m, err)
		}
		// September: still "old", which includes nothing: 1300 GB = 10 + 72 + 15 = 97.00 list.
		r2.Key.Period = octP.Prev()
		m, err = src.Charge(ctx, r2, dec(t, "1300"))
		if want := dec(t, "97").Mul(dec(t, "1.32")); err != nil || !m.Amount.Equal(want) {
			t.Fatalf("%v %v, want %s", m, err, want)
		}
	})
	t.Run("Override", func(t *testing.T) {
		cat.overrides = map[string][]*catalog.Override{"tnt_t": {{TenantID: "tnt_t", SKUID: "sku_st", Versions: []catalog.OverrideVersion{
			{EffectiveFrom: "2026-10-01", Rate: &pricing.Rate{Model: pricing.PerUnit, UnitPrice: decp(t, "0.07")}}}}}}
		defer func() { cat.overrides = nil }()
		m, err := src.Charge(ctx, ref, dec(t, "1250"))
		// The override is a complete rate (its own includedQuantity, 0); the plan sets none to
		// apply on top (docs/pricing.md): 1250 x 0.07.
		if err != nil || m.Amount.String() != "87.50" {
			t.Fatalf("%v %v", m, err)
		}
	})
	t.Run("OverrideKeepsItsIncludedQuantity", func(t *testing.T) {
		// In September sub_t2 is on "old", whose charge sets includedQuantity 0 for storage. The
		// override includes 100 GB of its own and keeps them: (1250 - 100) x 0.07 = 80.50, not
		// the 87.50 the plan's 0 would give (docs/pricing.md: a complete replacement rate).
		cat.overrides = map[string][]*catalog.Override{"tnt_t": {{TenantID: "tnt_t", SKUID: "sku_st", Versions: []catalog.OverrideVersion{
			{EffectiveFrom: "2026-09-01", Rate: &pricing.Rate{Model: pricing.PerUnit, UnitPrice: decp(t, "0.07"), IncludedQuantity: dec(t, "100")}}}}}}
		defer func() { cat.overrides = nil }()
		r := ref
		r.Key.SubscriptionID, r.Key.Period = "sub_t2", octP.Prev()
		m, err := src.Charge(ctx, r, dec(t, "1250"))
		if err != nil || m.Amount.String() != "80.50" {
			t.Fatalf("%v %v, want 80.50", m, err)
		}
	})
	t.Run("ErrNoRate", func(t *testing.T) {
		r := ref
		r.Key.SKU = "VM-Hours"
		if _, err := src.Charge(ctx, r, dec(t, "1")); !apperr.Is(err, apperr.Unprocessable) {
			t.Fatalf("%v, want Unprocessable", err)
		}
	})
}

func TestThresholdsAndSubscriptionTenant(t *testing.T) {
	ctx := context.Background()
	src, _, _ := worked(t)
	th, err := src.Thresholds(ctx, "Storage-GB")
	if err != nil || len(th) != 1 || th[0].String() != "1000" {
		t.Fatalf("%v %v", th, err)
	}
	if _, err := src.Thresholds(ctx, "nope"); !apperr.Is(err, apperr.NotFound) {
		t.Fatalf("%v", err)
	}
	if id, err := src.SubscriptionTenant(ctx, "sub_t"); err != nil || id != "tnt_t" {
		t.Fatalf("%v %v", id, err)
	}
}

// BenchmarkResolve is the per-record cost of tenant lookup and subscription resolution with
// warm caches (what every record pays on the hot path).
func BenchmarkResolve(b *testing.B) {
	src, _, _ := worked(&testing.T{})
	ctx := context.Background()
	tn, _ := src.Tenant(ctx, "tnt_t")
	at := oct.AddDate(0, 0, 20)
	if _, err := src.Resolve(ctx, tn, "sub_t", "storage-gb", at); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		t2, _ := src.Tenant(ctx, "tnt_t")
		if _, err := src.Resolve(ctx, t2, "sub_t", "storage-gb", at); err != nil {
			b.Fatal(fmt.Sprint(err))
		}
	}
}

// nopStore accepts everything without work: the benchmark measures our own code only.
type nopStore struct{ usage.Store }

func (nopStore) Record(_ context.Context, b *usage.Batch) ([]usage.EntryResult, error) {
	out := make([]usage.EntryResult, len(b.Entries))
	for i := range out {
		out[i].Status = usage.Accepted
	}
	return out, nil
}

// BenchmarkIngest is the figure of docs/performance.md: the CPU of our own code per record,
// decoding a queue message of 500 records over 50 tenants (one subscription each, plans of two
// SKUs), validating, resolving through this adapter with warm caches, and aggregating, with
// the store faked out.
func BenchmarkIngest(b *testing.B) {
	ents := &fakeEntities{m: map[string]*hierarchy.Entity{"platform": {ID: "platform", Type: access.Platform, Path: "/platform/"}}}
	cat := &fakeCatalog{skus: []*catalog.SKU{{ID: "sku_st", Code: "storage-gb", Thresholds: []money.Decimal{money.NewFromInt(1000)}}, {ID: "sku_vm", Code: "vm-hours"}},
		plans: map[string]*catalog.Plan{"pln": {ID: "pln", Charges: []catalog.PlanCharge{{SKUID: "sku_vm", SKUCode: "vm-hours"}, {SKUID: "sku_st", SKUCode: "storage-gb"}}}}}
	subs := &fakeSubs{hist: map[string][]subscriptions.HistoryEntry{}}
	for i := range 50 {
		id := fmt.Sprintf("tnt_%02d", i)
		path := "/platform/prt_1/" + id + "/"
		ents.m[id] = &hierarchy.Entity{ID: id, Type: access.Tenant, Path: path, Currency: "EUR"}
		sid := fmt.Sprintf("sub_%02d", i)
		subs.subs = append(subs.subs, &subscriptions.Subscription{ID: sid, TenantID: id, TenantPath: path, PlanID: "pln", Status: subscriptions.StatusActive, StartDate: oct.AddDate(-1, 0, 0)})
		subs.hist[sid] = []subscriptions.HistoryEntry{{At: oct, Action: "create", After: &subscriptions.State{PlanID: "pln"}}}
	}
	src := usagecatalog.New(ents, cat, subs, "EUR")
	now := time.Date(2026, 10, 20, 12, 0, 0, 0, time.UTC)
	svc := &usage.Service{Tenants: src, Resolver: src, Catalog: src, Store: nopStore{}, Now: func() time.Time { return now },
		Log: slogDiscard()}
	var sb strings.Builder
	sb.WriteString(`{"records":[`)
	for i := range 500 {
		if i > 0 {
			sb.WriteByte(',')
		}
		fmt.Fprintf(&sb, `{"id":"rec-%08d","tenantId":"tnt_%02d","sku":"storage-gb","quantity":"%d.25","timestamp":"2026-10-%02dT%02d:15:00Z","region":"eu-west-1"}`,
			i, i%50, i%97, 1+i%19, i%24)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	ctx := context.Background()
	if rep := svc.Ingest(ctx, usage.Options{Source: usage.SourceQueue}, usage.DecodeMessage("m", body)); rep.Accepted != 500 {
		b.Fatalf("warm-up accepted %d: %+v", rep.Accepted, rep.Outcomes[0])
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rep := svc.Ingest(ctx, usage.Options{Source: usage.SourceQueue}, usage.DecodeMessage("m", body))
		if rep.Accepted != 500 {
			b.Fatalf("accepted %d", rep.Accepted)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*500), "ns/record")
}

func slogDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
