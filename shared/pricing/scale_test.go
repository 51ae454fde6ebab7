package pricing_test

import (
	"testing"

	"github.com/channelbilling/cms/shared/pricing"
)

func TestRateScale(t *testing.T) {
	factor := pricing.Factor(MustDecimal(t, "10")).Mul(pricing.Factor(MustDecimal(t, "20"))) // 1.32
	rates := map[string]pricing.Rate{
		"PerUnit":   {Model: pricing.PerUnit, UnitPrice: MustDecimalPtr(t, "0.25"), IncludedQuantity: MustDecimal(t, "10")},
		"Graduated": StorageRate(t),
		"Volume":    {Model: pricing.Volume, Tiers: MustTiers(t, "100@1.00", "1000@0.50+10", "-@0.25")},
		"Package":   {Model: pricing.Package, PackageSize: MustDecimalPtr(t, "100"), PackagePrice: MustDecimalPtr(t, "15")},
	}
	for name, r := range rates {
		t.Run("OK/"+name, func(t *testing.T) {
			s := r.Scale(factor)
			if err := s.Validate(); err != nil {
				t.Fatalf("scaled rate invalid: %v", err)
			}
			for _, q := range []string{"0", "1", "50", "100", "101", "1250", "999.5"} {
				base, err := r.Charge(MustDecimal(t, q))
				if err != nil {
					t.Fatal(err)
				}
				scaled, err := s.Charge(MustDecimal(t, q))
				if err != nil {
					t.Fatal(err)
				}
				if want := base.Amount.Mul(factor); !scaled.Amount.Equal(want) {
					t.Errorf("q=%s: scaled charge %s, want %s", q, scaled.Amount, want)
				}
			}
		})
	}
	t.Run("OK/WorkedExampleTiers", func(t *testing.T) {
		s := StorageRate(t).Scale(pricing.Factor(MustDecimal(t, "10"))).Scale(pricing.Factor(MustDecimal(t, "20")))
		for i, want := range []string{"0.132", "0.1056", "0.066"} {
			if !s.Tiers[i].UnitPrice.Equal(MustDecimal(t, want)) {
				t.Errorf("tier %d: %s, want %s", i, s.Tiers[i].UnitPrice, want)
			}
		}
		if !s.IncludedQuantity.Equal(MustDecimal(t, "50")) || !s.Tiers[0].UpTo.Equal(MustDecimal(t, "100")) {
			t.Error("quantities must not scale")
		}
	})
	t.Run("OK/NoAliasing", func(t *testing.T) {
		r := rates["Package"]
		s := r.Scale(factor)
		if s.PackageSize == r.PackageSize || s.PackagePrice == r.PackagePrice {
			t.Fatal("scaled rate shares pointers with the original")
		}
		g := StorageRate(t)
		sg := g.Scale(factor)
		if sg.Tiers[0].UpTo == g.Tiers[0].UpTo || &sg.Tiers[0] == &g.Tiers[0] {
			t.Fatal("scaled tiers share memory with the original")
		}
		if !g.Tiers[0].UnitPrice.Equal(MustDecimal(t, "0.10")) {
			t.Fatal("original changed")
		}
	})
}
