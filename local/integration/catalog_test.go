package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// clockedAPI is a second API server on the shared table (the same handlers and authorizer; its
// events go through the same stream and publisher to the same bus) whose services read a clock
// the test sets: the catalog, price-list and subscription tests compute what they expect from
// the instant the server uses, so that a run crossing midnight at a month's end changes
// nothing, and can put the server on any date. Tokens and sessions keep the real time. Its
// subscription service reads tenants and plans through afterRead hooks, with which a test
// changes them between the service's checks and its write.
type clockedAPI struct {
	srv   *httptest.Server
	mu    sync.Mutex
	at    time.Time // zero: the real time
	hooks map[string]*readHook
}

// readHook is a change a test makes once, right after the subscription service read something.
type readHook struct {
	fn   func(context.Context) error
	done chan struct{}
	err  error
}

var (
	clockedOnce sync.Once
	clocked     *clockedAPI
	clockedErr  error
)

// clockedServer returns the clocked API server, starting it on first use.
func clockedServer(tb testing.TB) *clockedAPI {
	tb.Helper()
	clockedOnce.Do(func() {
		api := &clockedAPI{hooks: map[string]*readHook{}}
		if _, api.srv, clockedErr = newClockedServer(deps.Config, api.now, func(d *app.Deps) {
			d.Subscriptions.Entities = hookedEntities{next: d.Subscriptions.Entities, api: api}
			d.Subscriptions.Plans = hookedPlans{next: d.Subscriptions.Plans, api: api}
		}); clockedErr == nil {
			clocked = api
		}
	})
	if clockedErr != nil {
		tb.Fatal("clocked server:", clockedErr)
	}
	return clocked
}

// now is the services' clock: the instant set last, one microsecond later at every reading so
// that what is recorded keeps its order; the real time when none is set.
func (api *clockedAPI) now() time.Time {
	api.mu.Lock()
	defer api.mu.Unlock()
	if api.at.IsZero() {
		return time.Now().UTC()
	}
	api.at = api.at.Add(time.Microsecond)
	return api.at
}

// setNow sets the clock to at until the end of the test.
func (api *clockedAPI) setNow(tb testing.TB, at time.Time) {
	api.mu.Lock()
	api.at = at.UTC()
	api.mu.Unlock()
	tb.Cleanup(func() { api.mu.Lock(); api.at = time.Time{}; api.mu.Unlock() })
}

// freeze sets the clock to the real time (an hour earlier during a month's last hour, so that
// the clock cannot reach the next month during the test) and returns that instant, from which
// the test computes its expected dates.
func (api *clockedAPI) freeze(tb testing.TB) time.Time {
	now := time.Now().UTC()
	if period.Of(now.Add(time.Hour)) != period.Of(now) {
		now = now.Add(-time.Hour)
	}
	api.setNow(tb, now)
	return now
}

// on returns c calling the clocked server.
func (api *clockedAPI) on(c client) client {
	c.base = api.srv.URL
	return c
}

// afterRead makes fn run once, right after the subscription service next reads the entity or
// the plan with id (kind "entity" or "plan"), before it writes anything. The returned function
// reports fn's error, or an error when fn has not run; the hook is removed at the end of the test.
func (api *clockedAPI) afterRead(tb testing.TB, kind, id string, fn func(context.Context) error) (ran func() error) {
	h := &readHook{fn: fn, done: make(chan struct{})}
	api.mu.Lock()
	api.hooks[kind+"/"+id] = h
	api.mu.Unlock()
	tb.Cleanup(func() { api.mu.Lock(); delete(api.hooks, kind+"/"+id); api.mu.Unlock() })
	return func() error {
		select {
		case <-h.done:
			return h.err
		default:
			return errors.New("the " + kind + " " + id + " was never read")
		}
	}
}

func (api *clockedAPI) fire(ctx context.Context, kind, id string) {
	api.mu.Lock()
	h := api.hooks[kind+"/"+id]
	delete(api.hooks, kind+"/"+id)
	api.mu.Unlock()
	if h != nil {
		h.err = h.fn(ctx)
		close(h.done)
	}
}

// hookedEntities and hookedPlans are the subscription service's reads with the hooks.
type hookedEntities struct {
	next subscriptions.Entities
	api  *clockedAPI
}

func (h hookedEntities) GetEntity(ctx context.Context, id string) (*hierarchy.Entity, error) {
	e, err := h.next.GetEntity(ctx, id)
	h.api.fire(ctx, "entity", id)
	return e, err
}

type hookedPlans struct {
	next subscriptions.Plans
	api  *clockedAPI
}

func (h hookedPlans) GetPlan(ctx context.Context, id string) (*catalog.Plan, error) {
	p, err := h.next.GetPlan(ctx, id)
	h.api.fire(ctx, "plan", id)
	return p, err
}

// monthAt returns the first day ("YYYY-MM-DD") of the month offset months from the one holding
// now; periodAt the same month as "YYYY-MM".
func monthAt(now time.Time, offset int) string {
	return period.Of(now).Start().AddDate(0, offset, 0).Format(time.DateOnly)
}

func periodAt(now time.Time, offset int) string { return monthAt(now, offset)[:7] }

// rateOut is a rate as the API writes it: every decimal a string.
type rateOut struct {
	Model     string  `json:"model"`
	UnitPrice *string `json:"unitPrice"`
	Tiers     []struct {
		UpTo      *string `json:"upTo"`
		UnitPrice string  `json:"unitPrice"`
		FlatFee   string  `json:"flatFee"`
	} `json:"tiers"`
	PackageSize      *string `json:"packageSize"`
	PackagePrice     *string `json:"packagePrice"`
	IncludedQuantity string  `json:"includedQuantity"`
}

type skuOut struct {
	ID         string   `json:"id"`
	Code       string   `json:"code"`
	Name       string   `json:"name"`
	Unit       string   `json:"unit"`
	Currency   string   `json:"currency"`
	Thresholds []string `json:"thresholds"`
	rateOut
	EffectiveFrom string `json:"effectiveFrom"`
	Rates         []struct {
		EffectiveFrom string `json:"effectiveFrom"`
		rateOut
		CreatedBy string `json:"createdBy"`
	} `json:"rates"`
	PlanCount int `json:"planCount"`
}

type planOut struct {
	ID        string `json:"id"`
	Code      string `json:"code"`
	Name      string `json:"name"`
	Currency  string `json:"currency"`
	BasePrice string `json:"basePrice"`
	Status    string `json:"status"`
	Charges   []struct {
		SKUID            string  `json:"skuId"`
		SKUCode          string  `json:"skuCode"`
		IncludedQuantity *string `json:"includedQuantity"`
	} `json:"charges"`
	PublishedAt *time.Time `json:"publishedAt"`
	RetiredAt   *time.Time `json:"retiredAt"`
}

// monthStart is monthAt on the real clock, for tests on the shared server whose dates cannot
// meet a month's boundary in a way that matters.
func monthStart(offset int) string { return monthAt(time.Now(), offset) }

// storageSKU is the SPEC 15 storage-gb SKU under a unique code.
func storageSKU(code string) map[string]any {
	return map[string]any{"code": code, "name": "Storage", "unit": "GB", "model": "graduated", "includedQuantity": 50,
		"tiers": []map[string]any{{"upTo": 100, "unitPrice": "0.10"}, {"upTo": 1000, "unitPrice": "0.08"}, {"upTo": nil, "unitPrice": "0.05"}}}
}

func mkSKU(tb testing.TB, c client, body map[string]any) skuOut {
	tb.Helper()
	var k skuOut
	c.must(201, "POST", "/api/v1/pricing", body, &k)
	return k
}

func mkPlan(tb testing.TB, c client, code string, publish bool, skuIDs ...string) planOut {
	tb.Helper()
	var charges []map[string]any
	for _, id := range skuIDs {
		charges = append(charges, map[string]any{"skuId": id})
	}
	var p planOut
	c.must(201, "POST", "/api/v1/plans", map[string]any{"code": code, "name": "Plan " + code, "basePrice": "30.00", "charges": charges}, &p)
	if publish {
		c.must(200, "POST", "/api/v1/plans/"+p.ID+"/publish", nil, &p)
	}
	return p
}

// TestSKUs runs on the clocked server: "the current period" is the server's.
func TestSKUs(t *testing.T) {
	api := clockedServer(t)
	now := api.freeze(t)
	a := api.on(admin(t))
	code := uniq("storage-gb")
	k := mkSKU(t, a, map[string]any{"code": code, "name": "Storage", "unit": "GB", "model": "graduated", "includedQuantity": 50,
		"thresholds": []any{100, "1000"},
		"tiers":      []map[string]any{{"upTo": 100, "unitPrice": "0.10"}, {"upTo": 1000, "unitPrice": 0.08}, {"unitPrice": "0.05"}}})
	if k.Currency != "EUR" || k.Model != "graduated" || len(k.Tiers) != 3 || k.Tiers[2].UpTo != nil || k.Tiers[1].UnitPrice != "0.08" ||
		k.IncludedQuantity != "50" || k.EffectiveFrom != monthAt(now, 0) || len(k.Rates) != 1 || strings.Join(k.Thresholds, ",") != "100,1000" {
		t.Fatalf("created %+v", k)
	}

	t.Run("GetAndList", func(t *testing.T) {
		var got skuOut
		a.must(200, "GET", "/api/v1/pricing/"+k.ID, nil, &got)
		if got.Code != code || got.Tiers[0].UnitPrice != "0.10" {
			t.Fatalf("get %+v", got)
		}
		var list []skuOut
		a.must(200, "GET", "/api/v1/pricing?search="+code, nil, &list)
		if len(list) != 1 || list[0].ID != k.ID {
			t.Fatalf("search: %+v", list)
		}
		if env := a.do("GET", "/api/v1/pricing/sku_nope", nil); env.status != 404 {
			t.Fatalf("missing SKU: %s", env.raw)
		}
	})
	t.Run("RateChangeIsEffectiveDated", func(t *testing.T) {
		var got skuOut
		a.must(200, "PUT", "/api/v1/pricing/"+k.ID, map[string]any{"name": "Storage v2", "model": "per_unit", "unitPrice": "0.04",
			"effectiveFrom": monthAt(now, 1)}, &got)
		if got.Name != "Storage v2" || len(got.Rates) != 2 || got.Rates[0].EffectiveFrom != monthAt(now, 1) || *got.Rates[0].UnitPrice != "0.04" {
			t.Fatalf("history %+v", got.Rates)
		}
		if got.Model != "graduated" || got.EffectiveFrom != monthAt(now, 0) {
			t.Fatalf("the current period keeps its rate: %s from %s", got.Model, got.EffectiveFrom)
		}
		env := a.do("PUT", "/api/v1/pricing/"+k.ID, map[string]any{"model": "per_unit", "unitPrice": "0.04", "effectiveFrom": monthAt(now, -1)})
		if env.status != 400 || !env.hasError("in_past", "effectiveFrom") {
			t.Fatalf("a rate change may not rewrite a past period: %s", env.raw)
		}
		env = a.do("PUT", "/api/v1/pricing/"+k.ID, map[string]any{"code": "other", "currency": "USD"})
		if env.status != 400 || !env.hasError("immutable", "code") || !env.hasError("immutable", "currency") {
			t.Fatalf("code and currency never change: %s", env.raw)
		}
	})
	t.Run("Validation", func(t *testing.T) {
		for _, tc := range []struct {
			name        string
			body        map[string]any
			code, field string
			status      int
		}{
			{"ErrTiersNotContiguous", map[string]any{"model": "graduated", "tiers": []map[string]any{{"upTo": 100, "unitPrice": 1}, {"upTo": 100, "unitPrice": 1}, {"unitPrice": 1}}},
				"invalid", "tiers[1].upTo", 400},
			{"ErrLastTierClosed", map[string]any{"model": "volume", "tiers": []map[string]any{{"upTo": 100, "unitPrice": 1}, {"upTo": 200, "unitPrice": 1}}},
				"invalid", "tiers[1].upTo", 400},
			{"ErrNegativePrice", map[string]any{"model": "per_unit", "unitPrice": "-0.01"}, "invalid", "unitPrice", 400},
			{"ErrNegativeTierPrice", map[string]any{"model": "graduated", "tiers": []map[string]any{{"unitPrice": -1}}}, "invalid", "tiers[0].unitPrice", 400},
			{"ErrBadCurrency", map[string]any{"model": "per_unit", "unitPrice": 1, "currency": "XYZ"}, "invalid", "currency", 400},
			{"ErrNotADecimal", map[string]any{"model": "per_unit", "unitPrice": "1,5"}, "invalid", "unitPrice", 400},
			{"ErrUnknownField", map[string]any{"model": "per_unit", "unitPrize": 1}, "unknown_field", "unitPrize", 400},
			{"ErrCodeTaken", map[string]any{"code": strings.ToUpper(code), "model": "per_unit", "unitPrice": 1}, "taken", "code", 409},
			{"ErrEffectiveFromInPast", map[string]any{"model": "per_unit", "unitPrice": 1, "effectiveFrom": "2020-01-01"}, "in_past", "effectiveFrom", 400},
		} {
			t.Run(tc.name, func(t *testing.T) {
				body := map[string]any{"code": uniq("v"), "name": "V"}
				for k, v := range tc.body {
					body[k] = v
				}
				env := a.do("POST", "/api/v1/pricing", body)
				if env.status != tc.status || !env.hasError(tc.code, tc.field) {
					t.Fatalf("got %s", env.raw)
				}
			})
		}
		env := a.do("POST", "/api/v1/pricing", map[string]any{"model": "per_unit", "unitPrice": "-1", "currency": "eur", "thresholds": []any{5, 1}})
		for _, f := range []string{"code", "name", "unitPrice", "currency", "thresholds[1]"} {
			if !env.hasError("", f) {
				t.Errorf("every bad field at once: %s missing in %s", f, env.raw)
			}
		}
	})
}

func TestPlans(t *testing.T) {
	a := admin(t)
	k := mkSKU(t, a, storageSKU(uniq("storage-gb")))
	usd := mkSKU(t, a, map[string]any{"code": uniq("usd"), "name": "USD", "currency": "USD", "model": "per_unit", "unitPrice": 1})
	code := uniq("pro")
	var p planOut
	a.must(201, "POST", "/api/v1/plans", map[string]any{"code": code, "name": "Pro", "basePrice": json.Number("30.00"), // a JSON number, kept exact
		"charges": []map[string]any{{"skuId": k.ID, "includedQuantity": "10"}}}, &p)
	if p.Status != "draft" || p.Currency != "EUR" || p.BasePrice != "30.00" || len(p.Charges) != 1 || p.Charges[0].SKUCode != k.Code ||
		*p.Charges[0].IncludedQuantity != "10" {
		t.Fatalf("created %+v", p)
	}
	var got skuOut
	a.must(200, "GET", "/api/v1/pricing/"+k.ID, nil, &got)
	if got.PlanCount != 1 {
		t.Fatalf("plan count %d", got.PlanCount)
	}

	t.Run("ErrCharges", func(t *testing.T) {
		env := a.do("POST", "/api/v1/plans", map[string]any{"code": uniq("x"), "name": "X", "basePrice": 1,
			"charges": []map[string]any{{"skuId": usd.ID}, {"skuId": "sku_nope"}}})
		if env.status != 422 || !env.hasError("currency_mismatch", "charges[0].skuId") || !env.hasError("not_found", "charges[1].skuId") {
			t.Fatalf("got %s", env.raw)
		}
		env = a.do("POST", "/api/v1/plans", map[string]any{"code": code, "name": "Again", "basePrice": 1})
		if env.status != 409 || !env.hasError("taken", "code") {
			t.Fatalf("plan code taken: %s", env.raw)
		}
	})
	t.Run("DraftEditable", func(t *testing.T) {
		a.must(200, "PUT", "/api/v1/plans/"+p.ID, map[string]any{"name": "Pro plan", "basePrice": "29.90"}, &p)
		if p.Name != "Pro plan" || p.BasePrice != "29.90" {
			t.Fatalf("%+v", p)
		}
	})
	t.Run("ErrSKUInUse", func(t *testing.T) {
		env := a.do("DELETE", "/api/v1/pricing/"+k.ID, nil)
		if env.status != 409 || !env.hasError("sku_in_use", "") {
			t.Fatalf("got %s", env.raw)
		}
	})
	t.Run("PublishedFrozen", func(t *testing.T) {
		a.must(200, "POST", "/api/v1/plans/"+p.ID+"/publish", nil, &p)
		if p.Status != "published" || p.PublishedAt == nil {
			t.Fatalf("%+v", p)
		}
		env := a.do("PUT", "/api/v1/plans/"+p.ID, map[string]any{"basePrice": "1"})
		if env.status != 409 || !env.hasError("plan_frozen", "") {
			t.Fatalf("a published plan is frozen: %s", env.raw)
		}
		if env := a.do("DELETE", "/api/v1/plans/"+p.ID, nil); env.status != 409 || !env.hasError("plan_not_draft", "") {
			t.Fatalf("only drafts are deleted: %s", env.raw)
		}
		if env := a.do("POST", "/api/v1/plans/"+p.ID+"/publish", nil); env.status != 409 {
			t.Fatalf("publish twice: %s", env.raw)
		}
	})
	t.Run("RetiredNotSubscribable", func(t *testing.T) {
		d := create(t, a, "distributors", map[string]any{"name": "D"})
		pr := create(t, a, "partners", map[string]any{"name": "P", "parent": parent("distributor", d.ID)})
		tn := create(t, a, "tenants", map[string]any{"name": "T", "parent": parent("partner", pr.ID)})
		a.must(200, "POST", "/api/v1/plans/"+p.ID+"/retire", nil, &p)
		if p.Status != "retired" || p.RetiredAt == nil {
			t.Fatalf("%+v", p)
		}
		env := a.do("POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": p.ID, "quantity": 1})
		if env.status != 422 || !env.hasError("plan_retired", "planId") {
			t.Fatalf("got %s", env.raw)
		}
		var list []planOut
		a.must(200, "GET", "/api/v1/plans?status=retired&search="+code, nil, &list)
		if len(list) != 1 || list[0].ID != p.ID {
			t.Fatalf("status filter: %+v", list)
		}
	})
	t.Run("DeleteDraftReleasesSKU", func(t *testing.T) {
		other := mkSKU(t, a, map[string]any{"code": uniq("x"), "name": "X", "model": "package", "packageSize": 100, "packagePrice": "15"})
		draft := mkPlan(t, a, uniq("draft"), false, other.ID)
		if env := a.do("DELETE", "/api/v1/pricing/"+other.ID, nil); env.status != 409 {
			t.Fatalf("a draft's SKU is in use too: %s", env.raw)
		}
		a.must(200, "DELETE", "/api/v1/plans/"+draft.ID, nil, nil)
		a.must(200, "DELETE", "/api/v1/pricing/"+other.ID, nil, nil)
		if env := a.do("GET", "/api/v1/pricing/"+other.ID, nil); env.status != 404 {
			t.Fatalf("deleted SKU: %s", env.raw)
		}
	})
	t.Run("DraftsHiddenFromOthers", func(t *testing.T) {
		draft := mkPlan(t, a, uniq("hidden"), false)
		_, viewer := mkUser(t, a, "platform_viewer", "platform")
		if env := viewer.do("GET", "/api/v1/plans/"+draft.ID, nil); env.status != 404 {
			t.Fatalf("got %s", env.raw)
		}
		var list []planOut
		viewer.must(200, "GET", "/api/v1/plans?page_size=500", nil, &list)
		for _, pl := range list {
			if pl.Status == "draft" {
				t.Fatalf("viewer sees draft %s", pl.ID)
			}
		}
	})
}
