package billing_test

import (
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/pricing"
)

func dec(tb testing.TB, s string) money.Decimal {
	tb.Helper()
	d, err := money.Parse(s)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

func ptr(d money.Decimal) *money.Decimal { return &d }

// storage is the SPEC 15 SKU: graduated, included 50.
func storage(tb testing.TB) pricing.Rate {
	return pricing.Rate{Model: pricing.Graduated, IncludedQuantity: dec(tb, "50"), Tiers: []pricing.Tier{
		{UpTo: ptr(dec(tb, "100")), UnitPrice: dec(tb, "0.10")},
		{UpTo: ptr(dec(tb, "1000")), UnitPrice: dec(tb, "0.08")},
		{UnitPrice: dec(tb, "0.05")},
	}}
}

func chain(tb testing.TB) pricing.Chain {
	return pricing.Chain{Currency: "EUR", Levels: []pricing.Level{{EntityID: "D", Markup: dec(tb, "10")}, {EntityID: "P", Markup: dec(tb, "20")}}}
}

func mustEqual(tb testing.TB, what string, got money.Decimal, want string) {
	tb.Helper()
	if !got.Equal(dec(tb, want)) {
		tb.Errorf("%s = %s, want %s", what, got, want)
	}
}

// TestWorkedExample reproduces SPEC 15 figure by figure.
func TestWorkedExample(t *testing.T) {
	oct := period.Period{Year: 2026, Month: time.October}
	inv, err := billing.Compute(billing.Input{
		Period: oct, Chain: chain(t),
		Seats: []billing.Segment{{SubscriptionID: "S", PlanCode: "pro", BasePrice: dec(t, "30.00"), Quantity: 10,
			From: time.Date(2026, 10, 11, 9, 30, 0, 0, time.UTC)}},
		Usage: []billing.Usage{{SubscriptionID: "S", SKU: "storage-gb", Quantity: dec(t, "1250"), List: storage(t)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Lines) != 2 {
		t.Fatalf("lines %+v", inv.Lines)
	}
	seats, use := inv.Lines[0], inv.Lines[1]
	mustEqual(t, "seats list", seats.Split.PlatformRevenue, "203.23")
	mustEqual(t, "seats D sells", seats.Split.Levels[0].SellRounded, "223.55")
	mustEqual(t, "seats T pays", seats.Amount, "268.26")
	mustEqual(t, "storage list", use.Split.PlatformRevenue, "92.00")
	mustEqual(t, "storage D sells", use.Split.Levels[0].SellRounded, "101.20")
	mustEqual(t, "storage T pays", use.Amount, "121.44")
	mustEqual(t, "invoice total", inv.Total, "389.70")
	if len(use.Tiers) != 3 {
		t.Fatalf("tiers %+v", use.Tiers)
	}
	mustEqual(t, "tier 1 quantity", use.Tiers[0].Quantity, "100")
	mustEqual(t, "tier 1 tenant unit price", use.Tiers[0].UnitPrice, "0.132")
	mustEqual(t, "tier 3 quantity", use.Tiers[2].Quantity, "200")

	platform, shares := billing.Shares(inv)
	mustEqual(t, "platform revenue", platform, "295.23")
	mustEqual(t, "D commission", shares[0].Commission, "29.52")
	mustEqual(t, "P commission", shares[1].Commission, "64.95")
	mustEqual(t, "P revenue", shares[1].Revenue, "389.70")
	mustEqual(t, "P cost", shares[1].Cost, "324.75")
	mustEqual(t, "platform + commissions", platform.Add(shares[0].Commission).Add(shares[1].Commission), "389.70")

	t.Run("LateUsageOnNovemberInvoice", func(t *testing.T) {
		nov, err := billing.Compute(billing.Input{
			Period: oct.Next(), Chain: chain(t),
			Late: []billing.Late{{SubscriptionID: "S", SKU: "storage-gb", OriginalPeriod: oct, QOld: dec(t, "1250"), DQ: dec(t, "50"),
				List: storage(t), Chain: chain(t)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		l := nov.Lines[0]
		if l.Kind != billing.KindAdjustment || l.OriginalPeriod != "2026-10" {
			t.Fatalf("line %+v", l)
		}
		mustEqual(t, "late list", l.Split.PlatformRevenue, "2.50")
		mustEqual(t, "late tenant", l.Amount, "3.30")
	})
}

func TestSegments(t *testing.T) {
	oct := period.Period{Year: 2026, Month: time.October}
	day := func(d int) time.Time { return time.Date(2026, 10, d, 12, 0, 0, 0, time.UTC) }
	cases := []struct {
		name  string
		segs  []billing.Segment
		total string
	}{
		// 10 seats at 31.00 for 31 days, no markup.
		{"FullMonth", []billing.Segment{{SubscriptionID: "S", BasePrice: dec(t, "31"), Quantity: 10, From: day(1).AddDate(0, -2, 0)}}, "310.00"},
		// 10 seats from the 1st to the 11th (10 days), then 20 seats to the end (21 days).
		{"QuantityChange", []billing.Segment{
			{SubscriptionID: "S", BasePrice: dec(t, "31"), Quantity: 10, From: day(1), To: day(11)},
			{SubscriptionID: "S", BasePrice: dec(t, "31"), Quantity: 20, From: day(11)},
		}, "520.00"},
		// Cancelled on the 11th: the cancel day does not count.
		{"Cancelled", []billing.Segment{{SubscriptionID: "S", BasePrice: dec(t, "31"), Quantity: 1, From: day(1), To: day(11)}}, "10.00"},
		{"StartsAfterPeriod", []billing.Segment{{SubscriptionID: "S", BasePrice: dec(t, "31"), Quantity: 1, From: day(1).AddDate(0, 1, 0)}}, "0"},
	}
	flat := pricing.Chain{Currency: "EUR", Levels: []pricing.Level{{EntityID: "P", Markup: money.Zero}}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv, err := billing.Compute(billing.Input{Period: oct, Chain: flat, Seats: c.segs})
			if err != nil {
				t.Fatal(err)
			}
			mustEqual(t, "total", inv.Total, c.total)
		})
	}
}

func TestErrBadRate(t *testing.T) {
	_, err := billing.Compute(billing.Input{Period: period.Period{Year: 2026, Month: time.October}, Chain: chain(t),
		Usage: []billing.Usage{{SubscriptionID: "S", SKU: "x", Quantity: dec(t, "1"), List: pricing.Rate{Model: "bogus"}}}})
	if err == nil {
		t.Fatal("a bad rate must fail the invoice, not price it at zero")
	}
}

// BenchmarkComputeWorkedExample prices the SPEC 15 invoice (a seat segment and a graduated usage
// line through a two-level chain) and splits it into shares.
func BenchmarkComputeWorkedExample(b *testing.B) {
	in := billing.Input{
		Period: period.Period{Year: 2026, Month: time.October}, Chain: chain(b),
		Seats: []billing.Segment{{SubscriptionID: "S", PlanCode: "pro", BasePrice: dec(b, "30.00"), Quantity: 10,
			From: time.Date(2026, 10, 11, 0, 0, 0, 0, time.UTC)}},
		Usage: []billing.Usage{{SubscriptionID: "S", SKU: "storage-gb", Quantity: dec(b, "1250"), List: storage(b)}},
	}
	for b.Loop() {
		inv, err := billing.Compute(in)
		if err != nil {
			b.Fatal(err)
		}
		billing.Shares(inv)
	}
}
