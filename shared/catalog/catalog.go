// Package catalog holds what the platform sells: SKUs with their effective-dated rates, plans
// that bundle a seat price with SKU charges, and the tenant price-list overrides; and the
// services that apply their rules for a caller, including the price list of an entity (SPEC 8).
// It knows nothing of DynamoDB or HTTP; the pricing arithmetic is in shared/pricing.
package catalog

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/pricing"
)

// Plan states. A draft is editable; publishing freezes it and opens it to subscriptions;
// retiring closes it to new subscriptions while existing ones keep running.
const (
	PlanDraft     = "draft"
	PlanPublished = "published"
	PlanRetired   = "retired"
)

// Limits that keep one SKU or plan inside one storage item and one transaction.
const (
	MaxTiers      = 50
	MaxThresholds = 20
	MaxCharges    = 50
)

// RateVersion is one entry of a SKU's rate history: the rate that applies from the first billing
// period starting on or after EffectiveFrom (SPEC 8.3).
type RateVersion struct {
	// EffectiveFrom is a date, YYYY-MM-DD.
	EffectiveFrom string `json:"effectiveFrom"`
	pricing.Rate
	CreatedAt time.Time `json:"createdAt"`
	CreatedBy string    `json:"createdBy,omitempty"`
}

// SKU is a priced unit of usage (SPEC 8.1). Its rate is effective-dated: Rates holds every
// version ever recorded, newest first, and RateAt picks the one for a period. The embedded Rate
// and EffectiveFrom show the version in effect in the current period (or, before the first one
// starts, the first one); the service fills them in on the way out.
type SKU struct {
	ID         string          `json:"id"`
	Code       string          `json:"code"`
	Name       string          `json:"name"`
	Unit       string          `json:"unit,omitempty"`
	Currency   string          `json:"currency"`
	Thresholds []money.Decimal `json:"thresholds"`
	pricing.Rate
	EffectiveFrom string        `json:"effectiveFrom"`
	Rates         []RateVersion `json:"rates"`
	// PlanCount is how many plans (of any status) charge this SKU; it must be 0 to delete it.
	PlanCount int       `json:"planCount"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
	Version   int64     `json:"-"`
}

// RateAt returns the rate version in effect in period p: the newest one whose effectiveFrom is on
// or before p's first instant. ok is false when no version is in effect yet in p.
func (s *SKU) RateAt(p period.Period) (v RateVersion, ok bool) {
	for _, r := range s.Rates { // newest first
		if period.InEffect(r.EffectiveFrom, p) {
			return r, true
		}
	}
	return RateVersion{}, false
}

// show sets the top-level rate to the version in effect in p, or the earliest one when none is
// in effect yet.
func (s *SKU) show(p period.Period) {
	v, ok := s.RateAt(p)
	if !ok && len(s.Rates) > 0 {
		v = s.Rates[len(s.Rates)-1]
	}
	s.Rate, s.EffectiveFrom = v.Rate, v.EffectiveFrom
	if s.Thresholds == nil {
		s.Thresholds = []money.Decimal{}
	}
}

// sortRates orders a rate history newest first: by effective date, then by when it was recorded,
// so that of two versions with one effective date the later one wins.
func sortRates(rs []RateVersion) {
	slices.SortStableFunc(rs, func(a, b RateVersion) int {
		if c := strings.Compare(b.EffectiveFrom, a.EffectiveFrom); c != 0 {
			return c
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
}

// PlanCharge is one SKU a plan charges usage for. SKUCode is the SKU's code, recorded with the
// charge (codes never change).
type PlanCharge struct {
	SKUID   string `json:"skuId"`
	SKUCode string `json:"skuCode"`
	// IncludedQuantity, when set, replaces the SKU rate's includedQuantity for subscribers of this
	// plan (see Apply).
	IncludedQuantity *money.Decimal `json:"includedQuantity,omitempty"`
}

// Apply returns the list rate a subscriber of the plan is charged for this SKU: r with the
// charge's includedQuantity when the charge sets one. Billing applies it to the list rate only: a
// tenant's override is a complete replacement rate with its own includedQuantity
// (docs/pricing.md).
func (c PlanCharge) Apply(r pricing.Rate) pricing.Rate {
	if c.IncludedQuantity != nil {
		r.IncludedQuantity = *c.IncludedQuantity
	}
	return r
}

// Plan bundles a per-seat monthly base price with usage charges (SPEC 8.2).
type Plan struct {
	ID           string        `json:"id"`
	Code         string        `json:"code"`
	Name         string        `json:"name"`
	Currency     string        `json:"currency"`
	BillingCycle string        `json:"billingCycle"`
	BasePrice    money.Decimal `json:"basePrice"`
	Charges      []PlanCharge  `json:"charges"`
	Status       string        `json:"status"`
	PublishedAt  *time.Time    `json:"publishedAt,omitempty"`
	RetiredAt    *time.Time    `json:"retiredAt,omitempty"`
	CreatedAt    time.Time     `json:"createdAt"`
	UpdatedAt    time.Time     `json:"updatedAt"`
	Version      int64         `json:"-"`
}

// SKUIDs returns the ids of the SKUs the plan charges, in charge order.
func (p *Plan) SKUIDs() []string {
	out := make([]string, 0, len(p.Charges))
	for _, c := range p.Charges {
		out = append(out, c.SKUID)
	}
	return out
}

// OverrideVersion is one entry of a tenant's price-list override history for a SKU. A nil Rate
// ends the override: from that period on the tenant pays its partner's sell price again.
type OverrideVersion struct {
	// EffectiveFrom is a date, YYYY-MM-DD; the entry applies from the first period starting on or
	// after it.
	EffectiveFrom string        `json:"effectiveFrom"`
	Rate          *pricing.Rate `json:"rate"`
	CreatedAt     time.Time     `json:"createdAt"`
	CreatedBy     string        `json:"createdBy,omitempty"`
}

// Override is a tenant's price-list override for one SKU (SPEC 8.3): a complete replacement rate
// the tenant pays instead of its partner's sell price, effective-dated like every price.
type Override struct {
	TenantID string `json:"tenantId"`
	SKUID    string `json:"skuId"`
	// Versions is the whole history, newest first.
	Versions  []OverrideVersion `json:"versions"`
	UpdatedAt time.Time         `json:"updatedAt"`
	Version   int64             `json:"-"`
}

// RateAt returns the override rate in effect in period p, or nil when there is none (never set,
// not started yet, or ended).
func (o *Override) RateAt(p period.Period) *pricing.Rate {
	for _, v := range o.Versions { // newest first
		if period.InEffect(v.EffectiveFrom, p) {
			return v.Rate
		}
	}
	return nil
}

// endedFrom reports whether no override rate is in effect in p or in any later period, so that
// ending the override from p would change nothing.
func (o *Override) endedFrom(p period.Period) bool {
	if o.RateAt(p) != nil {
		return false
	}
	for _, v := range o.Versions {
		d, err := period.ParseDate(v.EffectiveFrom)
		if err == nil && !period.InEffect(v.EffectiveFrom, p) && o.RateAt(period.FirstFrom(d)) != nil {
			return false // a rate scheduled after p
		}
	}
	return true
}

func sortOverride(vs []OverrideVersion) {
	slices.SortStableFunc(vs, func(a, b OverrideVersion) int {
		if c := strings.Compare(b.EffectiveFrom, a.EffectiveFrom); c != 0 {
			return c
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
}

// Store keeps SKUs, plans and overrides. Every multi-item change is atomic.
type Store interface {
	// CreateSKU stores s and reserves its code, atomically. Conflict "code_taken".
	CreateSKU(ctx context.Context, s *SKU) error
	// GetSKU returns the SKU with id. NotFound.
	GetSKU(ctx context.Context, id string) (*SKU, error)
	// GetSKUs returns the SKUs found among ids, keyed by id; missing ids are left out.
	GetSKUs(ctx context.Context, ids []string) (map[string]*SKU, error)
	// ListSKUs returns every SKU.
	ListSKUs(ctx context.Context) ([]*SKU, error)
	// UpdateSKU reads the SKU, calls fn on it and writes back the name, unit, thresholds and
	// rates only if nobody changed it meanwhile (retrying fn a few times). fn's error, NotFound,
	// Conflict "concurrent_update".
	UpdateSKU(ctx context.Context, id string, fn func(*SKU) error) (*SKU, error)
	// DeleteSKU removes the SKU and its code reservation while no plan charges it.
	// NotFound, Conflict "sku_in_use".
	DeleteSKU(ctx context.Context, id string) error

	// CreatePlan stores p, reserves its code and counts a reference on every SKU it charges, each
	// of which must exist in p's currency, atomically. Conflict "code_taken"; Unprocessable
	// naming charges[i].skuId when a SKU is gone or in another currency.
	CreatePlan(ctx context.Context, p *Plan) error
	// GetPlan returns the plan with id. NotFound.
	GetPlan(ctx context.Context, id string) (*Plan, error)
	// ListPlans returns every plan.
	ListPlans(ctx context.Context) ([]*Plan, error)
	// UpdatePlan reads the plan, calls fn on it and writes it back only if nobody changed it
	// meanwhile (retrying fn a few times), moving SKU references when the charges change (the
	// new SKUs must exist in the plan's currency). fn's error, NotFound, Unprocessable as in
	// CreatePlan, Conflict "concurrent_update".
	UpdatePlan(ctx context.Context, id string, fn func(*Plan) error) (*Plan, error)
	// DeletePlan removes a draft plan, its code reservation and its SKU references, atomically.
	// NotFound, Conflict "plan_not_draft".
	DeletePlan(ctx context.Context, id string) error

	// GetOverrides returns every override of a tenant (any SKU, ended ones included).
	GetOverrides(ctx context.Context, tenantID string) ([]*Override, error)
	// UpdateOverride reads the tenant's override for the SKU (an empty one when there is none),
	// calls fn on it and writes it back only if nobody changed it meanwhile. fn's error,
	// Conflict "concurrent_update".
	UpdateOverride(ctx context.Context, tenantID, skuID string, fn func(*Override) error) (*Override, error)
}
