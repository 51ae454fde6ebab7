package pricing

import (
	"fmt"

	"github.com/channelbilling/cms/shared/money"
)

// Model is a SKU's pricing model (SPEC 8.1).
type Model string

// The pricing models.
const (
	// PerUnit charges B * unitPrice.
	PerUnit Model = "per_unit"
	// Graduated prices each unit in the tier it falls in, plus the flat fee of every tier any unit
	// falls in.
	Graduated Model = "graduated"
	// Volume prices all B units at the unit price of the tier B falls in, plus that tier's flat fee.
	Volume Model = "volume"
	// Package charges ceil(B / packageSize) * packagePrice.
	Package Model = "package"
)

// Models lists the valid models, in the order the documentation gives them.
var Models = []Model{PerUnit, Graduated, Volume, Package}

// Valid reports whether m is one of Models.
func (m Model) Valid() bool {
	switch m {
	case PerUnit, Graduated, Volume, Package:
		return true
	}
	return false
}

// Tier is one band of a graduated or volume rate. A tier covers the quantities above the previous
// tier's UpTo (or above 0 for the first) up to and including its own UpTo.
type Tier struct {
	// UpTo is the inclusive upper bound of the tier; nil marks the open last tier.
	UpTo *money.Decimal `json:"upTo"`
	// UnitPrice is the price of each unit in the tier (0 for a free tier).
	UnitPrice money.Decimal `json:"unitPrice"`
	// FlatFee is charged once when the tier is used (see Model).
	FlatFee money.Decimal `json:"flatFee"`
}

// Rate is how a SKU is priced: the model and the fields that model uses. Fields a model does not
// use must be absent (nil or empty): Validate rejects them so that a rate never carries a price
// that silently does nothing.
type Rate struct {
	// Model selects the formula.
	Model Model `json:"model"`
	// UnitPrice is required by per_unit.
	UnitPrice *money.Decimal `json:"unitPrice,omitempty"`
	// Tiers are required by graduated and volume: at least one, UpTo strictly increasing, the last
	// one open.
	Tiers []Tier `json:"tiers,omitempty"`
	// PackageSize is required by package and must be greater than 0.
	PackageSize *money.Decimal `json:"packageSize,omitempty"`
	// PackagePrice is required by package.
	PackagePrice *money.Decimal `json:"packagePrice,omitempty"`
	// IncludedQuantity is subtracted from the period's quantity before any model applies
	// (B = max(0, Q - includedQuantity)); 0 when absent.
	IncludedQuantity money.Decimal `json:"includedQuantity"`
}

// Validate reports every problem with r at once, as *FieldError values joined with errors.Join
// (use FieldErrors to list them), or nil when r is valid. Field names are JSON paths such as
// "tiers[1].upTo".
func (r Rate) Validate() error {
	var errs fieldErrors
	if r.IncludedQuantity.IsNeg() {
		errs.add("includedQuantity", CodeInvalid, "must not be negative")
	}
	notAllowed := func(field string, present bool) {
		if present {
			errs.add(field, CodeNotAllowed, fmt.Sprintf("is not used by the %s model", r.Model))
		}
	}
	switch r.Model {
	case "":
		errs.add("model", CodeRequired, "is required")
	case PerUnit:
		nonNegative(&errs, "unitPrice", r.UnitPrice)
		notAllowed("tiers", len(r.Tiers) > 0)
		notAllowed("packageSize", r.PackageSize != nil)
		notAllowed("packagePrice", r.PackagePrice != nil)
	case Graduated, Volume:
		validateTiers(&errs, r.Tiers)
		notAllowed("unitPrice", r.UnitPrice != nil)
		notAllowed("packageSize", r.PackageSize != nil)
		notAllowed("packagePrice", r.PackagePrice != nil)
	case Package:
		switch {
		case r.PackageSize == nil:
			errs.add("packageSize", CodeRequired, "is required")
		case r.PackageSize.Sign() <= 0:
			errs.add("packageSize", CodeInvalid, "must be greater than 0")
		}
		nonNegative(&errs, "packagePrice", r.PackagePrice)
		notAllowed("unitPrice", r.UnitPrice != nil)
		notAllowed("tiers", len(r.Tiers) > 0)
	default:
		errs.add("model", CodeInvalid, "must be one of per_unit, graduated, volume, package")
	}
	return errs.err()
}

// nonNegative requires a present, non-negative price.
func nonNegative(errs *fieldErrors, field string, v *money.Decimal) {
	switch {
	case v == nil:
		errs.add(field, CodeRequired, "is required")
	case v.IsNeg():
		errs.add(field, CodeInvalid, "must not be negative")
	}
}

func validateTiers(errs *fieldErrors, tiers []Tier) {
	if len(tiers) == 0 {
		errs.add("tiers", CodeRequired, "at least one tier is required")
		return
	}
	var prev *money.Decimal // the last bound seen, to check the order
	prevIndex := -1
	for i, t := range tiers {
		field := func(name string) string { return fmt.Sprintf("tiers[%d].%s", i, name) } // only formatted for an error
		last := i == len(tiers)-1
		switch {
		case t.UpTo == nil && !last:
			errs.add(field("upTo"), CodeRequired, "only the last tier may be open (upTo null)")
		case t.UpTo != nil && last:
			errs.add(field("upTo"), CodeInvalid, "the last tier must be open (upTo null)")
		}
		if t.UpTo != nil {
			switch {
			case prev == nil && t.UpTo.Sign() <= 0:
				errs.add(field("upTo"), CodeInvalid, "must be greater than 0")
			case prev != nil && t.UpTo.Cmp(*prev) <= 0:
				errs.add(field("upTo"), CodeInvalid,
					fmt.Sprintf("must be greater than tiers[%d].upTo (%s)", prevIndex, prev))
			}
			prev, prevIndex = t.UpTo, i
		}
		if t.UnitPrice.IsNeg() {
			errs.add(field("unitPrice"), CodeInvalid, "must not be negative")
		}
		if t.FlatFee.IsNeg() {
			errs.add(field("flatFee"), CodeInvalid, "must not be negative")
		}
	}
}
