package usage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/usage"
	"github.com/channelbilling/cms/shared/usage/usagetest"
)

func mustPeriod(tb testing.TB, s string) period.Period {
	tb.Helper()
	p, err := period.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// world is a small channel: T1 and T2 under P1, T3 under P2; T1 has two subscriptions (one
// ended), T2 one with two SKUs, T3 two that both charge "gb". T2 is invoiced through September.
func world() (*usage.Service, *usagetest.MemStore) {
	st := &usagetest.MemStore{}
	tenants := &fakeTenants{m: map[string]*usage.Tenant{
		"tnt_1": {ID: "tnt_1", Path: "/platform/prt_1/tnt_1/", Currency: "EUR"},
		"tnt_2": {ID: "tnt_2", Path: "/platform/prt_1/tnt_2/", Currency: "EUR", InvoicedThrough: "2026-09"},
		"tnt_3": {ID: "tnt_3", Path: "/platform/prt_2/tnt_3/", Currency: "EUR"},
	}}
	oct := time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	res := &fakeResolver{subs: []fakeSub{
		{id: "sub_old", tenant: "tnt_1", skus: []string{"gb"}, from: oct.AddDate(0, -6, 0), to: oct},
		{id: "sub_1", tenant: "tnt_1", skus: []string{"gb"}, from: oct},
		{id: "sub_2", tenant: "tnt_2", skus: []string{"gb", "vm-hours"}, from: oct.AddDate(0, -3, 0)},
		{id: "sub_3a", tenant: "tnt_3", skus: []string{"gb"}, from: oct},
		{id: "sub_3b", tenant: "tnt_3", skus: []string{"gb"}, from: oct},
	}}
	cat := &fakeCatalog{thresholds: map[string][]money.Decimal{"gb": {money.NewFromInt(10), money.NewFromInt(100)}}}
	svc := &usage.Service{Tenants: tenants, Resolver: res, Catalog: cat, Pricer: fakePricer{}, Store: st,
		Subscriptions: fakeSubs{owner: map[string]string{"sub_1": "tnt_1", "sub_2": "tnt_2", "sub_3a": "tnt_3", "sub_old": "tnt_1"}},
		Now:           func() time.Time { return now }, Log: quiet}
	return svc, st
}

func item(id, tenant, sku, q, ts string) usage.Item {
	return usage.Item{Ref: id, Input: usage.Input{ID: id, TenantID: tenant, SKU: sku, Quantity: money.Text(q), Timestamp: ts}}
}

func statuses(rep *usage.Report) []string {
	var out []string
	for _, o := range rep.Outcomes {
		s := o.Status.String()
		for _, e := range o.Errors {
			s += " " + e.Field + ":" + e.Code
		}
		out = append(out, s)
	}
	return out
}

func TestIngest(t *testing.T) {
	ctx := context.Background()
	t.Run("OK", func(t *testing.T) {
		svc, st := world()
		rep := svc.Ingest(ctx, usage.Options{Source: usage.SourceAPI}, []usage.Item{
			item("a", "tnt_1", "gb", "1.5", "2026-10-02T00:00:00Z"),
			item("b", "tnt_1", "GB", "2.5", "2026-10-03T00:00:00Z"), // SKU codes match in any case
			item("c", "tnt_2", "vm-hours", "3", "2026-10-03T00:00:00Z"),
			item("d", "tnt_1", "gb", "7", "2026-09-15T00:00:00Z"), // the old subscription, September
		})
		want := []string{"accepted", "accepted", "accepted", "accepted"}
		if got := statuses(rep); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("outcomes %v", got)
		}
		if rep.Accepted != 4 || rep.Outcomes[3].SubscriptionID != "sub_old" {
			t.Fatalf("report %+v", rep)
		}
		tot, _ := st.Totals(ctx, []usage.AggregateKey{
			{SubscriptionID: "sub_1", SKU: "gb", Period: mustPeriod(t, "2026-10")},
			{SubscriptionID: "sub_old", SKU: "gb", Period: mustPeriod(t, "2026-09")},
		})
		if len(tot) != 2 || tot[usage.AggregateKey{SubscriptionID: "sub_1", SKU: "gb", Period: mustPeriod(t, "2026-10")}].Quantity.String() != "4.0" {
			t.Fatalf("totals %v", tot)
		}
		// Sent again (another channel): all duplicates.
		rep = svc.Ingest(ctx, usage.Options{Source: usage.SourceQueue}, []usage.Item{item("a", "tnt_1", "gb", "1.5", "2026-10-02T00:00:00Z")})
		if rep.Duplicates != 1 {
			t.Fatalf("report %+v", rep)
		}
	})
	t.Run("MixedValidAndInvalid", func(t *testing.T) {
		svc, _ := world()
		bad := item("x", "tnt_1", "gb", "1", "2026-10-02T00:00:00Z")
		bad.Errs = []apperr.FieldError{{Field: "color", Code: "unknown_field", Message: "unknown field color"}}
		rep := svc.Ingest(ctx, usage.Options{Source: usage.SourceFile}, []usage.Item{
			item("a", "tnt_1", "gb", "1", "2026-10-02T00:00:00Z"),
			bad,
			item("b", "tnt_9", "gb", "1", "2026-10-02T00:00:00Z"),
			item("c", "tnt_1", "cpu", "1", "2026-10-02T00:00:00Z"),
			item("d", "tnt_3", "gb", "1", "2026-10-02T00:00:00Z"),
			item("e", "tnt_1", "gb", "-1", "soon"),
			item("f", "tnt_1", "gb", "1", "2026-10-02T00:00:00Z"),
		})
		want := []string{"accepted", "rejected color:unknown_field", "rejected tenantId:not_found", "rejected sku:no_subscription",
			"rejected subscriptionId:ambiguous", "rejected quantity:negative timestamp:invalid", "accepted"}
		if got := statuses(rep); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("outcomes\n%v\nwant\n%v", got, want)
		}
		if rep.Accepted != 2 || rep.Rejected != 5 {
			t.Fatalf("counts %+v", rep)
		}
	})
	t.Run("ErrOutsideScope", func(t *testing.T) {
		svc, _ := world()
		rep := svc.Ingest(ctx, usage.Options{Source: usage.SourceAPI, Scope: "/platform/prt_2/"}, []usage.Item{
			item("a", "tnt_1", "gb", "1", "2026-10-02T00:00:00Z"),
			item("b", "tnt_3", "gb", "1", "2026-10-02T00:00:00Z"),
		})
		if got := statuses(rep); got[0] != "rejected tenantId:not_found" || got[1] != "rejected subscriptionId:ambiguous" {
			t.Fatalf("outcomes %v", got)
		}
	})
	t.Run("TransientFailuresAreRetried", func(t *testing.T) {
		for name, edit := range map[string]func(*usage.Service){
			"Tenants":  func(s *usage.Service) { s.Tenants.(*fakeTenants).fail = errors.New("throttled") },
			"Resolver": func(s *usage.Service) { s.Resolver.(*fakeResolver).fail = errors.New("timeout") },
			"Catalog":  func(s *usage.Service) { s.Catalog.(*fakeCatalog).fail = errors.New("timeout") },
		} {
			t.Run(name, func(t *testing.T) {
				svc, st := world()
				edit(svc)
				rep := svc.Ingest(ctx, usage.Options{Source: usage.SourceQueue}, []usage.Item{item("a", "tnt_1", "gb", "1", "2026-10-02T00:00:00Z")})
				if got := statuses(rep); got[0] != "retry :retry" || st.Calls != 0 {
					t.Fatalf("outcomes %v, store calls %d", got, st.Calls)
				}
			})
		}
	})
	t.Run("LateAndClosing", func(t *testing.T) {
		svc, st := world()
		rep := svc.Ingest(ctx, usage.Options{Source: usage.SourceStream}, []usage.Item{
			item("a", "tnt_2", "gb", "5", "2026-09-30T23:00:00Z"), // invoiced: late
			item("b", "tnt_2", "gb", "5", "2026-10-02T00:00:00Z"), // open
			item("c", "tnt_1", "gb", "5", "2026-09-20T00:00:00Z"), // ended, not invoiced yet: closing
		})
		if rep.Late != 1 || !rep.Outcomes[0].Late || rep.Outcomes[1].Late || rep.Outcomes[2].Late {
			t.Fatalf("late %+v", rep)
		}
		ch2, _ := st.Changes(ctx, "tnt_2")
		ch1, _ := st.Changes(ctx, "tnt_1")
		if len(ch2) != 1 || !ch2[0].Late || ch2[0].Key.Period.String() != "2026-09" || len(ch1) != 1 || ch1[0].Late {
			t.Fatalf("changes %+v %+v", ch2, ch1)
		}
	})
	t.Run("ClosingMargin", func(t *testing.T) {
		svc, st := world()
		svc.Now = func() time.Time { return time.Date(2026, 10, 31, 23, 45, 0, 0, time.UTC) }
		svc.Ingest(ctx, usage.Options{Source: usage.SourceAPI}, []usage.Item{item("a", "tnt_1", "gb", "1", "2026-10-31T23:40:00Z")})
		if ch, _ := st.Changes(ctx, "tnt_1"); len(ch) != 1 {
			t.Fatalf("usage 15 minutes before the period ends is not flagged: %+v", ch)
		}
	})
	t.Run("Thresholds", func(t *testing.T) {
		svc, st := world()
		svc.Ingest(ctx, usage.Options{Source: usage.SourceAPI}, []usage.Item{
			item("a", "tnt_1", "gb", "6", "2026-10-02T00:00:00Z"), item("b", "tnt_1", "gb", "6", "2026-10-02T00:00:00Z")})
		svc.Ingest(ctx, usage.Options{Source: usage.SourceAPI}, []usage.Item{item("c", "tnt_1", "gb", "6", "2026-10-02T00:00:00Z")})
		evs := st.Events()
		if len(evs) != 1 || evs[0].Type != outbox.UsageThresholdReached || evs[0].Path != "/platform/prt_1/tnt_1/" {
			t.Fatalf("events %+v", evs)
		}
	})
}

func principal(role access.Role, path string) access.Principal {
	return access.Principal{UserID: "usr_1", Role: role, ScopePath: path}
}

func TestList(t *testing.T) {
	ctx := context.Background()
	svc, _ := world()
	svc.Ingest(ctx, usage.Options{Source: usage.SourceAPI}, []usage.Item{
		item("a", "tnt_1", "gb", "1.5", "2026-10-02T00:00:00Z"),
		item("b", "tnt_2", "gb", "2", "2026-10-02T00:00:00Z"),
		item("c", "tnt_2", "vm-hours", "3", "2026-10-02T00:00:00Z"),
		item("d", "tnt_1", "gb", "4", "2026-09-02T00:00:00Z"),
	})
	admin := principal(access.PlatformAdmin, "/platform/")
	list := func(p access.Principal, filters map[string]string, pageSize int, after *listing.Cursor) (*usage.Answer, *listing.Cursor, error) {
		q := listing.Query{Filters: filters, PageSize: pageSize}
		return svc.List(ctx, p, &q, after)
	}
	t.Run("OK", func(t *testing.T) {
		ans, next, err := list(admin, nil, 0, nil)
		if err != nil || next != nil {
			t.Fatal(err, next)
		}
		if ans.Period.String() != "2026-10" || len(ans.Items) != 3 {
			t.Fatalf("answer %+v", ans)
		}
		first := ans.Items[0]
		if first.SubscriptionID != "sub_1" || first.Quantity.String() != "1.5" || first.Charge == nil || first.Charge.Amount.String() != "0.15" || first.Charge.Currency != "EUR" {
			t.Fatalf("first %+v", first)
		}
	})
	t.Run("Pages", func(t *testing.T) {
		var seen []string
		var after *listing.Cursor
		for range 5 {
			ans, next, err := list(admin, nil, 2, after)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range ans.Items {
				seen = append(seen, l.SubscriptionID+"/"+l.SKU)
			}
			if after = next; after == nil {
				break
			}
		}
		if fmt.Sprint(seen) != "[sub_1/gb sub_2/gb sub_2/vm-hours]" {
			t.Fatalf("pages %v", seen)
		}
	})
	t.Run("Filters", func(t *testing.T) {
		cases := []struct {
			name    string
			p       access.Principal
			filters map[string]string
			want    string
		}{
			{"Period", admin, map[string]string{"period": "2026-09"}, "[sub_old:4]"},
			{"Tenant", admin, map[string]string{"tenantId": "tnt_2"}, "[sub_2:2 sub_2:3]"},
			{"Subscription", admin, map[string]string{"subscriptionId": "sub_2"}, "[sub_2:2 sub_2:3]"},
			{"BothDisagree", admin, map[string]string{"subscriptionId": "sub_2", "tenantId": "tnt_1"}, "[]"},
			{"PartnerSubtree", principal(access.PartnerViewer, "/platform/prt_1/"), nil, "[sub_1:1.5 sub_2:2 sub_2:3]"},
			{"TenantOwn", principal(access.TenantViewer, "/platform/prt_1/tnt_1/"), nil, "[sub_1:1.5]"},
			{"EmptyPeriod", admin, map[string]string{"period": "2025-01"}, "[]"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				ans, _, err := list(tc.p, tc.filters, 0, nil)
				if err != nil {
					t.Fatal(err)
				}
				var got []string
				for _, l := range ans.Items {
					got = append(got, l.SubscriptionID+":"+l.Quantity.String())
				}
				if fmt.Sprint(got) != tc.want && !(tc.want == "[]" && len(got) == 0) {
					t.Fatalf("items %v, want %v", got, tc.want)
				}
			})
		}
	})
	t.Run("Errors", func(t *testing.T) {
		cases := []struct {
			name    string
			p       access.Principal
			filters map[string]string
			kind    apperr.Kind
		}{
			{"ErrForbidden", access.Principal{UserID: "u", Role: "nobody", ScopePath: "/platform/"}, nil, apperr.Forbidden},
			{"ErrBadPeriod", admin, map[string]string{"period": "2026-13"}, apperr.Invalid},
			{"ErrTenantOutsideSubtree", principal(access.PartnerAdmin, "/platform/prt_2/"), map[string]string{"tenantId": "tnt_1"}, apperr.NotFound},
			{"ErrSubscriptionOutsideSubtree", principal(access.PartnerAdmin, "/platform/prt_2/"), map[string]string{"subscriptionId": "sub_1"}, apperr.NotFound},
			{"ErrUnknownTenant", admin, map[string]string{"tenantId": "tnt_404"}, apperr.NotFound},
			{"ErrUnknownSubscription", admin, map[string]string{"subscriptionId": "sub_404"}, apperr.NotFound},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				if _, _, err := list(tc.p, tc.filters, 0, nil); !apperr.Is(err, tc.kind) {
					t.Fatalf("err %v, want %s", err, tc.kind)
				}
			})
		}
	})
}

func TestMemStoreContract(t *testing.T) {
	usagetest.Run(t, func(t *testing.T) usagetest.Harness {
		st := &usagetest.MemStore{}
		return usagetest.Harness{Store: st, Events: func(_ testing.TB, typ string) []outbox.Event {
			var out []outbox.Event
			for _, e := range st.Events() {
				if e.Type == typ {
					out = append(out, e)
				}
			}
			return out
		}}
	})
}
