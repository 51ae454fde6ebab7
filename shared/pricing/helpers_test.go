package pricing_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/pricing"
)

// MustDecimal parses s or fails the test.
func MustDecimal(tb testing.TB, s string) money.Decimal {
	tb.Helper()
	d, err := money.Parse(s)
	if err != nil {
		tb.Fatalf("money.Parse(%q): %v", s, err)
	}
	return d
}

// MustDecimalPtr parses s into a new *Decimal or fails the test.
func MustDecimalPtr(tb testing.TB, s string) *money.Decimal {
	tb.Helper()
	d := MustDecimal(tb, s)
	return &d
}

// MustTiers builds tiers from "upTo@unitPrice" or "upTo@unitPrice+flatFee" specs, with "-" as
// the open upTo: MustTiers(tb, "100@0.10", "-@0.05").
func MustTiers(tb testing.TB, specs ...string) []pricing.Tier {
	tb.Helper()
	out := make([]pricing.Tier, 0, len(specs))
	for _, s := range specs {
		upTo, rest, ok := strings.Cut(s, "@")
		if !ok {
			tb.Fatalf("bad tier spec %q", s)
		}
		price, fee, hasFee := strings.Cut(rest, "+")
		t := pricing.Tier{UnitPrice: MustDecimal(tb, price)}
		if upTo != "-" {
			t.UpTo = MustDecimalPtr(tb, upTo)
		}
		if hasFee {
			t.FlatFee = MustDecimal(tb, fee)
		}
		out = append(out, t)
	}
	return out
}

// StorageRate is the worked example's storage-gb SKU (SPEC 15).
func StorageRate(tb testing.TB) pricing.Rate {
	tb.Helper()
	return pricing.Rate{
		Model:            pricing.Graduated,
		Tiers:            MustTiers(tb, "100@0.10", "1000@0.08", "-@0.05"),
		IncludedQuantity: MustDecimal(tb, "50"),
	}
}

// tierStrings renders a breakdown as "upTo|quantity|unitPrice|flatFee|amount" lines.
func tierStrings(tiers []pricing.TierCharge) []string {
	out := make([]string, 0, len(tiers))
	for _, t := range tiers {
		upTo := "-"
		if t.UpTo != nil {
			upTo = t.UpTo.String()
		}
		out = append(out, fmt.Sprintf("%s|%s|%s|%s|%s", upTo, t.Quantity, t.UnitPrice, t.FlatFee, t.Amount))
	}
	return out
}

// fieldCodes renders the FieldErrors in err as "field:code" strings.
func fieldCodes(err error) []string {
	var out []string
	for _, fe := range pricing.FieldErrors(err) {
		out = append(out, fe.Field+":"+fe.Code)
	}
	return out
}

// assertEqualDecimal fails when got and want differ in value.
func assertEqualDecimal(tb testing.TB, what string, got money.Decimal, want string) {
	tb.Helper()
	if !got.Equal(MustDecimal(tb, want)) {
		tb.Errorf("%s = %s, want %s", what, got, want)
	}
}

// assertStrings fails when got and want differ.
func assertStrings(tb testing.TB, what string, got, want []string) {
	tb.Helper()
	if !slices.Equal(got, want) {
		tb.Errorf("%s =\n  %q\nwant\n  %q", what, got, want)
	}
}
