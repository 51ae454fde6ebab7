package catalog

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/pricing"
)

// PriceLists answers the effective prices of an entity in a period and keeps the tenants'
// price-list overrides (SPEC 8.3). Every method checks the permission first (Forbidden), then the
// caller's subtree (NotFound for an entity outside it).
type PriceLists struct {
	Catalog  Store
	Entities hierarchy.Store
	// PlatformCurrency is the currency of entities that carry none.
	PlatformCurrency string
	Now              func() time.Time
}

func (s *PriceLists) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// PriceListItem is one SKU's prices for one entity in one period. Buy is what the entity pays its
// parent per unit (its parent's sell rate; absent for the platform); Sell is what it charges its
// children: for the platform the list rate, for a distributor or partner its buy rate times
// (1 + its markup / 100), for a tenant what the tenant pays: its override when one is in effect,
// otherwise its partner's sell rate (equal to Buy). Every price of a rate (unit price, tier unit
// prices and flat fees, package price) is scaled; quantities are not.
type PriceListItem struct {
	EntityID   string            `json:"entityId"`
	EntityType access.EntityType `json:"entityType"`
	Period     period.Period     `json:"period"`
	SKUID      string            `json:"skuId"`
	Code       string            `json:"code"`
	Name       string            `json:"name"`
	Unit       string            `json:"unit,omitempty"`
	Currency   string            `json:"currency"`
	// EffectiveFrom is the date of the list rate version in effect in the period.
	EffectiveFrom string `json:"effectiveFrom"`
	// Markup is the entity's own markup in effect in the period, in percent (distributors and
	// partners; "0" when none is in effect yet).
	Markup string        `json:"markup,omitempty"`
	Buy    *pricing.Rate `json:"buy"`
	Sell   pricing.Rate  `json:"sell"`
	// Overridden reports that Sell is the tenant's price-list override; OverrideFrom is the
	// effective date of the override version in effect.
	Overridden   bool   `json:"overridden"`
	OverrideFrom string `json:"overrideFrom,omitempty"`
}

// PriceListPage is one page of a price list.
type PriceListPage struct {
	Period period.Period
	Items  []*PriceListItem
	Next   *listing.Cursor
}

// EntityPrices returns what an entity of type t buys and sells a SKU at, given the SKU's list
// rate and the markup factors in effect: above holds the factors of the channel levels between
// the platform and the entity (top first, the entity excluded), own the entity's own factor
// (distributors and partners; ignored otherwise), override a tenant's override rate in effect
// (nil for none). The platform buys nothing (buy is nil) and sells at list. The prices are exact:
// each level scales the previous level's rate by its factor.
func EntityPrices(t access.EntityType, list pricing.Rate, above []money.Decimal, own money.Decimal, override *pricing.Rate) (buy *pricing.Rate, sell pricing.Rate) {
	if t == access.Platform {
		return nil, list.Scale(money.NewFromInt(1))
	}
	b := list.Scale(money.NewFromInt(1))
	for _, f := range above {
		b = b.Scale(f)
	}
	switch {
	case t == access.Tenant && override != nil:
		sell = override.Scale(money.NewFromInt(1))
	case t == access.Tenant:
		sell = b.Scale(money.NewFromInt(1))
	default:
		sell = b.Scale(own)
	}
	return &b, sell
}

// factorAt returns the markup (as written) and the factor of a channel entity in period p.
func factorAt(e *hierarchy.Entity, p period.Period) (string, money.Decimal, error) {
	m := e.MarkupAt(p)
	if m == "" {
		return "0", money.NewFromInt(1), nil
	}
	d, err := money.Parse(m)
	if err != nil {
		return "", money.Decimal{}, apperr.Wrap(err, "markup of "+e.ID)
	}
	return m, pricing.Factor(d), nil
}

func (s *PriceLists) resolve(ctx context.Context, p access.Principal, id string) (*hierarchy.Entity, error) {
	e, err := s.Entities.GetEntity(ctx, id)
	if apperr.Is(err, apperr.NotFound) || (err == nil && !p.Covers(e.Path)) {
		return nil, apperr.NotFoundf("No entity with this id.")
	}
	return e, err
}

func (s *PriceLists) currencyOf(e *hierarchy.Entity) string {
	if e.Currency != "" {
		return e.Currency
	}
	return s.PlatformCurrency
}

// List returns a page of the price list of the entity with id in the period named by the
// "period" filter (YYYY-MM, default the current period): one item per SKU in the entity's
// currency (every SKU for the platform) that has a rate in effect in that period. Each ancestor's
// markup and each rate is the one in effect at the period's first instant. Search and sort use
// the SKU fields. Forbidden, Invalid, NotFound.
func (s *PriceLists) List(ctx context.Context, p access.Principal, id string, q listing.Query, after *listing.Cursor) (*PriceListPage, error) {
	if err := p.Require(access.PriceListsRead); err != nil {
		return nil, err
	}
	var f apperr.Fields
	if err := SKUFields.Validate(&q); err != nil {
		f.Merge("", err)
	}
	per := period.Of(s.now())
	if v := q.Filters["period"]; v != "" {
		pp, err := period.Parse(v)
		if err != nil {
			f.Add("period", "invalid", "period must be YYYY-MM")
		}
		per = pp
	}
	if err := f.Err(); err != nil {
		return nil, err
	}
	e, err := s.resolve(ctx, p, id)
	if err != nil {
		return nil, err
	}
	// The markup chain: every channel entity on the path, in effect at the period's start.
	pathIDs := access.IDsOnPath(e.Path)
	ancestors, err := s.Entities.GetEntities(ctx, pathIDs)
	if err != nil {
		return nil, err
	}
	var above []money.Decimal
	own, ownMarkup := money.NewFromInt(1), ""
	for _, aid := range pathIDs {
		a, ok := ancestors[aid]
		if !ok {
			return nil, apperr.Wrap(errors.New("ancestor "+aid+" missing"), "price list")
		}
		if a.Type != access.Distributor && a.Type != access.Partner {
			continue
		}
		m, factor, err := factorAt(a, per)
		if err != nil {
			return nil, err
		}
		if a.ID == e.ID {
			own, ownMarkup = factor, m
		} else {
			above = append(above, factor)
		}
	}
	skus, err := s.Catalog.ListSKUs(ctx)
	if err != nil {
		return nil, err
	}
	currency := s.currencyOf(e)
	skus = slices.DeleteFunc(skus, func(k *SKU) bool {
		_, ok := k.RateAt(per)
		return !ok || (e.Type != access.Platform && k.Currency != currency)
	})
	page, next := listing.Apply(SKUFields, skus, q, after)
	overrides := map[string]*Override{}
	if e.Type == access.Tenant {
		os, err := s.Catalog.GetOverrides(ctx, e.ID)
		if err != nil {
			return nil, err
		}
		for _, o := range os {
			overrides[o.SKUID] = o
		}
	}
	items := make([]*PriceListItem, 0, len(page))
	for _, k := range page {
		v, _ := k.RateAt(per)
		it := &PriceListItem{EntityID: e.ID, EntityType: e.Type, Period: per, SKUID: k.ID, Code: k.Code, Name: k.Name,
			Unit: k.Unit, Currency: k.Currency, EffectiveFrom: v.EffectiveFrom, Markup: ownMarkup}
		var ov *pricing.Rate
		if o := overrides[k.ID]; o != nil {
			if ov = o.RateAt(per); ov != nil {
				it.Overridden = true
				for _, ver := range o.Versions {
					if period.InEffect(ver.EffectiveFrom, per) {
						it.OverrideFrom = ver.EffectiveFrom
						break
					}
				}
			}
		}
		it.Buy, it.Sell = EntityPrices(e.Type, v.Rate, above, own, ov)
		items = append(items, it)
	}
	return &PriceListPage{Period: per, Items: items, Next: next}, nil
}

// overrideTarget resolves the tenant and SKU of an override: the tenant must lie strictly below
// the caller, the SKU exist in the tenant's currency. NotFound, Unprocessable.
func (s *PriceLists) overrideTarget(ctx context.Context, p access.Principal, tenantID, skuID string) (*hierarchy.Entity, *SKU, error) {
	e, err := s.resolve(ctx, p, tenantID)
	if err != nil {
		return nil, nil, err
	}
	if e.Type != access.Tenant {
		return nil, nil, apperr.New(apperr.Unprocessable, "not_a_tenant", "Price-list overrides exist for tenants only; distributors and partners price through their markups.")
	}
	if !p.Above(e.Path) {
		return nil, nil, apperr.New(apperr.Forbidden, "forbidden", "A tenant's override is set by its channel, not by the tenant.")
	}
	k, err := s.Catalog.GetSKU(ctx, skuID)
	if apperr.Is(err, apperr.NotFound) {
		return nil, nil, apperr.NotFoundf("No SKU with this id.")
	}
	if err != nil {
		return nil, nil, err
	}
	if c := s.currencyOf(e); k.Currency != c {
		return nil, nil, apperr.Newf(apperr.Unprocessable, "currency_mismatch", "The SKU is priced in %s, the tenant pays in %s.", k.Currency, c)
	}
	return e, k, nil
}

// effectiveChange returns the effective date of a change (default: the next period's first day)
// after refusing one that falls before the current period's first day (notBefore). Invalid.
func effectiveChange(date string, now time.Time) (string, error) {
	var f apperr.Fields
	checkDate(&f, "effectiveFrom", date)
	if err := f.Err(); err != nil {
		return "", err
	}
	if date == "" {
		date = period.Of(now).Next().FirstDay()
	}
	notBefore(&f, "effectiveFrom", date, now)
	return date, f.Err()
}

// PutOverride sets the rate a tenant pays for a SKU from the first period starting on or after
// in.EffectiveFrom (default: the next period; the current period's first day reprices the
// running one), keeping every earlier version. Forbidden, Invalid, NotFound, Unprocessable,
// Conflict.
func (s *PriceLists) PutOverride(ctx context.Context, p access.Principal, tenantID, skuID string, in OverrideInput) (*Override, error) {
	if err := p.Require(access.PriceListsWrite); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	now := s.now()
	from, err := effectiveChange(in.EffectiveFrom, now)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.overrideTarget(ctx, p, tenantID, skuID); err != nil {
		return nil, err
	}
	rate := in.rate
	return s.Catalog.UpdateOverride(ctx, tenantID, skuID, func(o *Override) error {
		// In front, so that the stable sort puts it before a version with the same date and
		// the same recording time: the later write wins even when the clock did not move.
		o.Versions = append([]OverrideVersion{{EffectiveFrom: from, Rate: &rate, CreatedAt: now, CreatedBy: p.UserID}}, o.Versions...)
		sortOverride(o.Versions)
		o.UpdatedAt = now
		return nil
	})
}

var errUnchanged = errors.New("unchanged")

// EndOverride ends a tenant's override for a SKU from the first period starting on or after
// effectiveFrom (default: the next period): from then on the tenant pays its partner's sell price
// again. Ending an override that is already ended by then changes nothing. Forbidden, Invalid,
// NotFound (also when the tenant never had an override for the SKU), Unprocessable, Conflict.
func (s *PriceLists) EndOverride(ctx context.Context, p access.Principal, tenantID, skuID, effectiveFrom string) (*Override, error) {
	if err := p.Require(access.PriceListsWrite); err != nil {
		return nil, err
	}
	now := s.now()
	from, err := effectiveChange(effectiveFrom, now)
	if err != nil {
		return nil, err
	}
	if _, _, err := s.overrideTarget(ctx, p, tenantID, skuID); err != nil {
		return nil, err
	}
	fromDate, _ := period.ParseDate(from) // checked by effectiveChange
	per := period.FirstFrom(fromDate)
	var current *Override
	o, err := s.Catalog.UpdateOverride(ctx, tenantID, skuID, func(o *Override) error {
		switch {
		case len(o.Versions) == 0:
			return apperr.NotFoundf("No price-list override for this tenant and SKU.")
		case o.endedFrom(per):
			current = o
			return errUnchanged
		}
		// End it from `from`, and end again at every later date a rate was scheduled for, so that
		// no scheduled version outlives the end; the history keeps them all.
		ends := []string{from}
		for _, v := range o.Versions {
			d, err := period.ParseDate(v.EffectiveFrom)
			if err == nil && v.EffectiveFrom > from && o.RateAt(period.FirstFrom(d)) != nil && !slices.Contains(ends, v.EffectiveFrom) {
				ends = append(ends, v.EffectiveFrom)
			}
		}
		added := make([]OverrideVersion, 0, len(ends))
		for _, d := range ends {
			added = append(added, OverrideVersion{EffectiveFrom: d, CreatedAt: now, CreatedBy: p.UserID})
		}
		o.Versions = append(added, o.Versions...) // in front, as in PutOverride
		sortOverride(o.Versions)
		o.UpdatedAt = now
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return current, nil
	}
	return o, err
}
