package pricing_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/pricing"
)

// TestWorkedExample reproduces SPEC 15 figure by figure: EUR, D +10 %, P +20 %, tenant T on plan
// pro (30.00 per seat, 10 seats from 2026-10-11), 1,250 GB of storage-gb in October 2026, and a
// late 50 GB after the run.
func TestWorkedExample(t *testing.T) {
	chain := WorkedChain(t)
	storage := StorageRate(t)

	// Seats: 30.00 x 10 x 21/31.
	start := time.Date(2026, time.October, 11, 0, 0, 0, 0, time.UTC)
	active := pricing.ActiveDays(2026, time.October, start, time.Time{})
	days := pricing.DaysInMonth(2026, time.October)
	if active != 21 || days != 31 {
		t.Fatalf("proration = %d/%d, want 21/31", active, days)
	}
	seatList, err := pricing.Prorate(MustDecimal(t, "30.00").Mul(money.NewFromInt(10)), active, days)
	if err != nil {
		t.Fatal(err)
	}
	seats, err := chain.Split(seatList, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name    string
		full    money.Decimal
		prefix  string
		rounded money.Decimal
		want    string
	}{
		{"seats list", seats.List, "203.2258", seats.PlatformRevenue, "203.23"},
		{"seats D sells", seats.Levels[0].Sell, "223.548", seats.Levels[0].SellRounded, "223.55"},
		{"seats T pays", seats.Tenant, "268.258", seats.TenantRounded, "268.26"},
	} {
		if !strings.HasPrefix(c.full.String(), c.prefix) {
			t.Errorf("%s full precision = %s, want %s...", c.name, c.full, c.prefix)
		}
		if c.rounded.String() != c.want {
			t.Errorf("%s rounded = %s, want %s", c.name, c.rounded, c.want)
		}
	}

	// Storage: B = 1,200 = 100 x 0.10 + 900 x 0.08 + 200 x 0.05.
	usage, err := chain.PriceUsage(storage, nil, MustDecimal(t, "1250"))
	if err != nil {
		t.Fatal(err)
	}
	assertEqualDecimal(t, "storage B", usage.List.Billable, "1200")
	assertStrings(t, "storage tiers", tierStrings(usage.List.Tiers),
		[]string{"100|100|0.10|0|10.00", "1000|900|0.08|0|72.00", "-|200|0.05|0|10.00"})
	storageSplit := usage.Split
	for _, c := range []struct {
		name string
		got  money.Decimal
		want string
	}{
		{"storage list", storageSplit.PlatformRevenue, "92.00"},
		{"storage D sells", storageSplit.Levels[0].SellRounded, "101.20"},
		{"storage T pays", storageSplit.TenantRounded, "121.44"},
	} {
		if c.got.String() != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}

	// Invoice total, commissions and the invariant.
	total := seats.TenantRounded.Add(storageSplit.TenantRounded)
	commissionD := seats.Levels[0].Commission.Add(storageSplit.Levels[0].Commission)
	commissionP := seats.Levels[1].Commission.Add(storageSplit.Levels[1].Commission)
	platform := seats.PlatformRevenue.Add(storageSplit.PlatformRevenue)
	for _, c := range []struct {
		name string
		got  money.Decimal
		want string
	}{
		{"invoice total", total, "389.70"},
		{"commission D", commissionD, "29.52"},
		{"commission P", commissionP, "64.95"},
		{"platform revenue", platform, "295.23"},
		{"platform + commissions", platform.Add(commissionD).Add(commissionP), "389.70"},
	} {
		if c.got.String() != c.want {
			t.Errorf("%s = %s, want %s", c.name, c.got, c.want)
		}
	}
	if seats.Levels[0].EntityID != "D" || seats.Levels[1].EntityID != "P" {
		t.Errorf("levels = %s, %s", seats.Levels[0].EntityID, seats.Levels[1].EntityID)
	}

	// Late usage: 50 GB for October after the run.
	late, err := pricing.LateAdjustment(storage, MustDecimal(t, "1250"), MustDecimal(t, "50"))
	if err != nil {
		t.Fatal(err)
	}
	if late.String() != "2.50" {
		t.Errorf("late at list = %s, want 2.50", late)
	}
	lateSplit, err := chain.PriceLateUsage(storage, nil, MustDecimal(t, "1250"), MustDecimal(t, "50"))
	if err != nil {
		t.Fatal(err)
	}
	if lateSplit.PlatformRevenue.String() != "2.50" || lateSplit.TenantRounded.String() != "3.30" {
		t.Errorf("late = %s at list, %s to the tenant, want 2.50 and 3.30", lateSplit.PlatformRevenue, lateSplit.TenantRounded)
	}
}

// ExampleChain_PriceUsage prices the worked example's storage line (SPEC 15).
func ExampleChain_PriceUsage() {
	d := func(s string) money.Decimal { v, _ := money.Parse(s); return v }
	p := func(s string) *money.Decimal { v := d(s); return &v }
	storage := pricing.Rate{
		Model: pricing.Graduated,
		Tiers: []pricing.Tier{
			{UpTo: p("100"), UnitPrice: d("0.10")},
			{UpTo: p("1000"), UnitPrice: d("0.08")},
			{UnitPrice: d("0.05")},
		},
		IncludedQuantity: d("50"),
	}
	chain := pricing.Chain{Currency: "EUR", Levels: []pricing.Level{
		{EntityID: "D", Markup: d("10.0")},
		{EntityID: "P", Markup: d("20.0")},
	}}
	line, err := chain.PriceUsage(storage, nil, d("1250"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("list:", line.Split.PlatformRevenue)
	for _, l := range line.Split.Levels {
		fmt.Printf("%s: buys %s, sells %s, earns %s\n", l.EntityID, l.BuyRounded, l.SellRounded, l.Commission)
	}
	fmt.Println("tenant:", line.Split.TenantRounded)
	// Output:
	// list: 92.00
	// D: buys 92.00, sells 101.20, earns 9.20
	// P: buys 101.20, sells 121.44, earns 20.24
	// tenant: 121.44
}
