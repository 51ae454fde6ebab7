package pricing_test

import (
	"encoding/json"
	"testing"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/pricing"
)

func TestCharge(t *testing.T) {
	d := func(s string) *money.Decimal { return MustDecimalPtr(t, s) }
	perUnit := pricing.Rate{Model: pricing.PerUnit, UnitPrice: d("0.25"), IncludedQuantity: *d("10")}
	storage := StorageRate(t)
	gradFees := pricing.Rate{Model: pricing.Graduated, Tiers: MustTiers(t, "10@0+5", "100@1+2", "-@0.5")}
	volume := pricing.Rate{Model: pricing.Volume, Tiers: MustTiers(t, "100@1.00", "1000@0.50+10", "-@0.25")}
	volumeFee := pricing.Rate{Model: pricing.Volume, Tiers: MustTiers(t, "10@2+3", "-@1+1"), IncludedQuantity: *d("5")}
	pkg := pricing.Rate{Model: pricing.Package, PackageSize: d("100"), PackagePrice: d("15")}
	pkgFrac := pricing.Rate{Model: pricing.Package, PackageSize: d("0.5"), PackagePrice: d("2"), IncludedQuantity: *d("1")}

	for _, tc := range []struct {
		name     string
		rate     pricing.Rate
		q        string
		billable string
		amount   string
		tiers    []string // "upTo|quantity|unitPrice|flatFee|amount"
		packages string   // "" for no check
	}{
		// per_unit: B * unitPrice after 10 included units.
		{"OK/per_unit/zero", perUnit, "0", "0", "0", nil, ""},
		{"OK/per_unit/below included", perUnit, "5", "0", "0", nil, ""},
		{"OK/per_unit/exactly included", perUnit, "10", "0", "0", nil, ""},
		{"OK/per_unit/one over included", perUnit, "11", "1", "0.25", nil, ""},
		{"OK/per_unit/fractional", perUnit, "12.5", "2.5", "0.625", nil, ""},
		{"OK/per_unit/large", perUnit, "1000000010", "1000000000", "250000000", nil, ""},

		// graduated, SPEC 15 tiers, 50 included: upTo is inclusive.
		{"OK/graduated/zero", storage, "0", "0", "0", nil, ""},
		{"OK/graduated/included larger than usage", storage, "30", "0", "0", nil, ""},
		{"OK/graduated/exactly included", storage, "50", "0", "0", nil, ""},
		{"OK/graduated/fraction of a unit", storage, "50.5", "0.5", "0.05", []string{"100|0.5|0.10|0|0.050"}, ""},
		{"OK/graduated/exactly first bound", storage, "150", "100", "10.00", []string{"100|100|0.10|0|10.00"}, ""},
		{"OK/graduated/one over first bound", storage, "151", "101", "10.08",
			[]string{"100|100|0.10|0|10.00", "1000|1|0.08|0|0.08"}, ""},
		{"OK/graduated/fraction over first bound", storage, "150.25", "100.25", "10.02",
			[]string{"100|100|0.10|0|10.00", "1000|0.25|0.08|0|0.0200"}, ""},
		{"OK/graduated/exactly second bound", storage, "1050", "1000", "82.00",
			[]string{"100|100|0.10|0|10.00", "1000|900|0.08|0|72.00"}, ""},
		{"OK/graduated/one over second bound", storage, "1051", "1001", "82.05",
			[]string{"100|100|0.10|0|10.00", "1000|900|0.08|0|72.00", "-|1|0.05|0|0.05"}, ""},
		{"OK/graduated/worked example", storage, "1250", "1200", "92.00",
			[]string{"100|100|0.10|0|10.00", "1000|900|0.08|0|72.00", "-|200|0.05|0|10.00"}, ""},

		// graduated with flat fees: a tier's fee once when any unit falls in it, never at B = 0.
		{"OK/graduated fees/zero has no fee", gradFees, "0", "0", "0", nil, ""},
		{"OK/graduated fees/tiny usage pays the first fee", gradFees, "0.001", "0.001", "5",
			[]string{"10|0.001|0|5|5.000"}, ""},
		{"OK/graduated fees/exactly first bound", gradFees, "10", "10", "5", []string{"10|10|0|5|5"}, ""},
		{"OK/graduated fees/one over first bound", gradFees, "11", "11", "8",
			[]string{"10|10|0|5|5", "100|1|1|2|3"}, ""},
		{"OK/graduated fees/exactly second bound", gradFees, "100", "100", "97",
			[]string{"10|10|0|5|5", "100|90|1|2|92"}, ""},
		{"OK/graduated fees/open tier", gradFees, "101", "101", "97.5",
			[]string{"10|10|0|5|5", "100|90|1|2|92", "-|1|0.5|0|0.5"}, ""},

		// volume: all of B at the tier B falls in, plus that tier's fee.
		{"OK/volume/zero has no tier and no fee", volume, "0", "0", "0", nil, ""},
		{"OK/volume/fraction", volume, "0.5", "0.5", "0.5", []string{"100|0.5|1.00|0|0.500"}, ""},
		{"OK/volume/exactly first bound", volume, "100", "100", "100", []string{"100|100|1.00|0|100.00"}, ""},
		{"OK/volume/one over first bound is cheaper", volume, "101", "101", "60.5", []string{"1000|101|0.50|10|60.50"}, ""},
		{"OK/volume/fraction over first bound", volume, "100.1", "100.1", "60.05", []string{"1000|100.1|0.50|10|60.050"}, ""},
		{"OK/volume/exactly second bound", volume, "1000", "1000", "510", []string{"1000|1000|0.50|10|510.00"}, ""},
		{"OK/volume/open tier", volume, "1000.5", "1000.5", "250.125", []string{"-|1000.5|0.25|0|250.125"}, ""},
		{"OK/volume fee/included larger than usage has no fee", volumeFee, "4", "0", "0", nil, ""},
		{"OK/volume fee/exactly included has no fee", volumeFee, "5", "0", "0", nil, ""},
		{"OK/volume fee/one over included pays the fee", volumeFee, "6", "1", "5", []string{"10|1|2|3|5"}, ""},
		{"OK/volume fee/exactly bound after included", volumeFee, "15", "10", "23", []string{"10|10|2|3|23"}, ""},
		{"OK/volume fee/one over bound", volumeFee, "16", "11", "12", []string{"-|11|1|1|12"}, ""},

		// package: ceil(B / packageSize) * packagePrice.
		{"OK/package/zero buys nothing", pkg, "0", "0", "0", nil, "0"},
		{"OK/package/one unit buys a package", pkg, "1", "1", "15", nil, "1"},
		{"OK/package/exactly one package", pkg, "100", "100", "15", nil, "1"},
		{"OK/package/one over", pkg, "101", "101", "30", nil, "2"},
		{"OK/package/fraction over", pkg, "100.0001", "100.0001", "30", nil, "2"},
		{"OK/package/exactly two", pkg, "200", "200", "30", nil, "2"},
		{"OK/package fractional size/within included", pkgFrac, "1", "0", "0", nil, "0"},
		{"OK/package fractional size/fraction of a package", pkgFrac, "1.2", "0.2", "2", nil, "1"},
		{"OK/package fractional size/exactly two", pkgFrac, "2", "1", "4", nil, "2"},
		{"OK/package fractional size/one over", pkgFrac, "2.01", "1.01", "6", nil, "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.rate.Charge(MustDecimal(t, tc.q))
			if err != nil {
				t.Fatalf("Charge(%s): %v", tc.q, err)
			}
			assertEqualDecimal(t, "quantity", c.Quantity, tc.q)
			assertEqualDecimal(t, "billable", c.Billable, tc.billable)
			assertEqualDecimal(t, "amount", c.Amount, tc.amount)
			assertStrings(t, "tiers", tierStrings(c.Tiers), tc.tiers)
			if tc.packages != "" {
				assertEqualDecimal(t, "packages", c.Packages, tc.packages)
			}
		})
	}
}

func TestChargeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		rate pricing.Rate
		q    string
		want []string
	}{
		{"ErrNegativeQuantity", StorageRate(t), "-1", []string{"quantity:invalid"}},
		{"ErrInvalidRate", pricing.Rate{Model: pricing.Volume}, "1", []string{"tiers:required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.rate.Charge(MustDecimal(t, tc.q))
			assertStrings(t, "errors", fieldCodes(err), tc.want)
		})
	}
}

func TestChargeDoesNotAliasRate(t *testing.T) {
	r := StorageRate(t)
	c, err := r.Charge(MustDecimal(t, "1250"))
	if err != nil {
		t.Fatal(err)
	}
	*r.Tiers[0].UpTo = MustDecimal(t, "7")
	if got := c.Tiers[0].UpTo.String(); got != "100" {
		t.Fatalf("breakdown follows a later change of the rate: upTo = %s", got)
	}
}

func TestChargeJSON(t *testing.T) {
	c, err := StorageRate(t).Charge(MustDecimal(t, "151"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"quantity":"151","billable":"101","amount":"10.08","tiers":[` +
		`{"upTo":"100","quantity":"100","unitPrice":"0.10","amount":"10.00"},` +
		`{"upTo":"1000","quantity":"1","unitPrice":"0.08","amount":"0.08"}]}`
	if string(b) != want {
		t.Fatalf("Marshal =\n%s\nwant\n%s", b, want)
	}
}

func TestChargeScale(t *testing.T) {
	c, err := pricing.Rate{Model: pricing.Graduated, Tiers: MustTiers(t, "10@1+5", "-@0.5")}.Charge(MustDecimal(t, "12"))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Scale(MustDecimal(t, "1.32"))
	assertEqualDecimal(t, "amount", s.Amount, "21.12")
	assertStrings(t, "tiers", tierStrings(s.Tiers), []string{"10|10|1.32|6.60|19.80", "-|2|0.660|0.00|1.320"})
	assertEqualDecimal(t, "original amount", c.Amount, "16")
	assertStrings(t, "original tiers", tierStrings(c.Tiers), []string{"10|10|1|5|15", "-|2|0.5|0|1.0"})
}

func TestLateAdjustment(t *testing.T) {
	d := func(s string) *money.Decimal { return MustDecimalPtr(t, s) }
	storage := StorageRate(t)
	volume := pricing.Rate{Model: pricing.Volume, Tiers: MustTiers(t, "100@1.00", "-@0.50")}
	pkg := pricing.Rate{Model: pricing.Package, PackageSize: d("100"), PackagePrice: d("15")}
	for _, tc := range []struct {
		name    string
		rate    pricing.Rate
		qOld    string
		dQ      string
		want    string
		wantErr []string
	}{
		{"OK/worked example", storage, "1250", "50", "2.50", nil},
		{"OK/crossing a tier", storage, "1000", "100", "6.50", nil},   // 50 x 0.08 + 50 x 0.05
		{"OK/from inside included", storage, "20", "40", "1.00", nil}, // B 0 -> 10
		{"OK/nothing late", storage, "1250", "0", "0", nil},
		{"OK/volume can credit", volume, "100", "1", "-49.50", nil},
		{"OK/package fills the paid package", pkg, "150", "50", "0", nil},
		{"OK/package opens another", pkg, "200", "1", "15", nil},
		{"OK/negative correction", storage, "1250", "-200", "-10.00", nil},
		{"ErrNegativeOld", storage, "-1", "5", "", []string{"qOld:invalid"}},
		{"ErrBelowZero", storage, "10", "-11", "", []string{"dQ:invalid"}},
		{"ErrInvalidRate", pricing.Rate{Model: pricing.PerUnit}, "1", "1", "", []string{"unitPrice:required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pricing.LateAdjustment(tc.rate, MustDecimal(t, tc.qOld), MustDecimal(t, tc.dQ))
			if tc.wantErr != nil {
				assertStrings(t, "errors", fieldCodes(err), tc.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			assertEqualDecimal(t, "adjustment", got, tc.want)
		})
	}
}
