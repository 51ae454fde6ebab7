package pricing

import (
	"fmt"

	"github.com/channelbilling/cms/shared/money"
)

var (
	// exactLimits[m] is 10^(Precision-1-m), the bound Split puts on amounts rounded to m minor
	// digits (see Split).
	exactLimits = func() []money.Decimal {
		out := make([]money.Decimal, 5)
		for m := range out {
			out[m], _ = money.Parse(fmt.Sprintf("1e%d", money.Precision-1-m))
		}
		return out
	}()
	one     = money.NewFromInt(1)
	percent = money.New(1, 2) // 0.01: multiplying by it is exact, dividing by 100 need not be
)

// Factor returns the price factor of a markup given in percent: 1 + markupPercent/100
// (10 -> 1.1, 0 -> 1, -5 -> 0.95), exactly and without trailing zeros, so that prices multiplied
// by it keep a short scale (0.10 * 1.1 = 0.110, not 0.11000).
func Factor(markupPercent money.Decimal) money.Decimal {
	return one.Add(markupPercent.Mul(percent)).Reduce()
}

// Level is one channel entity between the platform and the tenant, with the markup in effect
// for the period being priced (SPEC 8.3: the one in effect at the period's first instant).
type Level struct {
	// EntityID identifies the distributor or partner.
	EntityID string `json:"entityId"`
	// Markup is the entity's markup in percent ("10.0" for 10 %).
	Markup money.Decimal `json:"markup"`
}

// Chain is the path an amount travels from the platform's list price to the tenant: the platform
// sells at list to Levels[0], each level sells to the next at its buy price times its factor, and
// the last level (the tenant's partner) sells to the tenant. A tenant under a distributor has
// two levels [distributor, partner]; under a distributor-less partner, one [partner].
type Chain struct {
	// Currency is the ISO 4217 code the amounts are in; rounding uses its minor unit.
	Currency string `json:"currency"`
	// Levels are ordered from the platform down: first the entity whose parent is the platform,
	// last the tenant's partner.
	Levels []Level `json:"levels"`
}

// Validate reports every problem with c as joined *FieldErrors, or nil: the currency must be
// known, there must be at least one level (a tenant always has a partner, SPEC 3), every level
// needs an entity id, and every markup must be greater than -100 % (a factor of 0 or less would
// make the entity give its goods away or pay to sell them).
func (c Chain) Validate() error {
	var errs fieldErrors
	if !money.ValidCurrency(c.Currency) {
		errs.add("currency", CodeInvalid, "must be a known ISO 4217 currency code")
	}
	if len(c.Levels) == 0 {
		errs.add("levels", CodeRequired, "at least one level (the tenant's partner) is required")
	}
	for i, l := range c.Levels {
		if l.EntityID == "" {
			errs.add(fmt.Sprintf("levels[%d].entityId", i), CodeRequired, "is required")
		}
		if Factor(l.Markup).Sign() <= 0 {
			errs.add(fmt.Sprintf("levels[%d].markup", i), CodeInvalid, "must be greater than -100")
		}
	}
	return errs.err()
}

// Factor returns the product of the levels' factors: what the list price is multiplied by to get
// the tenant's price when there is no override (1.1 * 1.2 = 1.32 in the worked example).
func (c Chain) Factor() money.Decimal {
	f := one
	for _, l := range c.Levels {
		f = f.Mul(Factor(l.Markup))
	}
	return f
}

// LevelAmount is what one channel entity buys and sells a line at, and what it earns on it.
type LevelAmount struct {
	// EntityID identifies the distributor or partner.
	EntityID string `json:"entityId"`
	// Buy is the full-precision amount the entity pays its parent (its parent's Sell).
	Buy money.Decimal `json:"buy"`
	// Sell is the full-precision amount its child pays it (the tenant's amount for the last level).
	Sell money.Decimal `json:"sell"`
	// BuyRounded is Buy rounded to the currency's minor unit: the entity's cost.
	BuyRounded money.Decimal `json:"buyRounded"`
	// SellRounded is Sell rounded to the currency's minor unit: the entity's revenue.
	SellRounded money.Decimal `json:"sellRounded"`
	// Commission is SellRounded - BuyRounded (SPEC 12); negative when a tenant override is below
	// the partner's buy price.
	Commission money.Decimal `json:"commission"`
}

// Split is one line's amount at every level of a chain.
type Split struct {
	// Currency is the chain's currency.
	Currency string `json:"currency"`
	// List is the line's list amount at full precision (the platform's sell amount).
	List money.Decimal `json:"list"`
	// PlatformRevenue is List rounded: what the platform earns on the line.
	PlatformRevenue money.Decimal `json:"platformRevenue"`
	// Levels holds one entry per chain level, in chain order.
	Levels []LevelAmount `json:"levels"`
	// Tenant is what the tenant is charged at full precision: the last level's Sell.
	Tenant money.Decimal `json:"tenant"`
	// TenantRounded is Tenant rounded: the invoice line amount.
	TenantRounded money.Decimal `json:"tenantRounded"`
	// Overridden reports that Tenant came from a tenant price-list override instead of the
	// last level's markup.
	Overridden bool `json:"overridden"`
}

// Split carries a line's full-precision list amount down the chain (SPEC 12). Each level's sell
// amount is its buy amount times its factor, computed level by level at full precision; when
// tenantOverride is not nil it replaces the last level's sell amount (the tenant pays the
// override, SPEC 8.3, and the partner's commission is the difference to its buy price). Every
// amount is rounded once, half away from zero, and each commission is the difference of two
// rounded amounts, so PlatformRevenue + the sum of Commissions = TenantRounded exactly, for any
// input. It returns c's validation errors when c is invalid, and a *FieldError for "amount" when
// a rounded amount along the chain reaches 10^(33 - minor units) (10^31 in EUR), beyond which
// 34-digit arithmetic could no longer guarantee that identity.
func (c Chain) Split(list money.Decimal, tenantOverride *money.Decimal) (Split, error) {
	if err := c.Validate(); err != nil {
		return Split{}, err
	}
	// Each rounded amount must fit in Precision-1 digits: then every commission (a difference of
	// two of them) and every partial sum of the invariant is exact, which is what makes the
	// invariant hold by construction. For EUR that is 10^31, far above any invoice line.
	limit := exactLimit(money.MinorUnits(c.Currency))
	var tooLarge bool
	round := func(d money.Decimal) money.Decimal {
		r, _ := money.RoundMoney(d, c.Currency) // the currency was validated above
		if r.Abs().Cmp(limit) >= 0 {
			tooLarge = true
		}
		return r
	}
	s := Split{
		Currency:        c.Currency,
		List:            list,
		PlatformRevenue: round(list),
		Levels:          make([]LevelAmount, len(c.Levels)),
		Overridden:      tenantOverride != nil,
	}
	buy, buyRounded := list, s.PlatformRevenue
	for i, l := range c.Levels {
		sell := buy.Mul(Factor(l.Markup))
		if i == len(c.Levels)-1 && tenantOverride != nil {
			sell = *tenantOverride
		}
		sellRounded := round(sell)
		s.Levels[i] = LevelAmount{
			EntityID:    l.EntityID,
			Buy:         buy,
			Sell:        sell,
			BuyRounded:  buyRounded,
			SellRounded: sellRounded,
			Commission:  sellRounded.Sub(buyRounded),
		}
		buy, buyRounded = sell, sellRounded
	}
	s.Tenant, s.TenantRounded = buy, buyRounded
	if tooLarge {
		return Split{}, &FieldError{Field: "amount", Code: CodeInvalid,
			Message: fmt.Sprintf("an amount along the chain reaches %s %s, beyond what is computed exactly", limit, c.Currency)}
	}
	return s, nil
}

// exactLimit returns 10^(Precision-1-minor).
func exactLimit(minor int) money.Decimal {
	if minor >= 0 && minor < len(exactLimits) {
		return exactLimits[minor]
	}
	l, _ := money.Parse(fmt.Sprintf("1e%d", money.Precision-1-minor))
	return l
}

// UsageLine is one SKU's usage for a period priced for the tenant and split down the chain.
type UsageLine struct {
	// List is the charge at list prices.
	List Charge `json:"list"`
	// Tenant is the charge as the tenant sees it on the invoice line: List scaled by each level's
	// factor (unit prices, flat fees and amounts marked up; quantities unchanged), or the
	// override rate's own charge when there is one. Tenant.Amount equals Split.Tenant.
	Tenant Charge `json:"tenant"`
	// Split divides the line between the platform and the channel.
	Split Split `json:"split"`
}

// PriceUsage prices quantity with the SKU's list rate and carries it down the chain. A non-nil
// override is the tenant's price-list override for the SKU: a complete replacement Rate
// (model, prices and includedQuantity) that prices the tenant's charge directly, with no markup
// applied on top. It returns the validation errors of c, list or override, or a *FieldError when
// quantity is negative.
func (c Chain) PriceUsage(list Rate, override *Rate, quantity money.Decimal) (UsageLine, error) {
	if err := c.Validate(); err != nil {
		return UsageLine{}, err
	}
	lc, err := list.Charge(quantity)
	if err != nil {
		return UsageLine{}, err
	}
	line := UsageLine{List: lc}
	var overrideAmount *money.Decimal
	if override != nil {
		if line.Tenant, err = override.Charge(quantity); err != nil {
			return UsageLine{}, prefixed("override", err)
		}
		overrideAmount = &line.Tenant.Amount
	} else {
		line.Tenant = lc
		for _, l := range c.Levels {
			line.Tenant = line.Tenant.Scale(Factor(l.Markup))
		}
	}
	if line.Split, err = c.Split(lc.Amount, overrideAmount); err != nil {
		return UsageLine{}, err
	}
	return line, nil
}

// PriceLateUsage prices late usage dQ for a period already invoiced with total qOld (SPEC 10) and
// splits the adjustment down the chain: the list adjustment is LateAdjustment(list, qOld, dQ),
// and with an override the tenant's amount is LateAdjustment(*override, qOld, dQ). Rates and
// chain are those in effect in the original period. It returns the same errors as PriceUsage.
func (c Chain) PriceLateUsage(list Rate, override *Rate, qOld, dQ money.Decimal) (Split, error) {
	if err := c.Validate(); err != nil {
		return Split{}, err
	}
	la, err := LateAdjustment(list, qOld, dQ)
	if err != nil {
		return Split{}, err
	}
	var overrideAmount *money.Decimal
	if override != nil {
		oa, err := LateAdjustment(*override, qOld, dQ)
		if err != nil {
			return Split{}, prefixed("override", err)
		}
		overrideAmount = &oa
	}
	return c.Split(la, overrideAmount)
}

// prefixed returns err with the field of every *FieldError in it placed under prefix
// ("tiers[0].upTo" -> "override.tiers[0].upTo"), so that a caller can tell the two rates apart.
func prefixed(prefix string, err error) error {
	fes := FieldErrors(err)
	if len(fes) == 0 {
		return err
	}
	var errs fieldErrors
	for _, fe := range fes {
		errs.add(prefix+"."+fe.Field, fe.Code, fe.Message)
	}
	return errs.err()
}
