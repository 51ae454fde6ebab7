package pricing_test

import (
	"testing"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/pricing"
)

// WorkedChain is the worked example's channel: D marks up 10 %, P (under D) 20 % (SPEC 15).
func WorkedChain(tb testing.TB) pricing.Chain {
	tb.Helper()
	return pricing.Chain{Currency: "EUR", Levels: []pricing.Level{
		{EntityID: "D", Markup: MustDecimal(tb, "10.0")},
		{EntityID: "P", Markup: MustDecimal(tb, "20.0")},
	}}
}

func TestFactor(t *testing.T) {
	for _, tc := range []struct {
		name   string
		markup string
		want   string
	}{
		{"OK/zero", "0", "1"},
		{"OK/ten", "10.0", "1.1"},
		{"OK/twenty", "20", "1.2"},
		{"OK/fraction", "12.5", "1.125"},
		{"OK/tiny", "0.0001", "1.000001"},
		{"OK/negative", "-5", "0.95"},
		{"OK/doubling", "100", "2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertEqualDecimal(t, "Factor", pricing.Factor(MustDecimal(t, tc.markup)), tc.want)
		})
	}
	assertEqualDecimal(t, "Chain.Factor", WorkedChain(t).Factor(), "1.32")
}

func TestChainValidate(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chain pricing.Chain
		want  []string
	}{
		{"OK/worked example", WorkedChain(t), nil},
		{"OK/partner only", pricing.Chain{Currency: "JPY", Levels: []pricing.Level{{EntityID: "P"}}}, nil},
		{"OK/discount", pricing.Chain{Currency: "EUR", Levels: []pricing.Level{{EntityID: "P", Markup: MustDecimal(t, "-99.99")}}}, nil},
		{"ErrEverything", pricing.Chain{Currency: "eur", Levels: nil}, []string{"currency:invalid", "levels:required"}},
		{"ErrLevels", pricing.Chain{Currency: "EUR", Levels: []pricing.Level{
			{EntityID: "", Markup: MustDecimal(t, "10")},
			{EntityID: "P", Markup: MustDecimal(t, "-100")},
		}}, []string{"levels[0].entityId:required", "levels[1].markup:invalid"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.chain.Validate()
			assertStrings(t, "errors", fieldCodes(err), tc.want)
			if _, serr := tc.chain.Split(money.NewFromInt(1), nil); (serr == nil) != (tc.want == nil) {
				t.Fatalf("Split error = %v, want errors %v", serr, tc.want)
			}
		})
	}
}

func TestSplit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		chain    pricing.Chain
		list     string
		override string // "" for none
		// Expected rounded figures: platform revenue, each level's sell and commission, tenant.
		platform    string
		sells       []string
		commissions []string
	}{
		{"OK/worked example seats", WorkedChain(t), "203.2258064516129032258064516129032", "",
			"203.23", []string{"223.55", "268.26"}, []string{"20.32", "44.71"}},
		{"OK/worked example storage", WorkedChain(t), "92.00", "",
			"92.00", []string{"101.20", "121.44"}, []string{"9.20", "20.24"}},
		{"OK/zero", WorkedChain(t), "0", "", "0.00", []string{"0.00", "0.00"}, []string{"0.00", "0.00"}},
		{"OK/half cent rounds up at every level", WorkedChain(t), "0.005", "",
			"0.01", []string{"0.01", "0.01"}, []string{"0.00", "0.00"}},
		{"OK/credit rounds away from zero", WorkedChain(t), "-2.50", "",
			"-2.50", []string{"-2.75", "-3.30"}, []string{"-0.25", "-0.55"}},
		{"OK/override above the chain", WorkedChain(t), "92.00", "130",
			"92.00", []string{"101.20", "130.00"}, []string{"9.20", "28.80"}},
		{"OK/override below the partner's cost", WorkedChain(t), "92.00", "95.555",
			"92.00", []string{"101.20", "95.56"}, []string{"9.20", "-5.64"}},
		{"OK/partner only", pricing.Chain{Currency: "EUR", Levels: []pricing.Level{{EntityID: "P", Markup: MustDecimal(t, "15")}}},
			"10.01", "", "10.01", []string{"11.51"}, []string{"1.50"}},
		{"OK/JPY has no minor unit", pricing.Chain{Currency: "JPY", Levels: []pricing.Level{
			{EntityID: "D", Markup: MustDecimal(t, "10")}, {EntityID: "P", Markup: MustDecimal(t, "20")}}},
			"1005", "", "1005", []string{"1106", "1327"}, []string{"101", "221"}},
		{"OK/KWD has three", pricing.Chain{Currency: "KWD", Levels: []pricing.Level{{EntityID: "P", Markup: MustDecimal(t, "33.3")}}},
			"1.0005", "", "1.001", []string{"1.334"}, []string{"0.333"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var override *money.Decimal
			if tc.override != "" {
				override = MustDecimalPtr(t, tc.override)
			}
			s, err := tc.chain.Split(MustDecimal(t, tc.list), override)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.PlatformRevenue.String(); got != tc.platform {
				t.Errorf("platform revenue = %s, want %s", got, tc.platform)
			}
			var sells, commissions []string
			sum := s.PlatformRevenue
			for _, l := range s.Levels {
				sells = append(sells, l.SellRounded.String())
				commissions = append(commissions, l.Commission.String())
				sum = sum.Add(l.Commission)
			}
			assertStrings(t, "sells", sells, tc.sells)
			assertStrings(t, "commissions", commissions, tc.commissions)
			if got, want := s.TenantRounded.String(), tc.sells[len(tc.sells)-1]; got != want {
				t.Errorf("tenant = %s, want %s", got, want)
			}
			if !sum.Equal(s.TenantRounded) {
				t.Errorf("platform + commissions = %s, tenant = %s", sum, s.TenantRounded)
			}
			if s.Overridden != (override != nil) {
				t.Errorf("Overridden = %v", s.Overridden)
			}
		})
	}
}

func TestSplitTooLarge(t *testing.T) {
	for _, tc := range []struct {
		name     string
		chain    pricing.Chain
		list     string
		override string
	}{
		{"ErrListTooLarge", WorkedChain(t), "1e31", ""},
		{"ErrMarkedUpTooLarge", WorkedChain(t), "9e30", ""},
		{"ErrOverrideTooLarge", WorkedChain(t), "1", "-1e31"},
		{"ErrJPYTooLarge", pricing.Chain{Currency: "JPY", Levels: []pricing.Level{{EntityID: "P"}}}, "1e33", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var override *money.Decimal
			if tc.override != "" {
				override = MustDecimalPtr(t, tc.override)
			}
			_, err := tc.chain.Split(MustDecimal(t, tc.list), override)
			assertStrings(t, "errors", fieldCodes(err), []string{"amount:invalid"})
		})
	}
	t.Run("OK/just below the limit", func(t *testing.T) {
		chain := pricing.Chain{Currency: "EUR", Levels: []pricing.Level{{EntityID: "P"}}}
		s, err := chain.Split(MustDecimal(t, "9999999999999999999999999999999.99"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if s.TenantRounded.String() != "9999999999999999999999999999999.99" {
			t.Fatalf("tenant = %s", s.TenantRounded)
		}
	})
}

func TestPriceUsage(t *testing.T) {
	d := func(s string) *money.Decimal { return MustDecimalPtr(t, s) }
	storage := StorageRate(t)
	override := pricing.Rate{Model: pricing.PerUnit, UnitPrice: d("0.09"), IncludedQuantity: *d("100")}
	for _, tc := range []struct {
		name        string
		override    *pricing.Rate
		q           string
		listAmount  string
		tenant      string
		tenantTiers []string
		commissions []string
	}{
		{"OK/worked example", nil, "1250", "92.00", "121.44",
			[]string{"100|100|0.1320|0.00|13.2000", "1000|900|0.1056|0.00|95.0400", "-|200|0.0660|0.00|13.2000"},
			[]string{"9.20", "20.24"}},
		{"OK/override replaces the rate", &override, "1250", "92.00", "103.50", nil,
			[]string{"9.20", "2.30"}},
		{"OK/nothing used", nil, "10", "0", "0.00", nil, []string{"0.00", "0.00"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			line, err := WorkedChain(t).PriceUsage(storage, tc.override, MustDecimal(t, tc.q))
			if err != nil {
				t.Fatal(err)
			}
			assertEqualDecimal(t, "list amount", line.List.Amount, tc.listAmount)
			if got := line.Split.TenantRounded.String(); got != tc.tenant {
				t.Errorf("tenant = %s, want %s", got, tc.tenant)
			}
			if !line.Tenant.Amount.Equal(line.Split.Tenant) {
				t.Errorf("tenant charge %s differs from split %s", line.Tenant.Amount, line.Split.Tenant)
			}
			assertStrings(t, "tenant tiers", tierStrings(line.Tenant.Tiers), tc.tenantTiers)
			var commissions []string
			for _, l := range line.Split.Levels {
				commissions = append(commissions, l.Commission.String())
			}
			assertStrings(t, "commissions", commissions, tc.commissions)
		})
	}
	t.Run("ErrOverrideInvalid", func(t *testing.T) {
		_, err := WorkedChain(t).PriceUsage(storage, &pricing.Rate{Model: pricing.Graduated}, MustDecimal(t, "1"))
		assertStrings(t, "errors", fieldCodes(err), []string{"override.tiers:required"})
	})
	t.Run("ErrListInvalid", func(t *testing.T) {
		_, err := WorkedChain(t).PriceUsage(pricing.Rate{}, nil, MustDecimal(t, "1"))
		assertStrings(t, "errors", fieldCodes(err), []string{"model:required"})
	})
	t.Run("ErrChainInvalid", func(t *testing.T) {
		_, err := pricing.Chain{Currency: "EUR"}.PriceUsage(storage, nil, MustDecimal(t, "1"))
		assertStrings(t, "errors", fieldCodes(err), []string{"levels:required"})
	})
}

func TestPriceLateUsage(t *testing.T) {
	d := func(s string) *money.Decimal { return MustDecimalPtr(t, s) }
	override := pricing.Rate{Model: pricing.PerUnit, UnitPrice: d("0.09"), IncludedQuantity: *d("100")}
	for _, tc := range []struct {
		name     string
		override *pricing.Rate
		tenant   string
		platform string
	}{
		{"OK/worked example", nil, "3.30", "2.50"},
		{"OK/override", &override, "4.50", "2.50"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := WorkedChain(t).PriceLateUsage(StorageRate(t), tc.override, MustDecimal(t, "1250"), MustDecimal(t, "50"))
			if err != nil {
				t.Fatal(err)
			}
			if s.TenantRounded.String() != tc.tenant || s.PlatformRevenue.String() != tc.platform {
				t.Fatalf("tenant %s platform %s, want %s %s", s.TenantRounded, s.PlatformRevenue, tc.tenant, tc.platform)
			}
		})
	}
	t.Run("ErrOverrideQuantity", func(t *testing.T) {
		_, err := WorkedChain(t).PriceLateUsage(StorageRate(t), &override, MustDecimal(t, "1"), MustDecimal(t, "-2"))
		assertStrings(t, "errors", fieldCodes(err), []string{"dQ:invalid"})
	})
}
