package catalog

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/period"
)

// Service applies the catalog rules (SKUs and plans) for a caller. The catalog is the platform's
// and the same for everyone, so there is no subtree to check; every method checks the permission
// first (Forbidden). Draft plans are visible only to callers who may create plans: for anyone
// else a draft does not exist (NotFound).
type Service struct {
	Store Store
	// PlatformCurrency is the default currency of SKUs and plans.
	PlatformCurrency string
	Now              func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// notBefore refuses an effective date before the current period's first day (the same rule as
// markups): a period that has ended may already be invoiced and keeps the prices it was billed
// with. A date on the current period's first day passes: SPEC 8.3 puts such a change in effect
// from the running period, which is not invoiced before it ends; its charges are computed when
// asked for (GET /usage, billing), so the whole month is repriced at once and no invoice
// changes. Rate changes and overrides default to the next period so that the running one changes
// only when asked.
func notBefore(f *apperr.Fields, field, date string, now time.Time) {
	first := period.Of(now).FirstDay()
	if date < first {
		f.Add(field, "in_past", field+" must not fall before the current period ("+first+")")
	}
}

// SKUFields are the searchable and sortable fields of SKUs.
var SKUFields = listing.Fields[*SKU]{
	ID: func(s *SKU) string { return s.ID },
	Searchable: map[string]func(*SKU) string{
		"code":      func(s *SKU) string { return s.Code },
		"name":      func(s *SKU) string { return s.Name },
		"unit":      func(s *SKU) string { return s.Unit },
		"currency":  func(s *SKU) string { return s.Currency },
		"createdAt": func(s *SKU) string { return s.CreatedAt.Format(listing.TimeLayout) },
		"updatedAt": func(s *SKU) string { return s.UpdatedAt.Format(listing.TimeLayout) },
	},
	DefaultSort: "code",
}

// ListSKUs returns a page of SKUs, each showing the rate in effect now. Filter "currency".
// Forbidden, Invalid.
func (s *Service) ListSKUs(ctx context.Context, p access.Principal, q listing.Query, after *listing.Cursor) ([]*SKU, *listing.Cursor, error) {
	if err := p.Require(access.PricingList); err != nil {
		return nil, nil, err
	}
	if err := SKUFields.Validate(&q); err != nil {
		return nil, nil, err
	}
	all, err := s.Store.ListSKUs(ctx)
	if err != nil {
		return nil, nil, err
	}
	if c := q.Filters["currency"]; c != "" {
		all = slices.DeleteFunc(all, func(k *SKU) bool { return k.Currency != c })
	}
	page, next := listing.Apply(SKUFields, all, q, after)
	now := period.Of(s.now())
	for _, k := range page {
		k.show(now)
	}
	return page, next, nil
}

// GetSKU returns a SKU showing the rate in effect now. Forbidden, NotFound.
func (s *Service) GetSKU(ctx context.Context, p access.Principal, id string) (*SKU, error) {
	if err := p.Require(access.PricingRead); err != nil {
		return nil, err
	}
	k, err := s.getSKU(ctx, id)
	if err != nil {
		return nil, err
	}
	k.show(period.Of(s.now()))
	return k, nil
}

func (s *Service) getSKU(ctx context.Context, id string) (*SKU, error) {
	k, err := s.Store.GetSKU(ctx, id)
	if apperr.Is(err, apperr.NotFound) {
		return nil, apperr.NotFoundf("No SKU with this id.")
	}
	return k, err
}

// CreateSKU adds a SKU with its first rate. Forbidden, Invalid, Conflict "code_taken".
func (s *Service) CreateSKU(ctx context.Context, p access.Principal, in SKUInput) (*SKU, error) {
	if err := p.Require(access.PricingCreate); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	now := s.now()
	from := in.EffectiveFrom
	if from == "" {
		from = period.Of(now).FirstDay()
	}
	var f apperr.Fields
	notBefore(&f, "effectiveFrom", from, now)
	if err := f.Err(); err != nil {
		return nil, err
	}
	currency := in.Currency
	if currency == "" {
		currency = s.PlatformCurrency
	}
	k := &SKU{
		ID: ids.New("sku"), Code: in.Code, Name: in.Name, Unit: strings.TrimSpace(in.Unit), Currency: currency,
		Thresholds: in.thresholds,
		Rates:      []RateVersion{{EffectiveFrom: from, Rate: in.rate, CreatedAt: now, CreatedBy: p.UserID}},
		CreatedAt:  now, UpdatedAt: now,
	}
	if err := s.Store.CreateSKU(ctx, k); err != nil {
		return nil, err
	}
	k.show(period.Of(now))
	return k, nil
}

// UpdateSKU changes a SKU's name, unit or thresholds and, with a rate, records a new rate
// version effective from the first period starting on or after its effectiveFrom (default: the
// next period). An effectiveFrom before the current period's first day is refused; one on that
// day reprices the running period (see notBefore). Forbidden, Invalid, NotFound, Conflict.
func (s *Service) UpdateSKU(ctx context.Context, p access.Principal, id string, in SKUUpdateInput) (*SKU, error) {
	if err := p.Require(access.PricingUpdate); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	now := s.now()
	from := in.EffectiveFrom
	if in.rate != nil {
		if from == "" {
			from = period.Of(now).Next().FirstDay()
		}
		var f apperr.Fields
		notBefore(&f, "effectiveFrom", from, now)
		if err := f.Err(); err != nil {
			return nil, err
		}
	}
	if _, err := s.getSKU(ctx, id); err != nil {
		return nil, err
	}
	k, err := s.Store.UpdateSKU(ctx, id, func(k *SKU) error {
		if in.Name != nil {
			k.Name = *in.Name
		}
		if in.Unit != nil {
			k.Unit = strings.TrimSpace(*in.Unit)
		}
		if in.Thresholds != nil {
			k.Thresholds = in.thresholds
		}
		if in.rate != nil {
			// In front, so that the stable sort puts it before a version with the same date and
			// the same recording time: the later write wins even when the clock did not move.
			k.Rates = append([]RateVersion{{EffectiveFrom: from, Rate: *in.rate, CreatedAt: now, CreatedBy: p.UserID}}, k.Rates...)
			sortRates(k.Rates)
		}
		k.UpdatedAt = now
		return nil
	})
	if err != nil {
		return nil, err
	}
	k.show(period.Of(now))
	return k, nil
}

// DeleteSKU removes a SKU that no plan charges. Forbidden, NotFound, Conflict "sku_in_use".
func (s *Service) DeleteSKU(ctx context.Context, p access.Principal, id string) error {
	if err := p.Require(access.PricingDelete); err != nil {
		return err
	}
	if _, err := s.getSKU(ctx, id); err != nil {
		return err
	}
	return s.Store.DeleteSKU(ctx, id)
}

// PlanFields are the searchable and sortable fields of plans.
var PlanFields = listing.Fields[*Plan]{
	ID: func(p *Plan) string { return p.ID },
	Searchable: map[string]func(*Plan) string{
		"code":      func(p *Plan) string { return p.Code },
		"name":      func(p *Plan) string { return p.Name },
		"currency":  func(p *Plan) string { return p.Currency },
		"status":    func(p *Plan) string { return p.Status },
		"createdAt": func(p *Plan) string { return p.CreatedAt.Format(listing.TimeLayout) },
		"updatedAt": func(p *Plan) string { return p.UpdatedAt.Format(listing.TimeLayout) },
	},
	DefaultSort: "code",
}

// seesDrafts reports whether the caller may see draft plans: only those who may create plans.
func seesDrafts(p access.Principal) bool { return p.Can(access.PlansCreate) }

// ListPlans returns a page of plans. Filters "status" and "currency". Callers who cannot create
// plans never see drafts. Forbidden, Invalid.
func (s *Service) ListPlans(ctx context.Context, p access.Principal, q listing.Query, after *listing.Cursor) ([]*Plan, *listing.Cursor, error) {
	if err := p.Require(access.PlansList); err != nil {
		return nil, nil, err
	}
	var f apperr.Fields
	if err := PlanFields.Validate(&q); err != nil {
		f.Merge("", err)
	}
	status := q.Filters["status"]
	if status != "" && status != PlanDraft && status != PlanPublished && status != PlanRetired {
		f.Add("status", "invalid", "status must be draft, published or retired")
	}
	if err := f.Err(); err != nil {
		return nil, nil, err
	}
	all, err := s.Store.ListPlans(ctx)
	if err != nil {
		return nil, nil, err
	}
	currency := q.Filters["currency"]
	all = slices.DeleteFunc(all, func(pl *Plan) bool {
		return (pl.Status == PlanDraft && !seesDrafts(p)) || (status != "" && pl.Status != status) ||
			(currency != "" && pl.Currency != currency)
	})
	page, next := listing.Apply(PlanFields, all, q, after)
	return page, next, nil
}

// GetPlan returns a plan. Forbidden, NotFound.
func (s *Service) GetPlan(ctx context.Context, p access.Principal, id string) (*Plan, error) {
	if err := p.Require(access.PlansRead); err != nil {
		return nil, err
	}
	return s.getPlan(ctx, p, id)
}

func (s *Service) getPlan(ctx context.Context, p access.Principal, id string) (*Plan, error) {
	pl, err := s.Store.GetPlan(ctx, id)
	if apperr.Is(err, apperr.NotFound) || (err == nil && pl.Status == PlanDraft && !seesDrafts(p)) {
		return nil, apperr.NotFoundf("No plan with this id.")
	}
	return pl, err
}

// resolveCharges checks that every charged SKU exists in the plan's currency and records its
// code on the charge. Unprocessable naming charges[i].skuId otherwise.
func (s *Service) resolveCharges(ctx context.Context, currency string, charges []PlanCharge) error {
	if len(charges) == 0 {
		return nil
	}
	ids := make([]string, 0, len(charges))
	for _, c := range charges {
		ids = append(ids, c.SKUID)
	}
	skus, err := s.Store.GetSKUs(ctx, ids)
	if err != nil {
		return err
	}
	var f apperr.Fields
	for i := range charges {
		field := fmt.Sprintf("charges[%d].skuId", i)
		k, ok := skus[charges[i].SKUID]
		switch {
		case !ok:
			f.Add(field, "not_found", "no SKU with this id")
		case k.Currency != currency:
			f.Add(field, "currency_mismatch", "the SKU is priced in "+k.Currency+", the plan in "+currency)
		default:
			charges[i].SKUCode = k.Code
		}
	}
	return f.Unprocessable()
}

// CreatePlan adds a draft plan. Every charge must name an existing SKU in the plan's currency.
// Forbidden, Invalid, Unprocessable, Conflict "code_taken".
func (s *Service) CreatePlan(ctx context.Context, p access.Principal, in PlanInput) (*Plan, error) {
	if err := p.Require(access.PlansCreate); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	currency := in.Currency
	if currency == "" {
		currency = s.PlatformCurrency
	}
	if err := s.resolveCharges(ctx, currency, in.charges); err != nil {
		return nil, err
	}
	now := s.now()
	pl := &Plan{
		ID: ids.New("pln"), Code: in.Code, Name: in.Name, Currency: currency, BillingCycle: "monthly",
		BasePrice: in.basePrice, Charges: in.charges, Status: PlanDraft, CreatedAt: now, UpdatedAt: now,
	}
	if err := s.Store.CreatePlan(ctx, pl); err != nil {
		return nil, err
	}
	return pl, nil
}

func frozen(pl *Plan) error {
	return apperr.Newf(apperr.Conflict, "plan_frozen", "The plan is %s: it can no longer be changed. Create a new plan instead.", pl.Status)
}

// UpdatePlan changes a draft plan. Forbidden, Invalid, NotFound, Unprocessable, Conflict
// "plan_frozen" once the plan is published or retired.
func (s *Service) UpdatePlan(ctx context.Context, p access.Principal, id string, in PlanUpdateInput) (*Plan, error) {
	if err := p.Require(access.PlansUpdate); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	cur, err := s.getPlan(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if cur.Status != PlanDraft {
		return nil, frozen(cur)
	}
	currency := cur.Currency
	if in.Currency != nil {
		currency = *in.Currency
	}
	charges := cur.Charges
	if in.Charges != nil {
		charges = in.charges
	}
	if in.Currency != nil || in.Charges != nil {
		if err := s.resolveCharges(ctx, currency, charges); err != nil {
			return nil, err
		}
	}
	now := s.now()
	return s.Store.UpdatePlan(ctx, id, func(pl *Plan) error {
		if pl.Status != PlanDraft {
			return frozen(pl)
		}
		if in.Name != nil {
			pl.Name = *in.Name
		}
		if in.BillingCycle != nil && *in.BillingCycle != "" {
			pl.BillingCycle = *in.BillingCycle
		}
		if in.BasePrice != nil {
			pl.BasePrice = in.basePrice
		}
		pl.Currency = currency
		pl.Charges = append([]PlanCharge(nil), charges...)
		pl.UpdatedAt = now
		return nil
	})
}

// DeletePlan removes a draft plan. Forbidden, NotFound, Conflict "plan_not_draft".
func (s *Service) DeletePlan(ctx context.Context, p access.Principal, id string) error {
	if err := p.Require(access.PlansDelete); err != nil {
		return err
	}
	pl, err := s.getPlan(ctx, p, id)
	if err != nil {
		return err
	}
	if pl.Status != PlanDraft {
		return apperr.New(apperr.Conflict, "plan_not_draft", "Only draft plans can be deleted; retire a published plan instead.")
	}
	return s.Store.DeletePlan(ctx, id)
}

// PublishPlan freezes a draft plan and opens it to subscriptions. Forbidden, NotFound, Conflict
// "plan_not_draft".
func (s *Service) PublishPlan(ctx context.Context, p access.Principal, id string) (*Plan, error) {
	if err := p.Require(access.PlansPublish); err != nil {
		return nil, err
	}
	if _, err := s.getPlan(ctx, p, id); err != nil {
		return nil, err
	}
	now := s.now()
	return s.Store.UpdatePlan(ctx, id, func(pl *Plan) error {
		if pl.Status != PlanDraft {
			return apperr.Newf(apperr.Conflict, "plan_not_draft", "The plan is already %s.", pl.Status)
		}
		pl.Status, pl.PublishedAt, pl.UpdatedAt = PlanPublished, &now, now
		return nil
	})
}

// RetirePlan closes a published plan to new subscriptions; existing subscriptions keep running.
// Forbidden, NotFound, Conflict "plan_not_published".
func (s *Service) RetirePlan(ctx context.Context, p access.Principal, id string) (*Plan, error) {
	if err := p.Require(access.PlansRetire); err != nil {
		return nil, err
	}
	if _, err := s.getPlan(ctx, p, id); err != nil {
		return nil, err
	}
	now := s.now()
	return s.Store.UpdatePlan(ctx, id, func(pl *Plan) error {
		if pl.Status != PlanPublished {
			return apperr.Newf(apperr.Conflict, "plan_not_published", "Only published plans can be retired; this one is %s.", pl.Status)
		}
		pl.Status, pl.RetiredAt, pl.UpdatedAt = PlanRetired, &now, now
		return nil
	})
}
