package subscriptions_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// fake is an in-memory subscriptions.Store, Entities and Plans; one mutex stands in for the
// transactions and the conditions are checked as the DynamoDB store checks them.
type fake struct {
	mu       sync.Mutex
	subs     map[string]*subscriptions.Subscription
	history  map[string][]subscriptions.HistoryEntry
	events   []outbox.Event
	entities map[string]*hierarchy.Entity
	plans    map[string]*catalog.Plan
	// beforeCreate, when set, runs once inside the next CreateSubscription, before the conditions
	// are checked: a concurrent change.
	beforeCreate func()
	// beforeUpdate, likewise, runs once inside the next UpdateSubscription that has a change to
	// write, before its conditions are checked.
	beforeUpdate func()
}

func newFake() *fake {
	return &fake{subs: map[string]*subscriptions.Subscription{}, history: map[string][]subscriptions.HistoryEntry{},
		entities: map[string]*hierarchy.Entity{
			"T1": {ID: "T1", Type: access.Tenant, Path: "/platform/D1/P1/T1/", Currency: "EUR", Status: hierarchy.StatusActive},
			"T2": {ID: "T2", Type: access.Tenant, Path: "/platform/D1/P2/T2/", Currency: "EUR", Status: hierarchy.StatusActive},
			"TX": {ID: "TX", Type: access.Tenant, Path: "/platform/D1/P1/TX/", Currency: "EUR", Status: hierarchy.StatusCancelled},
			"TU": {ID: "TU", Type: access.Tenant, Path: "/platform/D1/P1/TU/", Currency: "USD", Status: hierarchy.StatusActive},
			"P1": {ID: "P1", Type: access.Partner, Path: "/platform/D1/P1/", Currency: "EUR", Status: hierarchy.StatusActive},
		},
		plans: map[string]*catalog.Plan{
			"basic":   {ID: "basic", Currency: "EUR", Status: catalog.PlanPublished},
			"pro":     {ID: "pro", Currency: "EUR", Status: catalog.PlanPublished},
			"old":     {ID: "old", Currency: "EUR", Status: catalog.PlanRetired},
			"draft":   {ID: "draft", Currency: "EUR", Status: catalog.PlanDraft},
			"usd-pro": {ID: "usd-pro", Currency: "USD", Status: catalog.PlanPublished},
		}}
}

// nb is a tenant's count of subscriptions ever created.
func nb(e *hierarchy.Entity) int {
	if e.NbOfSubscriptions == nil {
		return 0
	}
	return *e.NbOfSubscriptions
}

func (f *fake) GetEntity(_ context.Context, id string) (*hierarchy.Entity, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.entities[id]
	if !ok {
		return nil, apperr.NotFoundf("no entity")
	}
	c := *e
	return &c, nil
}

func (f *fake) GetPlan(_ context.Context, id string) (*catalog.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.plans[id]
	if !ok {
		return nil, apperr.NotFoundf("no plan")
	}
	c := *p
	return &c, nil
}

func (f *fake) CreateSubscription(_ context.Context, s *subscriptions.Subscription, c subscriptions.Change, tenantSubs int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.beforeCreate != nil {
		hook := f.beforeCreate
		f.beforeCreate = nil
		hook()
	}
	t := f.entities[s.TenantID]
	if t == nil || t.Status == hierarchy.StatusCancelled || (tenantSubs >= 0 && nb(t) != tenantSubs) ||
		(t.InvoicedThrough != "" && s.StartDate.Format("2006-01") <= t.InvoicedThrough) {
		return apperr.New(apperr.Conflict, "tenant_changed", "changed")
	}
	if c.PublishedPlan != "" && f.plans[c.PublishedPlan].Status != catalog.PlanPublished {
		return apperr.New(apperr.Unprocessable, "plan_not_published", "not published")
	}
	s.Version = 1
	c.History.Seq = 1
	cp := *s
	f.subs[s.ID] = &cp
	f.history[s.ID] = append(f.history[s.ID], c.History)
	f.events = append(f.events, c.Events...)
	n := nb(t) + 1
	t.NbOfSubscriptions = &n
	t.ActiveSubscriptions += c.ActiveDelta
	return nil
}

func (f *fake) GetSubscription(_ context.Context, id string) (*subscriptions.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.subs[id]
	if !ok {
		return nil, apperr.NotFoundf("no subscription")
	}
	c := *s
	return &c, nil
}

func (f *fake) ListSubscriptions(_ context.Context, prefix string) ([]*subscriptions.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*subscriptions.Subscription
	for _, s := range f.subs {
		if len(s.TenantPath) >= len(prefix) && s.TenantPath[:len(prefix)] == prefix {
			c := *s
			out = append(out, &c)
		}
	}
	return out, nil
}

func (f *fake) UpdateSubscription(_ context.Context, id string, fn func(*subscriptions.Subscription) (*subscriptions.Change, error)) (*subscriptions.Subscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur, ok := f.subs[id]
	if !ok {
		return nil, apperr.NotFoundf("no subscription")
	}
	next := *cur
	c, err := fn(&next)
	if err != nil || c == nil {
		cp := *cur
		return &cp, err
	}
	if f.beforeUpdate != nil {
		hook := f.beforeUpdate
		f.beforeUpdate = nil
		hook()
	}
	if c.PublishedPlan != "" && f.plans[c.PublishedPlan].Status != catalog.PlanPublished {
		return nil, apperr.New(apperr.Unprocessable, "plan_not_published", "not published")
	}
	next.Version++
	c.History.Seq = next.Version
	stored := next
	f.subs[id] = &stored
	f.history[id] = append(f.history[id], c.History)
	f.events = append(f.events, c.Events...)
	f.entities[next.TenantID].ActiveSubscriptions += c.ActiveDelta
	return &next, nil
}

func (f *fake) History(_ context.Context, id string) ([]subscriptions.HistoryEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.history[id]), nil
}

func (f *fake) eventsOf(typ string) []subscriptions.EventDetail {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []subscriptions.EventDetail
	for _, e := range f.events {
		if e.Type == typ {
			var d subscriptions.EventDetail
			_ = json.Unmarshal(e.Detail, &d)
			out = append(out, d)
		}
	}
	return out
}

var (
	platformAdmin = access.Principal{UserID: "usr_admin", Role: access.PlatformAdmin, ScopeID: "platform", ScopeType: access.Platform, ScopePath: "/platform/"}
	partner1      = access.Principal{UserID: "usr_p1", Role: access.PartnerAdmin, ScopeID: "P1", ScopeType: access.Partner, ScopePath: "/platform/D1/P1/"}
	tenant1       = access.Principal{UserID: "usr_t1", Role: access.TenantAdmin, ScopeID: "T1", ScopeType: access.Tenant, ScopePath: "/platform/D1/P1/T1/"}
	tenantViewer1 = access.Principal{UserID: "usr_tv1", Role: access.TenantViewer, ScopeID: "T1", ScopeType: access.Tenant, ScopePath: "/platform/D1/P1/T1/"}
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newService() (*subscriptions.Service, *fake, *clock) {
	f := newFake()
	c := &clock{t: time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)}
	return &subscriptions.Service{Store: f, Entities: f, Plans: f, PlatformCurrency: "EUR", Now: c.now}, f, c
}

func mustCreate(t *testing.T, s *subscriptions.Service, p access.Principal, in subscriptions.CreateInput) *subscriptions.Subscription {
	t.Helper()
	sub, err := s.Create(context.Background(), p, in)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

func fields(err error) map[string]bool {
	out := map[string]bool{}
	for _, f := range apperr.As(err).Fields {
		out[f.Field+":"+f.Code] = true
	}
	return out
}

func TestCreate(t *testing.T) {
	ctx := context.Background()
	s, f, _ := newService()
	t.Run("OK/FirstSubscriptionEmitsCustomerCreated", func(t *testing.T) {
		first := mustCreate(t, s, partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "pro", Quantity: "10"})
		mustCreate(t, s, tenant1, subscriptions.CreateInput{PlanID: "basic", Quantity: "2"}) // tenant defaults to the caller's
		evs := f.eventsOf(outbox.CustomerCreated)
		if len(evs) != 1 || evs[0].SubscriptionID != first.ID || evs[0].Actor != "usr_p1" || !evs[0].Quantity.Equal(money.NewFromInt(10)) {
			t.Fatalf("customer.created %+v", evs)
		}
		if tn := f.entities["T1"]; nb(tn) != 2 || tn.ActiveSubscriptions != 2 {
			t.Fatalf("counters %d/%d", nb(tn), tn.ActiveSubscriptions)
		}
		if first.Status != subscriptions.StatusActive || !first.StartDate.Equal(time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC)) {
			t.Fatalf("%+v", first)
		}
	})
	t.Run("OK/ConcurrentFirstSubscription", func(t *testing.T) {
		// Another first subscription of T2 commits between our read and our write: ours retries
		// and is no longer the first, so exactly one customer.created is written.
		f.beforeCreate = func() { n := nb(f.entities["T2"]) + 1; f.entities["T2"].NbOfSubscriptions = &n }
		mustCreate(t, s, platformAdmin, subscriptions.CreateInput{TenantID: "T2", PlanID: "pro", Quantity: "1"})
		for _, e := range f.eventsOf(outbox.CustomerCreated) {
			if e.TenantID == "T2" {
				t.Fatal("customer.created written for a tenant that already had a subscription")
			}
		}
	})
	for _, tc := range []struct {
		name string
		p    access.Principal
		in   subscriptions.CreateInput
		kind apperr.Kind
		want string
	}{
		{"ErrForbidden", tenantViewer1, subscriptions.CreateInput{PlanID: "pro", Quantity: "1"}, apperr.Forbidden, ""},
		{"ErrQuantityNotWhole", partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "pro", Quantity: "1.5"}, apperr.Invalid, "quantity:invalid"},
		{"ErrQuantityZero", partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "pro", Quantity: "0"}, apperr.Invalid, "quantity:out_of_range"},
		{"ErrTenantRequired", partner1, subscriptions.CreateInput{PlanID: "pro", Quantity: "1"}, apperr.Invalid, "tenantId:required"},
		{"ErrTenantOutsideSubtree", partner1, subscriptions.CreateInput{TenantID: "T2", PlanID: "pro", Quantity: "1"}, apperr.Unprocessable, "tenantId:not_found"},
		{"ErrNotATenant", partner1, subscriptions.CreateInput{TenantID: "P1", PlanID: "pro", Quantity: "1"}, apperr.Unprocessable, "tenantId:not_found"},
		{"ErrTenantCancelled", partner1, subscriptions.CreateInput{TenantID: "TX", PlanID: "pro", Quantity: "1"}, apperr.Unprocessable, "tenantId:cancelled"},
		{"ErrPlanRetired", partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "old", Quantity: "1"}, apperr.Unprocessable, "planId:plan_retired"},
		{"ErrPlanDraftInvisible", partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "draft", Quantity: "1"}, apperr.Unprocessable, "planId:not_found"},
		{"ErrPlanDraft", platformAdmin, subscriptions.CreateInput{TenantID: "T1", PlanID: "draft", Quantity: "1"}, apperr.Unprocessable, "planId:plan_not_published"},
		{"ErrPlanCurrency", partner1, subscriptions.CreateInput{TenantID: "TU", PlanID: "pro", Quantity: "1"}, apperr.Unprocessable, "planId:currency_mismatch"},
		{"ErrStartInFuture", partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "pro", Quantity: "1", StartDate: "2026-12-01"}, apperr.Unprocessable, "startDate:in_future"},
		{"ErrStartDate", partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "pro", Quantity: "1", StartDate: "yesterday"}, apperr.Invalid, "startDate:invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Create(ctx, tc.p, tc.in)
			if apperr.KindOf(err) != tc.kind || (tc.want != "" && !fields(err)[tc.want]) {
				t.Fatalf("got %v", err)
			}
		})
	}
	t.Run("ErrStartInInvoicedPeriod", func(t *testing.T) {
		f.entities["T1"].InvoicedThrough = "2026-10"
		defer func() { f.entities["T1"].InvoicedThrough = "" }()
		_, err := s.Create(ctx, partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "pro", Quantity: "1", StartDate: "2026-10-31"})
		if !fields(err)["startDate:period_invoiced"] {
			t.Fatalf("got %v", err)
		}
		if _, err := s.Create(ctx, partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "pro", Quantity: "1", StartDate: "2026-11-01"}); err != nil {
			t.Fatalf("the first period after the invoiced ones is open: %v", err)
		}
	})
}

func TestLifecycle(t *testing.T) {
	ctx := context.Background()
	s, f, clk := newService()
	sub := mustCreate(t, s, partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "basic", Quantity: "5", StartDate: "2026-10-11"})
	q := func(v string) *money.Text { x := money.Text(v); return &x }
	plan := func(v string) *string { return &v }

	t.Run("ErrScoping", func(t *testing.T) {
		other := access.Principal{UserID: "usr_p2", Role: access.PartnerAdmin, ScopeID: "P2", ScopeType: access.Partner, ScopePath: "/platform/D1/P2/"}
		if _, err := s.Get(ctx, other, sub.ID); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("got %v", err)
		}
		if _, err := s.Update(ctx, other, sub.ID, subscriptions.UpdateInput{Quantity: q("6")}); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("OK/Quantity", func(t *testing.T) {
		got, err := s.Update(ctx, tenant1, sub.ID, subscriptions.UpdateInput{Quantity: q("7")})
		if err != nil || !got.Quantity.Equal(money.NewFromInt(7)) {
			t.Fatalf("%+v %v", got, err)
		}
		if len(f.eventsOf(outbox.CustomerUpgraded)) != 0 {
			t.Fatal("a seat change is not an upgrade")
		}
		if _, err := s.Update(ctx, tenant1, sub.ID, subscriptions.UpdateInput{Quantity: q("7.0")}); err != nil {
			t.Fatal(err)
		}
		if n := len(f.history[sub.ID]); n != 2 {
			t.Fatalf("an update to the same values records nothing: %d entries", n)
		}
	})
	t.Run("ErrPlanChange", func(t *testing.T) {
		for id, want := range map[string]string{"old": "planId:plan_retired", "usd-pro": "planId:currency_mismatch", "nope": "planId:not_found"} {
			if _, err := s.Update(ctx, partner1, sub.ID, subscriptions.UpdateInput{PlanID: plan(id)}); !fields(err)[want] {
				t.Errorf("%s: %v", id, err)
			}
		}
	})
	t.Run("ErrPlanRetiredBeforeCommit", func(t *testing.T) {
		// The new plan is retired after the service checked it and before the write commits:
		// the write fails on its condition and leaves neither the change nor its event.
		entries := len(f.history[sub.ID])
		f.beforeUpdate = func() { f.plans["pro"].Status = catalog.PlanRetired }
		defer func() { f.mu.Lock(); f.plans["pro"].Status = catalog.PlanPublished; f.mu.Unlock() }()
		_, err := s.Update(ctx, partner1, sub.ID, subscriptions.UpdateInput{PlanID: plan("pro")})
		if apperr.KindOf(err) != apperr.Unprocessable || !fields(err)["planId:plan_not_published"] {
			t.Fatalf("got %v", err)
		}
		got, _ := f.GetSubscription(ctx, sub.ID)
		if evs := f.eventsOf(outbox.CustomerUpgraded); len(evs) != 0 || got.PlanID != "basic" || len(f.history[sub.ID]) != entries {
			t.Fatalf("a failed change left %d events, plan %s, %d history entries", len(evs), got.PlanID, len(f.history[sub.ID]))
		}
	})
	t.Run("OK/PlanChangeEmitsUpgraded", func(t *testing.T) {
		if _, err := s.Update(ctx, partner1, sub.ID, subscriptions.UpdateInput{PlanID: plan("pro"), Quantity: q("8")}); err != nil {
			t.Fatal(err)
		}
		evs := f.eventsOf(outbox.CustomerUpgraded)
		if len(evs) != 1 || evs[0].PlanID != "pro" || evs[0].PreviousPlanID != "basic" || !evs[0].Quantity.Equal(money.NewFromInt(8)) {
			t.Fatalf("%+v", evs)
		}
	})
	t.Run("OK/LicenseKey", func(t *testing.T) {
		got, err := s.SetLicenseKey(ctx, tenant1, sub.ID, subscriptions.LicenseKeyInput{LicenseKey: "AAAA-BBBB"})
		if err != nil || got.LicenseKey == nil || *got.LicenseKey != "AAAA-BBBB" {
			t.Fatalf("%+v %v", got, err)
		}
		if _, err := s.SetLicenseKey(ctx, tenant1, sub.ID, subscriptions.LicenseKeyInput{LicenseKey: " "}); !fields(err)["licenseKey:required"] {
			t.Fatalf("blank key: %v", err)
		}
	})
	t.Run("OK/CancelAtPeriodEnd", func(t *testing.T) {
		got, err := s.Cancel(ctx, partner1, sub.ID, subscriptions.CancelPeriodEnd)
		end := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
		if err != nil || got.Status != subscriptions.StatusActive || got.CancelAt == nil || !got.CancelAt.Equal(end) {
			t.Fatalf("%+v %v", got, err)
		}
		if f.entities["T1"].ActiveSubscriptions != 1 {
			t.Fatal("still active until the end of the period")
		}
		again, err := s.Cancel(ctx, partner1, sub.ID, subscriptions.CancelPeriodEnd)
		if err != nil || len(f.eventsOf(outbox.CustomerCancelled)) != 1 || !again.CancelAt.Equal(end) {
			t.Fatalf("scheduling twice changes nothing: %v, %d events", err, len(f.eventsOf(outbox.CustomerCancelled)))
		}
		list, _, err := s.List(ctx, partner1, listing.Query{Filters: map[string]string{"status": "active"}}, nil)
		if err != nil || len(list) != 1 {
			t.Fatalf("active before the end: %d %v", len(list), err)
		}

		clk.t = end // the period ends
		list, _, err = s.List(ctx, partner1, listing.Query{Filters: map[string]string{"status": "cancelled"}}, nil)
		if err != nil || len(list) != 1 || list[0].Status != subscriptions.StatusCancelled {
			t.Fatalf("cancelled after the end: %+v %v", list, err)
		}
		if f.entities["T1"].ActiveSubscriptions != 0 {
			t.Fatalf("active count %d after the cancellation took effect", f.entities["T1"].ActiveSubscriptions)
		}
		if _, err := s.Get(ctx, partner1, sub.ID); err != nil {
			t.Fatal(err)
		}
		if f.entities["T1"].ActiveSubscriptions != 0 {
			t.Fatal("the cancellation is recorded once")
		}
		if _, err := s.Update(ctx, partner1, sub.ID, subscriptions.UpdateInput{Quantity: q("9")}); apperr.As(err).Code != "subscription_cancelled" {
			t.Fatalf("update after cancellation: %v", err)
		}
		if _, err := s.Cancel(ctx, partner1, sub.ID, ""); apperr.As(err).Code != "subscription_cancelled" {
			t.Fatalf("cancel twice: %v", err)
		}
	})
	t.Run("OK/History", func(t *testing.T) {
		h, _, err := s.History(ctx, tenantViewer1, sub.ID, listing.Query{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, e := range h {
			actions = append(actions, e.Action+"/"+e.Actor)
		}
		want := []string{"create/usr_p1", "update/usr_t1", "update/usr_p1", "license_key/usr_t1", "cancel/usr_p1", "cancel_effective/system"}
		if !slices.Equal(actions, want) {
			t.Fatalf("history %v, want %v", actions, want)
		}
		if h[0].Before != nil || !h[0].After.Quantity.Equal(money.NewFromInt(5)) {
			t.Fatalf("create entry %+v", h[0])
		}
		if h[2].Before.PlanID != "basic" || h[2].After.PlanID != "pro" || !h[2].Before.Quantity.Equal(money.NewFromInt(7)) {
			t.Fatalf("plan change entry %+v / %+v", h[2].Before, h[2].After)
		}
		if h[5].Before.Status != subscriptions.StatusActive || h[5].After.Status != subscriptions.StatusCancelled {
			t.Fatalf("cancel_effective %+v / %+v", h[5].Before, h[5].After)
		}
	})
	t.Run("OK/CancelNow", func(t *testing.T) {
		other := mustCreate(t, s, partner1, subscriptions.CreateInput{TenantID: "T1", PlanID: "pro", Quantity: "1"})
		before := f.entities["T1"].ActiveSubscriptions
		got, err := s.Cancel(ctx, partner1, other.ID, "now")
		if err != nil || got.Status != subscriptions.StatusCancelled || !got.CancelAt.Equal(clk.t) {
			t.Fatalf("%+v %v", got, err)
		}
		if f.entities["T1"].ActiveSubscriptions != before-1 {
			t.Fatal("active count not decremented")
		}
		if _, err := s.Cancel(ctx, partner1, other.ID, "tomorrow"); !fields(err)["at:invalid"] {
			t.Fatalf("bad mode: %v", err)
		}
	})
}

func TestListFilters(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newService()
	a := mustCreate(t, s, platformAdmin, subscriptions.CreateInput{TenantID: "T1", PlanID: "pro", Quantity: "1"})
	b := mustCreate(t, s, platformAdmin, subscriptions.CreateInput{TenantID: "T2", PlanID: "basic", Quantity: "1"})
	ids := func(p access.Principal, filters map[string]string) []string {
		t.Helper()
		items, _, err := s.List(ctx, p, listing.Query{Filters: filters}, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range items {
			out = append(out, it.ID)
		}
		slices.Sort(out)
		return out
	}
	both := []string{a.ID, b.ID}
	slices.Sort(both)
	for _, tc := range []struct {
		name    string
		p       access.Principal
		filters map[string]string
		want    []string
	}{
		{"OK/All", platformAdmin, nil, both},
		{"OK/Partner", partner1, nil, []string{a.ID}},
		{"OK/ParentSubtree", platformAdmin, map[string]string{"parent": "P1"}, []string{a.ID}},
		{"OK/Plan", platformAdmin, map[string]string{"planId": "basic"}, []string{b.ID}},
		{"OK/Tenant", platformAdmin, map[string]string{"tenantId": "T2"}, []string{b.ID}},
		{"OK/TenantOutsideParent", platformAdmin, map[string]string{"tenantId": "T2", "parent": "P1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ids(tc.p, tc.filters); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("ErrTenantOutsideSubtree", func(t *testing.T) {
		if _, _, err := s.List(ctx, partner1, listing.Query{Filters: map[string]string{"tenantId": "T2"}}, nil); !apperr.Is(err, apperr.NotFound) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("ErrStatus", func(t *testing.T) {
		if _, _, err := s.List(ctx, partner1, listing.Query{Filters: map[string]string{"status": "paused"}}, nil); !fields(err)["status:invalid"] {
			t.Fatalf("got %v", err)
		}
	})
}

func TestSettleTenant(t *testing.T) {
	ctx := context.Background()
	s, f, clk := newService()
	sub := mustCreate(t, s, platformAdmin, subscriptions.CreateInput{TenantID: "T1", PlanID: "pro", Quantity: "1"})
	if _, err := s.Cancel(ctx, platformAdmin, sub.ID, subscriptions.CancelPeriodEnd); err != nil {
		t.Fatal(err)
	}
	if err := s.SettleTenant(ctx, f.entities["T1"]); err != nil || f.entities["T1"].ActiveSubscriptions != 1 {
		t.Fatalf("nothing is due yet: %v %d", err, f.entities["T1"].ActiveSubscriptions)
	}
	clk.t = clk.t.AddDate(0, 1, 0)
	if err := s.SettleTenant(ctx, f.entities["T1"]); err != nil || f.entities["T1"].ActiveSubscriptions != 0 {
		t.Fatalf("due: %v %d", err, f.entities["T1"].ActiveSubscriptions)
	}
	if err := s.SettleTenant(ctx, f.entities["P1"]); err != nil {
		t.Fatal(err)
	}
}
