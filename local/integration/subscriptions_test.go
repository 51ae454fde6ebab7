package integration_test

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
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
	var out []subscriptions.EventDetail
	for _, e := range outboxEvents(t, typ, func(d subscriptions.EventDetail) bool { return d.SubscriptionID == subID }) {
		out = append(out, e.detail)
	}
	return out
}

// storedEventOf is an outbox event of a subscription with its decoded detail.
type storedEventOf struct {
	id     string
	detail subscriptions.EventDetail
}

// String names the event and its subscription, for failure messages.
func (e storedEventOf) String() string { return e.id + " of " + e.detail.SubscriptionID }

// outboxEvents returns every customer.* event of type typ in the outbox (the whole table, not
// only this test's) whose detail satisfies match, oldest first.
func outboxEvents(t *testing.T, typ string, match func(subscriptions.EventDetail) bool) []storedEventOf {
	t.Helper()
	evs, err := deps.Store.Events(t.Context(), typ)
	if err != nil {
		t.Fatal(err)
	}
	var out []storedEventOf
	for _, e := range evs {
		var d subscriptions.EventDetail
		if err := json.Unmarshal(e.Detail, &d); err != nil {
			t.Fatal(err)
		}
		if match(d) {
			out = append(out, storedEventOf{id: e.ID, detail: d})
		}
	}
	return out
}

// customerEvents lists the customer.* event types.
var customerEvents = []string{outbox.CustomerCreated, outbox.CustomerUpgraded, outbox.CustomerCancelled}

// ofTenant matches the events about any subscription of a tenant.
func ofTenant(tenantID string) func(subscriptions.EventDetail) bool {
	return func(d subscriptions.EventDetail) bool { return d.TenantID == tenantID }
}

// ofSubscription matches the events about one subscription.
func ofSubscription(subID string) func(subscriptions.EventDetail) bool {
	return func(d subscriptions.EventDetail) bool { return d.SubscriptionID == subID }
}

// onBus returns the distinct events of type typ read back from the bus whose detail satisfies
// match, by outbox id: a redelivery of one event counts once.
func onBus(typ string, match func(subscriptions.EventDetail) bool) map[string]subscriptions.EventDetail {
	out := map[string]subscriptions.EventDetail{}
	for _, e := range deliveries(typ, nil) {
		var d subscriptions.EventDetail
		if json.Unmarshal(e.Data, &d) == nil && match(d) {
			out[e.ID] = d
		}
	}
	return out
}

// busCaughtUp writes one more event (the first subscription of a new tenant of partnerID, on
// planID), waits until it is read back from the bus, then one more second for the other stream
// shards: by then any event written before it has been published too.
func busCaughtUp(t *testing.T, c client, partnerID, planID string) {
	t.Helper()
	tn := create(t, c, "tenants", map[string]any{"name": "Sentinel", "parent": parent("partner", partnerID)})
	var s subOut
	c.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": planID, "quantity": 1}, &s)
	waitForEvent(t, outbox.CustomerCreated, func(e busEvent) bool {
		var d subscriptions.EventDetail
		return json.Unmarshal(e.Data, &d) == nil && d.SubscriptionID == s.ID
	})
	time.Sleep(time.Second)
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

// TestSubscriptionLifecycle runs on the clocked server: "now" and "the end of the period" are
// the server's.
func TestSubscriptionLifecycle(t *testing.T) {
	api := clockedServer(t)
	now := api.freeze(t)
	a := api.on(admin(t))
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
	partnerAdmin, tenantAdmin, otherPartner = api.on(partnerAdmin), api.on(tenantAdmin), api.on(otherPartner)

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
			{"ErrStartInFuture", partnerAdmin, map[string]any{"tenantId": tn.ID, "planId": pro.ID, "quantity": 1, "startDate": monthAt(now, 2)}, 422, "in_future", "startDate"},
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
		end := period.Of(now).End()
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
		if got.Status != "cancelled" || got.CancelAt == nil || got.CancelAt.Before(now) || got.CancelAt.Sub(now) > time.Second {
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
	now := time.Now() // one instant for every date below; the server only checks they are past
	invoiced := periodAt(now, -2)
	err := deps.Store.Table().Update("PK", "ENT#"+tn.ID).Range("SK", "ENT").Set("InvoicedThrough", invoiced).Run(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	env := a.do("POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 1,
		"startDate": monthAt(now, -2) + "T12:00:00Z"})
	if env.status != 422 || !env.hasError("period_invoiced", "startDate") {
		t.Fatalf("a start in an invoiced period: %s", env.raw)
	}
	if evs := outboxEvents(t, outbox.CustomerCreated, ofTenant(tn.ID)); len(evs) != 0 {
		t.Fatalf("the refused first subscription left customer.created: %+v", evs)
	}
	var s subOut
	a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 1,
		"startDate": monthAt(now, -1)}, &s)
	if evs := outboxEvents(t, outbox.CustomerCreated, ofTenant(tn.ID)); len(evs) != 1 || evs[0].detail.SubscriptionID != s.ID {
		t.Fatalf("customer.created of the tenant: %+v", evs)
	}
}

// TestFirstSubscriptionConcurrency: parallel first subscriptions of one tenant emit exactly one
// customer.created, decided by the condition on the tenant's counter. Every attempt that lost
// the race wrote a transaction carrying its own customer.created (with its own subscription id)
// that failed on that condition: so every customer.created of the tenant is counted, in the
// outbox and on the bus, not only those of the subscriptions that were created.
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
	var createdIDs []string
	for id := range ids {
		createdIDs = append(createdIDs, id)
	}
	t.Logf("%d of %d parallel creates committed", created, n)
	evs := outboxEvents(t, outbox.CustomerCreated, ofTenant(tn.ID))
	if created == 0 || len(evs) != 1 || !slices.Contains(createdIDs, evs[0].detail.SubscriptionID) {
		t.Fatalf("%d created (%v), customer.created events of the tenant: %+v", created, createdIDs, evs)
	}
	for _, typ := range []string{outbox.CustomerUpgraded, outbox.CustomerCancelled} {
		if evs := outboxEvents(t, typ, ofTenant(tn.ID)); len(evs) != 0 {
			t.Fatalf("%s events: %+v", typ, evs)
		}
	}
	// The event must arrive (waited for, never assumed after a sleep); then, once the bus has
	// caught up, it must have arrived once.
	waitForEvent(t, outbox.CustomerCreated, func(e busEvent) bool { return e.ID == evs[0].id })
	busCaughtUp(t, a, p.ID, plan.ID)
	if bus := onBus(outbox.CustomerCreated, ofTenant(tn.ID)); len(bus) != 1 || bus[evs[0].id].SubscriptionID != evs[0].detail.SubscriptionID {
		t.Fatalf("customer.created of the tenant on the bus: %+v, in the outbox: %+v", bus, evs)
	}
	var e entity
	a.must(200, "GET", "/api/v1/tenants/"+tn.ID, nil, &e)
	if *e.NbOfSubscriptions != created {
		t.Fatalf("nbOfSubscriptions %d for %d created", *e.NbOfSubscriptions, created)
	}
}

// TestFailedChangesLeaveNoEvent provokes changes that fail when their transaction commits: on
// the clocked server, the tenant or the plan changes right after the subscription service
// checked it and before it writes the subscription, its history and its customer.* event in one
// transaction; and concurrent cancellations and plan changes of one subscription race each
// other. No failed change may leave an event, in the outbox or on the bus (SPEC 13).
func TestFailedChangesLeaveNoEvent(t *testing.T) {
	api := clockedServer(t)
	now := api.freeze(t)
	a := api.on(admin(t))
	d := create(t, a, "distributors", map[string]any{"name": "Fail D"})
	p := create(t, a, "partners", map[string]any{"name": "Fail P", "parent": parent("distributor", d.ID)})
	plan := mkPlan(t, a, uniq("fail"), true)
	newTenant := func(t *testing.T) entity {
		t.Helper()
		return create(t, a, "tenants", map[string]any{"name": "Fail T", "parent": parent("partner", p.ID)})
	}
	retire := func(id string) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := deps.Store.UpdatePlan(ctx, id, func(pl *catalog.Plan) error {
				at := time.Now().UTC()
				pl.Status, pl.RetiredAt = catalog.PlanRetired, &at
				return nil
			})
			return err
		}
	}
	// untouched asserts that a tenant whose every change failed has no subscription, no count
	// and no event in the outbox.
	untouched := func(t *testing.T, tenantID string) {
		t.Helper()
		for _, typ := range customerEvents {
			if evs := outboxEvents(t, typ, ofTenant(tenantID)); len(evs) != 0 {
				t.Fatalf("a failed change left %s: %+v", typ, evs)
			}
		}
		var subs []subOut
		a.must(200, "GET", "/api/v1/subscriptions?tenantId="+tenantID, nil, &subs)
		var e entity
		a.must(200, "GET", "/api/v1/tenants/"+tenantID, nil, &e)
		if len(subs) != 0 || e.NbOfSubscriptions == nil || *e.NbOfSubscriptions != 0 {
			t.Fatalf("a failed create left %d subscriptions, count %v", len(subs), e.NbOfSubscriptions)
		}
	}
	// history returns the actions of a subscription's history.
	history := func(t *testing.T, subID string) []string {
		t.Helper()
		var h []historyOut
		a.must(200, "GET", "/api/v1/subscriptions/"+subID+"/history?page_size=100", nil, &h)
		var out []string
		for _, e := range h {
			out = append(out, e.Action)
		}
		return out
	}
	var silent []string // tenants whose every change failed
	// once maps subscription ids to the type of which each has exactly one event; never to a
	// type of which each has none.
	once, never := map[string]string{}, map[string]string{}

	// refusedAtCommit creates a subscription of tenant tn to planID while change runs right
	// after the service reads the entity or plan id (kind "entity" or "plan"), and asserts that
	// the create is refused with 422 code on field and leaves the tenant untouched.
	refusedAtCommit := func(t *testing.T, tn entity, planID, kind, id string, change func(context.Context) error, code, field string) {
		t.Helper()
		ran := api.afterRead(t, kind, id, change)
		env := a.do("POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": planID, "quantity": 1})
		if err := ran(); err != nil {
			t.Fatal(err)
		}
		if env.status != 422 || !env.hasError(code, field) {
			t.Fatalf("got %s", env.raw)
		}
		untouched(t, tn.ID)
		silent = append(silent, tn.ID)
	}
	t.Run("TenantCancelledBeforeCommit", func(t *testing.T) {
		tn := newTenant(t)
		// The first attempt, a first subscription with its customer.created, fails on the
		// tenant's condition; the retry reads the tenant cancelled.
		refusedAtCommit(t, tn, plan.ID, "entity", tn.ID, func(ctx context.Context) error {
			_, err := deps.Store.UpdateEntity(ctx, tn.ID, func(e *hierarchy.Entity) error {
				e.Status = hierarchy.StatusCancelled
				return nil
			})
			return err
		}, "cancelled", "tenantId")
	})
	t.Run("TenantInvoicedBeforeCommit", func(t *testing.T) {
		tn := newTenant(t)
		refusedAtCommit(t, tn, plan.ID, "entity", tn.ID, func(ctx context.Context) error {
			// Billing's write, made directly: the tenant is invoiced through the running period.
			return deps.Store.Table().Update("PK", "ENT#"+tn.ID).Range("SK", "ENT").Set("InvoicedThrough", periodAt(now, 0)).Run(ctx)
		}, "period_invoiced", "startDate")
	})
	t.Run("PlanRetiredBeforeCommit", func(t *testing.T) {
		tn := newTenant(t)
		closing := mkPlan(t, a, uniq("closing"), true)
		refusedAtCommit(t, tn, closing.ID, "plan", closing.ID, retire(closing.ID), "plan_not_published", "planId")
	})
	t.Run("UpgradeToPlanRetiredBeforeCommit", func(t *testing.T) {
		tn := newTenant(t)
		var s subOut
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 1}, &s)
		closing := mkPlan(t, a, uniq("closing"), true)
		ran := api.afterRead(t, "plan", closing.ID, retire(closing.ID))
		env := a.do("PUT", "/api/v1/subscriptions/"+s.ID, map[string]any{"planId": closing.ID, "quantity": 2})
		if err := ran(); err != nil {
			t.Fatal(err)
		}
		if env.status != 422 || !env.hasError("plan_not_published", "planId") {
			t.Fatalf("got %s", env.raw)
		}
		var got subOut
		a.must(200, "GET", "/api/v1/subscriptions/"+s.ID, nil, &got)
		if evs := subEvents(t, outbox.CustomerUpgraded, s.ID); len(evs) != 0 || got.PlanID != plan.ID || got.Quantity != "1" ||
			!slices.Equal(history(t, s.ID), []string{"create"}) {
			t.Fatalf("the failed plan change left %d events, plan %s x %s, history %v", len(evs), got.PlanID, got.Quantity, history(t, s.ID))
		}
		once[s.ID], never[s.ID] = outbox.CustomerCreated, outbox.CustomerUpgraded
	})
	// race runs n copies of one request on a subscription at once and returns their statuses.
	race := func(n int, method, path string, body any) []int {
		out := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				out[i] = a.do(method, path, body).status
			}()
		}
		wg.Wait()
		return out
	}
	t.Run("ConcurrentCancels", func(t *testing.T) {
		tn := newTenant(t)
		var s subOut
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 1}, &s)
		statuses := race(6, "DELETE", "/api/v1/subscriptions/"+s.ID+"?at=now", nil)
		ok := 0
		for _, st := range statuses {
			switch st {
			case 200:
				ok++
			case 409: // lost: the subscription was cancelled meanwhile, or it gave up retrying
			default:
				t.Fatalf("statuses %v", statuses)
			}
		}
		if evs := subEvents(t, outbox.CustomerCancelled, s.ID); ok != 1 || len(evs) != 1 ||
			!slices.Equal(history(t, s.ID), []string{"create", "cancel"}) {
			t.Fatalf("statuses %v, customer.cancelled %+v, history %v", statuses, evs, history(t, s.ID))
		}
		once[s.ID] = outbox.CustomerCancelled
	})
	t.Run("ConcurrentUpgrades", func(t *testing.T) {
		tn := newTenant(t)
		var s subOut
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 1}, &s)
		target := mkPlan(t, a, uniq("target"), true)
		statuses := race(6, "PUT", "/api/v1/subscriptions/"+s.ID, map[string]any{"planId": target.ID})
		for _, st := range statuses {
			if st != 200 && st != 409 { // 200 also for "already on that plan": nothing written
				t.Fatalf("statuses %v", statuses)
			}
		}
		evs := subEvents(t, outbox.CustomerUpgraded, s.ID)
		if len(evs) != 1 || evs[0].PlanID != target.ID || !slices.Equal(history(t, s.ID), []string{"create", "update"}) {
			t.Fatalf("statuses %v, customer.upgraded %+v, history %v", statuses, evs, history(t, s.ID))
		}
		once[s.ID] = outbox.CustomerUpgraded
	})
	t.Run("NothingOnTheBus", func(t *testing.T) {
		busCaughtUp(t, a, p.ID, plan.ID)
		for _, tn := range silent {
			for _, typ := range customerEvents {
				if bus := onBus(typ, ofTenant(tn)); len(bus) != 0 {
					t.Errorf("%s of tenant %s on the bus after a failed change: %+v", typ, tn, bus)
				}
			}
		}
		for sub, typ := range never {
			if bus := onBus(typ, ofSubscription(sub)); len(bus) != 0 {
				t.Errorf("%s of %s on the bus after a failed change: %+v", typ, sub, bus)
			}
		}
		for sub, typ := range once {
			bus := onBus(typ, ofSubscription(sub))
			stored := outboxEvents(t, typ, ofSubscription(sub))
			if len(bus) != 1 || len(stored) != 1 {
				t.Errorf("%s of %s: %d on the bus, %d in the outbox, want one", typ, sub, len(bus), len(stored))
			} else if _, ok := bus[stored[0].id]; !ok {
				t.Errorf("%s of %s: the bus has %v, the outbox %s", typ, sub, bus, stored[0].id)
			}
		}
	})
}
