package pricing

import (
	"fmt"

	"github.com/channelbilling/cms/shared/money"
)

// Charge is what a rate makes of a period's quantity, at full precision (not rounded).
type Charge struct {
	// Quantity is the period's total Q the charge was computed for.
	Quantity money.Decimal `json:"quantity"`
	// Billable is B = max(0, Q - includedQuantity).
	Billable money.Decimal `json:"billable"`
	// Packages is ceil(B / packageSize) for the package model, 0 otherwise.
	Packages money.Decimal `json:"packages,omitzero"`
	// Amount is the charge at full precision.
	Amount money.Decimal `json:"amount"`
	// Tiers is the breakdown for graduated (every tier that holds at least one unit, in order) and
	// volume (the one tier B falls in); empty for per_unit, package and when B is 0.
	Tiers []TierCharge `json:"tiers,omitempty"`
}

// TierCharge is one tier's share of a charge, the shape of an invoice line's tiers (SPEC 7.1).
// Amount = Quantity * UnitPrice + FlatFee.
type TierCharge struct {
	// UpTo is the tier's inclusive upper bound; nil for the open last tier.
	UpTo *money.Decimal `json:"upTo"`
	// Quantity is the number of units priced in this tier.
	Quantity money.Decimal `json:"quantity"`
	// UnitPrice is the tier's unit price.
	UnitPrice money.Decimal `json:"unitPrice"`
	// FlatFee is the tier's flat fee, included in Amount (omitted from JSON when zero).
	FlatFee money.Decimal `json:"flatFee,omitzero"`
	// Amount is Quantity * UnitPrice + FlatFee at full precision.
	Amount money.Decimal `json:"amount"`
}

// Charge prices quantity (the period's total Q) with r, applying the model to
// B = max(0, Q - includedQuantity) exactly as SPEC 8.1 says. Tier bounds are inclusive: a quantity
// equal to a tier's upTo falls in that tier. When B is 0 the charge is 0 under every model: no
// flat fee is charged for a period without billable usage.
//
// It returns the errors of r.Validate when r is invalid, and a *FieldError for "quantity" when
// quantity is negative.
func (r Rate) Charge(quantity money.Decimal) (Charge, error) {
	if err := r.Validate(); err != nil {
		return Charge{}, err
	}
	if quantity.IsNeg() {
		return Charge{}, &FieldError{Field: "quantity", Code: CodeInvalid, Message: "must not be negative"}
	}
	c := Charge{
		Quantity: quantity,
		Billable: money.Max(money.Zero, quantity.Sub(r.IncludedQuantity)),
	}
	if c.Billable.IsZero() {
		return c, nil
	}
	switch r.Model {
	case PerUnit:
		c.Amount = c.Billable.Mul(*r.UnitPrice)
	case Graduated:
		c.Amount, c.Tiers = graduated(r.Tiers, c.Billable)
	case Volume:
		c.Amount, c.Tiers = volume(r.Tiers, c.Billable)
	case Package:
		c.Packages = ceilDiv(c.Billable, *r.PackageSize)
		c.Amount = c.Packages.Mul(*r.PackagePrice)
	}
	return c, nil
}

// graduated prices each unit of b > 0 in the tier it falls in. Tier i holds the units in
// (upTo[i-1], upTo[i]].
func graduated(tiers []Tier, b money.Decimal) (money.Decimal, []TierCharge) {
	var total money.Decimal
	var out []TierCharge
	lower := money.Zero
	for _, t := range tiers {
		if b.Cmp(lower) <= 0 {
			break
		}
		upper := b
		if t.UpTo != nil {
			upper = money.Min(b, *t.UpTo)
		}
		tc := tierCharge(t, upper.Sub(lower))
		out = append(out, tc)
		total = total.Add(tc.Amount)
		if t.UpTo == nil {
			break
		}
		lower = *t.UpTo
	}
	return total, out
}

// volume prices all of b > 0 in the first tier whose inclusive bound holds it.
func volume(tiers []Tier, b money.Decimal) (money.Decimal, []TierCharge) {
	for _, t := range tiers {
		if t.UpTo == nil || b.Cmp(*t.UpTo) <= 0 {
			tc := tierCharge(t, b)
			return tc.Amount, []TierCharge{tc}
		}
	}
	// Unreachable for a validated rate: its last tier is open.
	return money.Zero, nil
}

func tierCharge(t Tier, units money.Decimal) TierCharge {
	var upTo *money.Decimal
	if t.UpTo != nil {
		u := *t.UpTo // a copy: the breakdown must not alias the caller's rate
		upTo = &u
	}
	return TierCharge{
		UpTo:      upTo,
		Quantity:  units,
		UnitPrice: t.UnitPrice,
		FlatFee:   t.FlatFee,
		Amount:    units.Mul(t.UnitPrice).Add(t.FlatFee),
	}
}

// ceilDiv returns ceil(b / size) for b >= 0 and size > 0. The quotient is rounded to 34 digits,
// so the integer is then checked against b exactly: it is the smallest n with n*size >= b.
func ceilDiv(b, size money.Decimal) money.Decimal {
	q, err := b.Div(size)
	if err != nil {
		return money.Zero // unreachable: size > 0 is validated
	}
	one := money.NewFromInt(1)
	n := q.Ceil()
	for range 2 {
		if n.Mul(size).Cmp(b) >= 0 {
			break
		}
		n = n.Add(one)
	}
	for range 2 {
		if n.Sign() <= 0 || n.Sub(one).Mul(size).Cmp(b) < 0 {
			break
		}
		n = n.Sub(one)
	}
	return n
}

// Scale returns c with every price and amount multiplied by factor (quantities unchanged): the
// same usage priced one markup level further down the channel. Scaling by each level's factor in
// turn gives exactly the amounts Chain.Split computes.
func (c Charge) Scale(factor money.Decimal) Charge {
	out := c
	out.Amount = c.Amount.Mul(factor)
	if c.Tiers != nil {
		out.Tiers = make([]TierCharge, len(c.Tiers))
		for i, t := range c.Tiers {
			t.UnitPrice = t.UnitPrice.Mul(factor)
			t.FlatFee = t.FlatFee.Mul(factor)
			t.Amount = t.Amount.Mul(factor)
			out.Tiers[i] = t
		}
	}
	return out
}

// LateAdjustment prices usage dQ that arrived after the period holding qOld was invoiced (SPEC 10):
// charge(qOld + dQ) - charge(qOld), at full precision, with rate being the rate in effect in that
// original period. dQ may be negative (a correction), giving a credit. It returns rate's
// validation errors, or an error when qOld or qOld + dQ is negative.
func LateAdjustment(rate Rate, qOld, dQ money.Decimal) (money.Decimal, error) {
	if qOld.IsNeg() {
		return money.Zero, &FieldError{Field: "qOld", Code: CodeInvalid, Message: "must not be negative"}
	}
	qNew := qOld.Add(dQ)
	if qNew.IsNeg() {
		return money.Zero, &FieldError{Field: "dQ", Code: CodeInvalid,
			Message: fmt.Sprintf("takes the period's total below 0 (%s + %s)", qOld, dQ)}
	}
	before, err := rate.Charge(qOld)
	if err != nil {
		return money.Zero, err
	}
	after, err := rate.Charge(qNew)
	if err != nil {
		return money.Zero, err
	}
	return after.Amount.Sub(before.Amount), nil
}
