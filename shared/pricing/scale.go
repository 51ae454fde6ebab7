package pricing

import "github.com/channelbilling/cms/shared/money"

// Scale returns r with every price multiplied by factor: the unit price, each tier's unit price
// and flat fee, and the package price. Quantities (tier bounds, package size, included quantity)
// are unchanged. It is the rate one markup level further down the channel (SPEC 8.3): for every
// quantity q, r.Scale(f).Charge(q).Amount equals r.Charge(q).Amount * f exactly, and scaling by
// each level's factor in turn gives the prices Chain.Split computes. The result shares no memory
// with r. Scale does not validate r.
func (r Rate) Scale(factor money.Decimal) Rate {
	out := r
	mul := func(p *money.Decimal) *money.Decimal {
		if p == nil {
			return nil
		}
		v := p.Mul(factor)
		return &v
	}
	out.UnitPrice = mul(r.UnitPrice)
	out.PackagePrice = mul(r.PackagePrice)
	if r.PackageSize != nil {
		v := *r.PackageSize
		out.PackageSize = &v
	}
	if r.Tiers != nil {
		out.Tiers = make([]Tier, len(r.Tiers))
		for i, t := range r.Tiers {
			if t.UpTo != nil {
				u := *t.UpTo
				t.UpTo = &u
			}
			t.UnitPrice = t.UnitPrice.Mul(factor)
			t.FlatFee = t.FlatFee.Mul(factor)
			out.Tiers[i] = t
		}
	}
	return out
}
