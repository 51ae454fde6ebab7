// Package usagecatalog is usage ingestion's view of the rest of the platform: it implements
// usage.Tenants, usage.Resolver, usage.Catalog, usage.Pricer and usage.Subscriptions on the
// hierarchy, catalog and subscriptions stores. The hot path (one lookup per record) reads
// short-lived in-memory caches: tenants, the SKUs by code, and each tenant's subscriptions with
// the plan each had over time. A miss that would reject a record (an unknown SKU, no matching
// subscription) refreshes the cache once before rejecting, so that a SKU or subscription
// created a moment ago is found.
package usagecatalog

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/pricing"
	"github.com/channelbilling/cms/shared/subscriptions"
	"github.com/channelbilling/cms/shared/usage"
)

// Entities is the part of the hierarchy store the adapter reads.
type Entities interface {
	// GetEntity returns the entity with id. NotFound.
	GetEntity(ctx context.Context, id string) (*hierarchy.Entity, error)
	// GetEntities returns the entities found among ids.
	GetEntities(ctx context.Context, ids []string) (map[string]*hierarchy.Entity, error)
}

// Catalog is the part of the catalog store the adapter reads.
type Catalog interface {
	// ListSKUs returns every SKU.
	ListSKUs(ctx context.Context) ([]*catalog.SKU, error)
	// GetPlan returns the plan with id. NotFound.
	GetPlan(ctx context.Context, id string) (*catalog.Plan, error)
	// GetOverrides returns every price-list override of a tenant.
	GetOverrides(ctx context.Context, tenantID string) ([]*catalog.Override, error)
}

// Subscriptions is the part of the subscriptions store the adapter reads.
type Subscriptions interface {
	// GetSubscription returns the subscription with id. NotFound.
	GetSubscription(ctx context.Context, id string) (*subscriptions.Subscription, error)
	// ListSubscriptions returns the subscriptions of the tenants whose path starts with prefix.
	ListSubscriptions(ctx context.Context, pathPrefix string) ([]*subscriptions.Subscription, error)
	// History returns a subscription's changes, oldest first.
	History(ctx context.Context, id string) ([]subscriptions.HistoryEntry, error)
}

// Source implements the usage interfaces. Make it with New.
type Source struct {
	entities Entities
	catalog  Catalog
	subs     Subscriptions
	// platformCurrency is the currency of tenants that carry none.
	platformCurrency string
	// TTL is how long a cached answer is used; Refresh the least time between two refreshes
	// forced by a miss.
	TTL, Refresh time.Duration
	Now          func() time.Time

	mu      sync.Mutex
	tenants map[string]cached[*usage.Tenant]
	chains  map[string]cached[[]*hierarchy.Entity]
	skus    cached[map[string]*catalog.SKU] // by lower-case code
	subsOf  map[string]cached[[]*subView]   // by tenant id
	plans   map[string]cached[*catalog.Plan]
}

type cached[T any] struct {
	v  T
	at time.Time
}

// subView is a subscription with the plan it had over time.
type subView struct {
	s *subscriptions.Subscription
	// plans are the plan ids in effect from each instant, oldest first.
	plans []planFrom
}

type planFrom struct {
	from time.Time
	plan string
}

// planAt returns the plan in effect at t (the first one before its start).
func (v *subView) planAt(t time.Time) string {
	id := v.s.PlanID
	if len(v.plans) > 0 {
		id = v.plans[0].plan
	}
	for _, p := range v.plans {
		if !p.from.After(t) {
			id = p.plan
		}
	}
	return id
}

// activeAt reports whether the subscription was active at t: started, not yet cancelled.
func (v *subView) activeAt(t time.Time) bool {
	s := v.s
	if t.Before(s.StartDate) {
		return false
	}
	if s.CancelAt != nil {
		return t.Before(*s.CancelAt)
	}
	return s.Status != subscriptions.StatusCancelled || t.Before(s.UpdatedAt)
}

// New returns a Source with a one-minute cache that a miss refreshes at most ten times a second.
func New(e Entities, c Catalog, s Subscriptions, platformCurrency string) *Source {
	return &Source{entities: e, catalog: c, subs: s, platformCurrency: platformCurrency, TTL: time.Minute, Refresh: 100 * time.Millisecond,
		tenants: map[string]cached[*usage.Tenant]{}, chains: map[string]cached[[]*hierarchy.Entity]{},
		subsOf: map[string]cached[[]*subView]{}, plans: map[string]cached[*catalog.Plan]{}}
}

func (s *Source) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Source) fresh(at time.Time, ttl time.Duration) bool { return fresh(s.now(), at, ttl) }

// fresh reports whether an entry cached at `at` may still be served at now. An entry from the
// future (the clock was set back) is stale: served, it would be fresh until the clock caught up.
func fresh(now, at time.Time, ttl time.Duration) bool {
	age := now.Sub(at)
	return !at.IsZero() && age >= 0 && age < ttl
}

// Tenant implements usage.Tenants.
func (s *Source) Tenant(ctx context.Context, id string) (*usage.Tenant, error) {
	s.mu.Lock()
	c, ok := s.tenants[id]
	s.mu.Unlock()
	if ok && s.fresh(c.at, s.TTL) {
		return c.v, nil
	}
	e, err := s.entities.GetEntity(ctx, id)
	if err != nil {
		return nil, err
	}
	if e.Type != access.Tenant {
		return nil, apperr.NotFoundf("No tenant with this id.")
	}
	t := &usage.Tenant{ID: e.ID, Path: e.Path, Currency: e.Currency, InvoicedThrough: e.InvoicedThrough}
	if t.Currency == "" {
		t.Currency = s.platformCurrency
	}
	s.mu.Lock()
	s.tenants[id] = cached[*usage.Tenant]{v: t, at: s.now()}
	s.mu.Unlock()
	return t, nil
}

// Forget drops what is cached of a tenant (its entity, chain and subscriptions), so that the
// next lookup reads the stores: for a change that must show at once (tests, tools).
func (s *Source) Forget(tenantID string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tenants, tenantID)
	delete(s.chains, tenantID)
	delete(s.subsOf, tenantID)
}

// skuByCode returns the SKU with code (any case). A miss reloads the list, unless it was loaded
// within the refresh interval. Invalid "unknown_sku" when there is no such SKU.
func (s *Source) skuByCode(ctx context.Context, code string) (*catalog.SKU, error) {
	key := strings.ToLower(code)
	unknown := func() error { return apperr.Field("sku", "unknown_sku", "no SKU has this code") }
	s.mu.Lock()
	c := s.skus
	s.mu.Unlock()
	now := s.now()
	if k, ok := c.v[key]; ok && fresh(now, c.at, s.TTL) {
		return k, nil
	}
	if c.v != nil && fresh(now, c.at, s.Refresh) {
		if k, ok := c.v[key]; ok {
			return k, nil
		}
		return nil, unknown()
	}
	list, err := s.catalog.ListSKUs(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]*catalog.SKU, len(list))
	for _, k := range list {
		m[strings.ToLower(k.Code)] = k
	}
	s.mu.Lock()
	s.skus = cached[map[string]*catalog.SKU]{v: m, at: s.now()}
	s.mu.Unlock()
	if k, ok := m[key]; ok {
		return k, nil
	}
	return nil, unknown()
}

func (s *Source) plan(ctx context.Context, id string, now time.Time) (*catalog.Plan, error) {
	s.mu.Lock()
	c, ok := s.plans[id]
	s.mu.Unlock()
	if ok && fresh(now, c.at, s.TTL) {
		return c.v, nil
	}
	p, err := s.catalog.GetPlan(ctx, id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.plans[id] = cached[*catalog.Plan]{v: p, at: s.now()}
	s.mu.Unlock()
	return p, nil
}

// tenantSubs returns the tenant's subscriptions with their plan timelines; force reloads them
// unless they were loaded within the refresh interval.
func (s *Source) tenantSubs(ctx context.Context, t *usage.Tenant, force bool, now time.Time) ([]*subView, error) {
	s.mu.Lock()
	c, ok := s.subsOf[t.ID]
	s.mu.Unlock()
	if ok && (fresh(now, c.at, s.Refresh) || (!force && fresh(now, c.at, s.TTL))) {
		return c.v, nil
	}
	list, err := s.subs.ListSubscriptions(ctx, t.Path)
	if err != nil {
		return nil, err
	}
	views := make([]*subView, 0, len(list))
	for _, sub := range list {
		if sub.TenantID != t.ID {
			continue
		}
		v := &subView{s: sub}
		hist, err := s.subs.History(ctx, sub.ID)
		if err != nil {
			return nil, err
		}
		for _, h := range hist {
			if h.After == nil || h.After.PlanID == "" {
				continue
			}
			from := h.At
			if h.Before == nil {
				from = time.Time{} // the creation: the first plan, from the start
			}
			if len(v.plans) == 0 || v.plans[len(v.plans)-1].plan != h.After.PlanID {
				v.plans = append(v.plans, planFrom{from: from, plan: h.After.PlanID})
			}
		}
		views = append(views, v)
	}
	slices.SortFunc(views, func(a, b *subView) int { return strings.Compare(a.s.ID, b.s.ID) })
	s.mu.Lock()
	s.subsOf[t.ID] = cached[[]*subView]{v: views, at: s.now()}
	s.mu.Unlock()
	return views, nil
}

// charges reports whether plan id charges the SKU, and how.
func (s *Source) charges(ctx context.Context, planID string, k *catalog.SKU, now time.Time) (*catalog.PlanCharge, error) {
	p, err := s.plan(ctx, planID, now)
	if apperr.Is(err, apperr.NotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for i := range p.Charges {
		if c := &p.Charges[i]; c.SKUID == k.ID || strings.EqualFold(c.SKUCode, k.Code) {
			return c, nil
		}
	}
	return nil, nil
}

// Resolve implements usage.Resolver.
func (s *Source) Resolve(ctx context.Context, t *usage.Tenant, subID, code string, at time.Time) (usage.Resolution, error) {
	k, err := s.skuByCode(ctx, code)
	if err != nil {
		return usage.Resolution{}, err
	}
	now := s.now()
	for attempt := 0; attempt < 2; attempt++ {
		views, err := s.tenantSubs(ctx, t, attempt > 0, now)
		if err != nil {
			return usage.Resolution{}, err
		}
		var found []*subView
		var named *subView
		for _, v := range views {
			if subID != "" && v.s.ID != subID {
				continue
			}
			named = v
			if !v.activeAt(at) {
				continue
			}
			c, err := s.charges(ctx, v.planAt(at), k, now)
			if err != nil {
				return usage.Resolution{}, err
			}
			if c != nil {
				found = append(found, v)
			}
		}
		switch {
		case len(found) == 1:
			return usage.Resolution{SubscriptionID: found[0].s.ID, SKU: k.Code}, nil
		case len(found) > 1:
			return usage.Resolution{}, apperr.Field("subscriptionId", "ambiguous",
				"the tenant has several subscriptions charging this SKU at that time: send subscriptionId")
		case attempt == 0:
			continue // perhaps a subscription created a moment ago: read them again
		case subID != "" && named == nil:
			return usage.Resolution{}, apperr.Field("subscriptionId", "not_found", "the tenant has no subscription with this id")
		case subID != "" && !named.activeAt(at):
			return usage.Resolution{}, apperr.Field("subscriptionId", "not_active", "the subscription was not active at timestamp")
		case subID != "":
			return usage.Resolution{}, apperr.Field("sku", "not_in_plan", "the subscription's plan did not charge this SKU at timestamp")
		}
	}
	return usage.Resolution{}, apperr.Field("sku", "no_subscription", "the tenant had no active subscription whose plan charges this SKU at timestamp")
}

// Thresholds implements usage.Catalog.
func (s *Source) Thresholds(ctx context.Context, code string) ([]money.Decimal, error) {
	k, err := s.skuByCode(ctx, code)
	if err != nil {
		if apperr.Is(err, apperr.Invalid) {
			return nil, apperr.NotFoundf("No SKU with this code.")
		}
		return nil, err
	}
	return k.Thresholds, nil
}

// SubscriptionTenant implements usage.Subscriptions.
func (s *Source) SubscriptionTenant(ctx context.Context, id string) (string, error) {
	sub, err := s.subs.GetSubscription(ctx, id)
	if err != nil {
		return "", err
	}
	return sub.TenantID, nil
}

// chain returns the entities on a tenant's path (platform first, the tenant last).
func (s *Source) chain(ctx context.Context, t *usage.Tenant) ([]*hierarchy.Entity, error) {
	s.mu.Lock()
	c, ok := s.chains[t.ID]
	s.mu.Unlock()
	if ok && s.fresh(c.at, s.TTL) {
		return c.v, nil
	}
	pathIDs := access.IDsOnPath(t.Path)
	got, err := s.entities.GetEntities(ctx, pathIDs)
	if err != nil {
		return nil, err
	}
	out := make([]*hierarchy.Entity, 0, len(pathIDs))
	for _, id := range pathIDs {
		e, ok := got[id]
		if !ok {
			return nil, apperr.Wrap(errors.New("ancestor "+id+" missing"), "usage price chain")
		}
		out = append(out, e)
	}
	s.mu.Lock()
	s.chains[t.ID] = cached[[]*hierarchy.Entity]{v: out, at: s.now()}
	s.mu.Unlock()
	return out, nil
}

// Charge implements usage.Pricer: the SKU's rate in effect in the period with the included
// quantity of the subscription's plan at the period's end (SPEC 11), carried down the tenant's
// markup chain as of the period (or replaced by the tenant's override, a complete rate with its
// own included quantity), rounded like an invoice line.
func (s *Source) Charge(ctx context.Context, ref usage.AggregateRef, quantity money.Decimal) (money.Money, error) {
	t, err := s.Tenant(ctx, ref.TenantID)
	if err != nil {
		return money.Money{}, err
	}
	k, err := s.skuByCode(ctx, ref.Key.SKU)
	if err != nil {
		return money.Money{}, apperr.New(apperr.NotFound, "unknown_sku", "No SKU has this code.")
	}
	p := ref.Key.Period
	rv, ok := k.RateAt(p)
	if !ok {
		return money.Money{}, apperr.New(apperr.Unprocessable, "no_rate", "The SKU has no rate in effect in the period.")
	}
	list := rv.Rate
	var charge *catalog.PlanCharge
	now := s.now()
	views, err := s.tenantSubs(ctx, t, false, now)
	if err != nil {
		return money.Money{}, err
	}
	end := p.End().Add(-time.Nanosecond)
	if now.Before(end) {
		end = now
	}
	for _, v := range views {
		if v.s.ID == ref.Key.SubscriptionID {
			if charge, err = s.charges(ctx, v.planAt(end), k, now); err != nil {
				return money.Money{}, err
			}
		}
	}
	if charge != nil {
		list = charge.Apply(list)
	}
	var override *pricing.Rate
	ovs, err := s.catalog.GetOverrides(ctx, t.ID)
	if err != nil {
		return money.Money{}, err
	}
	for _, o := range ovs {
		if o.SKUID == k.ID {
			if r := o.RateAt(p); r != nil {
				// A complete replacement rate: the plan's included quantity is the list
				// rate's, not the override's (docs/pricing.md), as on the invoice.
				or := *r
				override = &or
			}
		}
	}
	entities, err := s.chain(ctx, t)
	if err != nil {
		return money.Money{}, err
	}
	ch := pricing.Chain{Currency: t.Currency}
	for _, e := range entities {
		if e.Type != access.Distributor && e.Type != access.Partner {
			continue
		}
		m := money.Zero
		if txt := e.MarkupAt(p); txt != "" {
			if m, err = money.Parse(txt); err != nil {
				return money.Money{}, apperr.Wrap(err, "markup of "+e.ID)
			}
		}
		ch.Levels = append(ch.Levels, pricing.Level{EntityID: e.ID, Markup: m})
	}
	line, err := ch.PriceUsage(list, override, quantity)
	if err != nil {
		return money.Money{}, apperr.Wrap(err, "price usage")
	}
	return money.Money{Amount: line.Split.TenantRounded, Currency: t.Currency}, nil
}

var (
	_ usage.Tenants       = (*Source)(nil)
	_ usage.Resolver      = (*Source)(nil)
	_ usage.Catalog       = (*Source)(nil)
	_ usage.Pricer        = (*Source)(nil)
	_ usage.Subscriptions = (*Source)(nil)
)
