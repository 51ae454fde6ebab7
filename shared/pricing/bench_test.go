package pricing_test

import (
	"testing"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/pricing"
)

func BenchmarkCharge(b *testing.B) {
	d := func(s string) *money.Decimal { return MustDecimalPtr(b, s) }
	for _, bc := range []struct {
		name string
		rate pricing.Rate
		q    string
	}{
		{"per_unit", pricing.Rate{Model: pricing.PerUnit, UnitPrice: d("0.25"), IncludedQuantity: *d("10")}, "12345.678"},
		{"graduated", StorageRate(b), "12345.678"},
		{"graduated_10_tiers", pricing.Rate{Model: pricing.Graduated, Tiers: MustTiers(b,
			"10@1+1", "20@0.9", "30@0.8", "40@0.7", "50@0.6", "60@0.5", "70@0.4", "80@0.3", "90@0.2", "-@0.1")}, "12345.678"},
		{"volume", pricing.Rate{Model: pricing.Volume, Tiers: MustTiers(b, "100@1.00", "1000@0.50+10", "-@0.25")}, "12345.678"},
		{"package", pricing.Rate{Model: pricing.Package, PackageSize: d("100"), PackagePrice: d("15")}, "12345.678"},
	} {
		q := MustDecimal(b, bc.q)
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.rate.Charge(q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSplit(b *testing.B) {
	chain := WorkedChain(b)
	list := MustDecimal(b, "203.2258064516129032258064516129032")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := chain.Split(list, nil); err != nil {
			b.Fatal(err)
		}
	}
}
