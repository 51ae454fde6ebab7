package integration_test

import (
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/subscriptions"
)

type subOut struct {
	ID         string     `json:"id"`
	TenantID   string     `json:"tenantId"`
	PlanID     string     `json:"planId"`
	Quantity   string     `json:"quantity"`
	Status     string     `json:"status"`
	StartDate  time.Time  `json:"startDate"`
	CancelAt   *time.Time `json:"cancelAt"`
	LicenseKey *string    `json:"licenseKey"`
}

type stateOut struct {
	PlanID     string     `json:"planId"`
	Quantity   string     `json:"quantity"`
	Status     string     `json:"status"`
	CancelAt   *time.Time `json:"cancelAt"`
	LicenseKey *string    `json:"licenseKey"`
}

type historyOut struct {
	Seq    int64     `json:"seq"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Before *stateOut `json:"before"`
	After  *stateOut `json:"after"`
}

// subEvents returns the outbox events of one type about a subscription, oldest first.
func subEvents(t *testing.T, typ, subID string) []subscriptions.EventDetail {
	t.Helper()
	evs, err := deps.Store.Events(t.Context(), typ)
	if err != nil {
		t.Fatal(err)
	}
	var out []subscriptions.EventDetail
	for _, e := range evs {
		var d subscriptions.EventDetail
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if d.SubscriptionID == subID {
			out = append(out, d)
		}
	}
	return out
}

func subIDs(subs []subOut) []string {
	var out []string
	for _, s := range subs {
		out = append(out, s.ID)
	}
	slices.Sort(out)
	return out
}

func sorted(ids ...string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return out
}

func TestSubscriptionLifecycle(t *testing.T) {
	a := admin(t)
	d := create(t, a, "distributors", map[string]any{"name": "D"})
	p := create(t, a, "partners", map[string]any{"name": "P", "parent": parent("distributor", d.ID)})
	p2 := create(t, a, "partners", map[string]any{"name": "P2", "parent": parent("distributor", d.ID)})
	tn := create(t, a, "tenants", map[string]any{"name": "T", "parent": parent("partner", p.ID)})
	tn2 := create(t, a, "tenants", map[string]any{"name": "T2", "parent": parent("partner", p2.ID)})
	k := mkSKU(t, a, storageSKU(uniq("storage-gb")))
	pro := mkPlan(t, a, uniq("pro"), true, k.ID)
	max := mkPlan(t, a, uniq("max"), true, k.ID)
	draft := mkPlan(t, a, uniq("draft"), false)
	partnerUser, partnerAdmin := mkUser(t, a, "partner_admin", p.ID)
	tenantUser, tenantAdmin := mkUser(t, a, "tenant_admin", tn.ID)
	_, otherPartner := mkUser(t, a, "partner_admin", p2.ID)

	// SPEC 15: T subscribes to pro with 10 seats on 2026-10-11 (an import: earlier than now).
	var s1 subOut
	partnerAdmin.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": pro.ID, "quantity": 10,
		"startDate": "2026-10-11"}, &s1)
	if s1.Status != "active" || s1.Quantity != "10" || !s1.StartDate.Equal(time.Date(2026, 10, 11, 0, 0, 0, 0, time.UTC)) ||
		s1.TenantID != tn.ID || s1.CancelAt != nil || s1.LicenseKey != nil {
		t.Fatalf("created %+v", s1)
	}
	// The tenant's second subscription, by the tenant itself (tenantId defaults to its own).
	var s2 subOut
	tenantAdmin.must(201, "POST", "/api/v1/subscriptions", map[string]any{"planId": max.ID, "quantity": "2"}, &s2)

	t.Run("CustomerCreatedOnFirstOnly", func(t *testing.T) {
		evs := subEvents(t, outbox.CustomerCreated, s1.ID)
		if len(evs) != 1 || evs[0].TenantID != tn.ID || evs[0].PlanID != pro.ID || evs[0].Actor != partnerUser.ID || evs[0].Quantity.String() != "10" {
			t.Fatalf("customer.created %+v", evs)
		}
		if evs := subEvents(t, outbox.CustomerCreated, s2.ID); len(evs) != 0 {
			t.Fatalf("second subscription emitted customer.created: %+v", evs)
		}
		var e entity
		a.must(200, "GET", "/api/v1/tenants/"+tn.ID, nil, &e)
		if e.NbOfSubscriptions == nil || *e.NbOfSubscriptions != 2 {
			t.Fatalf("nbOfSubscriptions %v", e.NbOfSubscriptions)
		}
	})
	t.Run("CreateValidation", func(t *testing.T) {
		for _, tc := range []struct {
			name        string
			c           client
			body        map[string]any
			status      int
			code, field string
		}{
			{"ErrQuantityZero", partnerAdmin, map[string]any{"tenantId": tn.ID, "planId": pro.ID, "quantity": 0}, 400, "out_of_range", "quantity"},
			{"ErrQuantityFraction", partnerAdmin, map[string]any{"tenantId": tn.ID, "planId": pro.ID, "quantity": "1.5"}, 400, "invalid", "quantity"},
			{"ErrQuantityMissing", partnerAdmin, map[string]any{"tenantId": tn.ID, "planId": pro.ID}, 400, "required", "quantity"},
			{"ErrDraftPlan", a, map[string]any{"tenantId": tn.ID, "planId": draft.ID, "quantity": 1}, 422, "plan_not_published", "planId"},
			{"ErrDraftPlanUnseen", partnerAdmin, map[string]any{"tenantId": tn.ID, "planId": draft.ID, "quantity": 1}, 422, "not_found", "planId"},
			{"ErrTenantOutsideSubtree", partnerAdmin, map[string]any{"tenantId": tn2.ID, "planId": pro.ID, "quantity": 1}, 422, "not_found", "tenantId"},
			{"ErrStartInFuture", partnerAdmin, map[string]any{"tenantId": tn.ID, "planId": pro.ID, "quantity": 1, "startDate": monthStart(2)}, 422, "in_future", "startDate"},
			{"ErrUnknownField", partnerAdmin, map[string]any{"tenantId": tn.ID, "planId": pro.ID, "quantity": 1, "seats": 1}, 400, "unknown_field", "seats"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				env := tc.c.do("POST", "/api/v1/subscriptions", tc.body)
				if env.status != tc.status || !env.hasError(tc.code, tc.field) {
					t.Fatalf("got %s", env.raw)
				}
			})
		}
	})
	t.Run("Update", func(t *testing.T) {
		var got subOut
		tenantAdmin.must(200, "PUT", "/api/v1/subscriptions/"+s1.ID, map[string]any{"quantity": 12}, &got)
		if got.Quantity != "12" || got.PlanID != pro.ID {
			t.Fatalf("%+v", got)
		}
		if evs := subEvents(t, outbox.CustomerUpgraded, s1.ID); len(evs) != 0 {
			t.Fatalf("a seat change is no upgrade: %+v", evs)
		}
		partnerAdmin.must(200, "PUT", "/api/v1/subscriptions/"+s1.ID, map[string]any{"planId": max.ID}, &got)
		evs := subEvents(t, outbox.CustomerUpgraded, s1.ID)
		if got.PlanID != max.ID || len(evs) != 1 || evs[0].PreviousPlanID != pro.ID || evs[0].PlanID != max.ID || evs[0].Quantity.String() != "12" {
			t.Fatalf("customer.upgraded %+v", evs)
		}
		env := partnerAdmin.do("PUT", "/api/v1/subscriptions/"+s1.ID, map[string]any{"planId": draft.ID, "tenantId": tn2.ID})
		if env.status != 400 || !env.hasError("immutable", "tenantId") {
			t.Fatalf("got %s", env.raw)
		}
		if env := otherPartner.do("PUT", "/api/v1/subscriptions/"+s1.ID, map[string]any{"quantity": 1}); env.status != 404 {
			t.Fatalf("another partner's subscription: %s", env.raw)
		}
	})
	t.Run("LicenseKey", func(t *testing.T) {
		var got subOut
		tenantAdmin.must(200, "PUT", "/api/v1/subscriptions/"+s1.ID+"/license-key", map[string]any{"licenseKey": "KEY-1"}, &got)
		tenantAdmin.must(200, "PUT", "/api/v1/subscriptions/"+s1.ID+"/license-key", map[string]any{"licenseKey": "KEY-2"}, &got)
		if got.LicenseKey == nil || *got.LicenseKey != "KEY-2" {
			t.Fatalf("%+v", got)
		}
		if env := tenantAdmin.do("PUT", "/api/v1/subscriptions/"+s1.ID+"/license-key", map[string]any{"licenseKey": ""}); env.status != 400 || !env.hasError("required", "licenseKey") {
			t.Fatalf("got %s", env.raw)
		}
	})
	t.Run("Filters", func(t *testing.T) {
		var s3 subOut
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn2.ID, "planId": pro.ID, "quantity": 1}, &s3)
		for _, tc := range []struct {
			name  string
			c     client
			query string
			want  []string
		}{
			{"Tenant", a, "tenantId=" + tn.ID, sorted(s1.ID, s2.ID)},
			{"Plan", a, "parent=" + d.ID + "&planId=" + pro.ID, []string{s3.ID}},
			{"ParentDistributor", a, "parent=" + d.ID, sorted(s1.ID, s2.ID, s3.ID)},
			{"ParentPartner", a, "parent=" + p2.ID, []string{s3.ID}},
			{"PartnerSeesItsTenants", partnerAdmin, "", sorted(s1.ID, s2.ID)},
			{"TenantSeesItsOwn", tenantAdmin, "status=active", sorted(s1.ID, s2.ID)},
			{"OtherPartner", otherPartner, "", []string{s3.ID}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var got []subOut
				tc.c.must(200, "GET", "/api/v1/subscriptions?page_size=500&"+tc.query, nil, &got)
				if ids := subIDs(got); !slices.Equal(ids, tc.want) {
					t.Fatalf("got %v, want %v", ids, tc.want)
				}
			})
		}
		if env := partnerAdmin.do("GET", "/api/v1/subscriptions?parent="+p2.ID, nil); env.status != 404 {
			t.Fatalf("a parent outside the subtree: %s", env.raw)
		}
		if env := a.do("GET", "/api/v1/subscriptions?status=paused", nil); env.status != 400 || !env.hasError("invalid", "status") {
			t.Fatalf("bad status: %s", env.raw)
		}
		var page []subOut
		env := a.must(200, "GET", "/api/v1/subscriptions?parent="+d.ID+"&page_size=2", nil, &page)
		if len(page) != 2 || env.Page.Next == "" {
			t.Fatalf("first page %d %+v", len(page), env.Page)
		}
		var rest []subOut
		a.must(200, "GET", "/api/v1/subscriptions?next="+env.Page.Next, nil, &rest)
		if ids := subIDs(append(page, rest...)); !slices.Equal(ids, sorted(s1.ID, s2.ID, s3.ID)) {
			t.Fatalf("pages %v", ids)
		}
	})
	t.Run("CancelAtPeriodEnd", func(t *testing.T) {
		var got subOut
		partnerAdmin.must(200, "DELETE", "/api/v1/subscriptions/"+s2.ID+"?at=period_end", nil, &got)
		end, _ := time.Parse(time.DateOnly, monthStart(1))
		if got.Status != "active" || got.CancelAt == nil || !got.CancelAt.Equal(end) {
			t.Fatalf("%+v", got)
		}
		evs := subEvents(t, outbox.CustomerCancelled, s2.ID)
		if len(evs) != 1 || evs[0].Mode != "period_end" || !evs[0].CancelAt.Equal(end) {
			t.Fatalf("customer.cancelled %+v", evs)
		}
		partnerAdmin.must(200, "DELETE", "/api/v1/subscriptions/"+s2.ID+"?at=period_end", nil, &got)
		if len(subEvents(t, outbox.CustomerCancelled, s2.ID)) != 1 {
			t.Fatal("scheduling the same cancellation twice changes nothing")
		}
		if env := partnerAdmin.do("DELETE", "/api/v1/subscriptions/"+s2.ID+"?at=tomorrow", nil); env.status != 400 || !env.hasError("invalid", "at") {
			t.Fatalf("bad at: %s", env.raw)
		}
	})
	t.Run("CancelNow", func(t *testing.T) {
		var got subOut
		tenantAdmin.must(200, "DELETE", "/api/v1/subscriptions/"+s1.ID, nil, &got)
		if got.Status != "cancelled" || got.CancelAt == nil || time.Since(*got.CancelAt) > time.Minute {
			t.Fatalf("%+v", got)
		}
		evs := subEvents(t, outbox.CustomerCancelled, s1.ID)
		if len(evs) != 1 || evs[0].Mode != "now" || evs[0].Actor != tenantUser.ID {
			t.Fatalf("customer.cancelled %+v", evs)
		}
		if env := tenantAdmin.do("DELETE", "/api/v1/subscriptions/"+s1.ID, nil); env.status != 409 || !env.hasError("subscription_cancelled", "") {
			t.Fatalf("cancel twice: %s", env.raw)
		}
		if env := tenantAdmin.do("PUT", "/api/v1/subscriptions/"+s1.ID, map[string]any{"quantity": 3}); env.status != 409 {
			t.Fatalf("update a cancelled subscription: %s", env.raw)
		}
		var list []subOut
		a.must(200, "GET", "/api/v1/subscriptions?tenantId="+tn.ID+"&status=cancelled", nil, &list)
		if ids := subIDs(list); !slices.Equal(ids, []string{s1.ID}) {
			t.Fatalf("cancelled %v", ids)
		}
	})
	t.Run("History", func(t *testing.T) {
		var h []historyOut
		tenantAdmin.must(200, "GET", "/api/v1/subscriptions/"+s1.ID+"/history", nil, &h)
		var got []string
		for _, e := range h {
			got = append(got, e.Action)
		}
		want := []string{"create", "update", "update", "license_key", "license_key", "cancel"}
		if !slices.Equal(got, want) {
			t.Fatalf("actions %v, want %v", got, want)
		}
		for i, e := range h {
			if e.Seq != int64(i+1) || e.At.IsZero() {
				t.Errorf("entry %d: seq %d at %v", i, e.Seq, e.At)
			}
		}
		create, seats, plan, key, cancel := h[0], h[1], h[2], h[4], h[5]
		if create.Before != nil || create.After.Quantity != "10" || create.After.PlanID != pro.ID || create.Actor != partnerUser.ID {
			t.Errorf("create %+v", create)
		}
		if seats.Before.Quantity != "10" || seats.After.Quantity != "12" || seats.Actor != tenantUser.ID {
			t.Errorf("seats %+v -> %+v by %s", seats.Before, seats.After, seats.Actor)
		}
		if plan.Before.PlanID != pro.ID || plan.After.PlanID != max.ID || plan.Actor != partnerUser.ID {
			t.Errorf("plan %+v -> %+v", plan.Before, plan.After)
		}
		if *key.Before.LicenseKey != "KEY-1" || *key.After.LicenseKey != "KEY-2" {
			t.Errorf("license key %+v -> %+v", key.Before, key.After)
		}
		if cancel.Before.Status != "active" || cancel.After.Status != "cancelled" || cancel.After.CancelAt == nil {
			t.Errorf("cancel %+v -> %+v", cancel.Before, cancel.After)
		}
		var first, rest []historyOut
		env := a.must(200, "GET", "/api/v1/subscriptions/"+s1.ID+"/history?page_size=4", nil, &first)
		a.must(200, "GET", "/api/v1/subscriptions/"+s1.ID+"/history?next="+env.Page.Next, nil, &rest)
		if len(first) != 4 || len(rest) != 2 || rest[0].Seq != 5 {
			t.Fatalf("pages of %d and %d", len(first), len(rest))
		}
		if env := otherPartner.do("GET", "/api/v1/subscriptions/"+s1.ID+"/history", nil); env.status != 404 {
			t.Fatalf("another partner's history: %s", env.raw)
		}
	})
	t.Run("TenantDeleteRule", func(t *testing.T) {
		lone := create(t, a, "tenants", map[string]any{"name": "Lone", "parent": parent("partner", p.ID)})
		var s subOut
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": lone.ID, "planId": pro.ID, "quantity": 1}, &s)
		if env := a.do("DELETE", "/api/v1/tenants/"+lone.ID, nil); env.status != 409 || !env.hasError("has_subscriptions", "") {
			t.Fatalf("a tenant with an active subscription: %s", env.raw)
		}
		a.must(200, "DELETE", "/api/v1/subscriptions/"+s.ID+"?at=period_end", nil, nil)
		if env := a.do("DELETE", "/api/v1/tenants/"+lone.ID, nil); env.status != 409 {
			t.Fatalf("still active until the end of the period: %s", env.raw)
		}
		a.must(200, "DELETE", "/api/v1/subscriptions/"+s.ID+"?at=now", nil, nil)
		a.must(200, "DELETE", "/api/v1/tenants/"+lone.ID, nil, nil)
	})
}

// TestInvoicedPeriodsClosed: a tenant invoiced through a period takes no subscription starting
// in it. Billing sets InvoicedThrough; here it is written to the tenant item directly.
func TestInvoicedPeriodsClosed(t *testing.T) {
	a := admin(t)
	d := create(t, a, "distributors", map[string]any{"name": "D"})
	p := create(t, a, "partners", map[string]any{"name": "P", "parent": parent("distributor", d.ID)})
	tn := create(t, a, "tenants", map[string]any{"name": "T", "parent": parent("partner", p.ID)})
	plan := mkPlan(t, a, uniq("pro"), true)
	invoiced := period(-2)
	err := deps.Store.Table().Update("PK", "ENT#"+tn.ID).Range("SK", "ENT").Set("InvoicedThrough", invoiced).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	env := a.do("POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 1,
		"startDate": monthStart(-2) + "T12:00:00Z"})
	if env.status != 422 || !env.hasError("period_invoiced", "startDate") {
		t.Fatalf("a start in an invoiced period: %s", env.raw)
	}
	var s subOut
	a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 1,
		"startDate": monthStart(-1)}, &s)
}

// TestFirstSubscriptionConcurrency: parallel first subscriptions of one tenant emit exactly one
// customer.created, decided by the condition on the tenant's counter.
func TestFirstSubscriptionConcurrency(t *testing.T) {
	a := admin(t)
	d := create(t, a, "distributors", map[string]any{"name": "D"})
	p := create(t, a, "partners", map[string]any{"name": "P", "parent": parent("distributor", d.ID)})
	tn := create(t, a, "tenants", map[string]any{"name": "T", "parent": parent("partner", p.ID)})
	plan := mkPlan(t, a, uniq("pro"), true)
	const n = 6
	statuses := make(chan int, n)
	ids := make(chan string, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			env := a.do("POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 1})
			statuses <- env.status
			var s subOut
			if env.status == 201 && json.Unmarshal(env.Data, &s) == nil {
				ids <- s.ID
			}
		}()
	}
	wg.Wait()
	close(statuses)
	close(ids)
	created := 0
	for st := range statuses {
		switch st {
		case 201:
			created++
		case 409: // gave up after its retries: nothing written
		default:
			t.Fatalf("status %d", st)
		}
	}
	events := 0
	for id := range ids {
		events += len(subEvents(t, outbox.CustomerCreated, id))
	}
	t.Logf("%d of %d parallel creates committed", created, n)
	if created == 0 || events != 1 {
		t.Fatalf("%d created, %d customer.created events", created, events)
	}
	var e entity
	a.must(200, "GET", "/api/v1/tenants/"+tn.ID, nil, &e)
	if *e.NbOfSubscriptions != created {
		t.Fatalf("nbOfSubscriptions %d for %d created", *e.NbOfSubscriptions, created)
	}
}
