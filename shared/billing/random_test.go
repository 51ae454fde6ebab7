package billing_test

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/pricing"
)

// The independent computation below uses math/big rationals (exact) and its own tier walk,
// proration and rounding; it shares nothing with shared/pricing but the SPEC's rules.

func rat(tb testing.TB, d money.Decimal) *big.Rat {
	r, ok := new(big.Rat).SetString(d.String())
	if !ok {
		tb.Fatalf("rat %s", d)
	}
	return r
}

// roundCents rounds half away from zero to 2 places.
func roundCents(r *big.Rat) *big.Rat {
	x := new(big.Rat).Mul(r, big.NewRat(100, 1))
	neg := x.Sign() < 0
	if neg {
		x.Neg(x)
	}
	x.Add(x, big.NewRat(1, 2))
	q := new(big.Int).Quo(x.Num(), x.Denom())
	out := new(big.Rat).SetFrac(q, big.NewInt(100))
	if neg {
		out.Neg(out)
	}
	return out
}

type tierSpec struct {
	upTo  int64 // 0: open
	price *big.Rat
}

// chargeOf prices quantity q with graduated or volume tiers after included units.
func chargeOf(model string, tiers []tierSpec, included, q *big.Rat) *big.Rat {
	b := new(big.Rat).Sub(q, included)
	if b.Sign() <= 0 {
		return new(big.Rat)
	}
	total := new(big.Rat)
	if model == "volume" {
		for _, t := range tiers {
			if t.upTo == 0 || b.Cmp(big.NewRat(t.upTo, 1)) <= 0 {
				return total.Mul(b, t.price)
			}
		}
	}
	prev := new(big.Rat)
	for _, t := range tiers {
		hi := b
		if t.upTo != 0 && b.Cmp(big.NewRat(t.upTo, 1)) > 0 {
			hi = big.NewRat(t.upTo, 1)
		}
		if hi.Cmp(prev) > 0 {
			total.Add(total, new(big.Rat).Mul(new(big.Rat).Sub(hi, prev), t.price))
		}
		if t.upTo == 0 || b.Cmp(big.NewRat(t.upTo, 1)) <= 0 {
			break
		}
		prev = big.NewRat(t.upTo, 1)
	}
	return total
}

// TestRandomInvoices generates channels (0 or 1 distributor, markups with up to 2 decimals),
// plans (seat prices), usage SKUs (graduated and volume tiers, included quantities, fractional
// quantities) and seat segments, and checks every invoice line and total against the
// independent computation, and the commission invariant (SPEC 12) on every line and invoice.
func TestRandomInvoices(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 10))
	oct := period.Period{Year: 2026, Month: time.October}
	for n := range 400 {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var levels []pricing.Level
			var factors []*big.Rat
			for i := range 1 + rng.IntN(2) {
				m := money.New(int64(rng.IntN(5000)), 2) // 0.00 .. 49.99 %
				levels = append(levels, pricing.Level{EntityID: fmt.Sprintf("E%d", i), Markup: m})
				factors = append(factors, new(big.Rat).Add(big.NewRat(1, 1), new(big.Rat).Quo(rat(t, m), big.NewRat(100, 1))))
			}
			ch := pricing.Chain{Currency: "EUR", Levels: levels}
			in := billing.Input{Period: oct, Chain: ch}
			var want []*big.Rat // tenant amounts per expected line, in Compute's order
			var lists []*big.Rat
			// seats: one subscription, up to 3 segments
			base := money.New(int64(100+rng.IntN(10000)), 2)
			start := 1 + rng.IntN(20)
			day := func(d int) time.Time { return time.Date(2026, 10, d, rng.IntN(24), 0, 0, 0, time.UTC) }
			from := start
			for seg := range 1 + rng.IntN(3) {
				to := 0
				if seg < 2 && from < 30 {
					to = from + 1 + rng.IntN(31-from)
				}
				q := int64(1 + rng.IntN(50))
				s := billing.Segment{SubscriptionID: "S", PlanCode: "p", BasePrice: base, Quantity: q, From: day(from)}
				days := 32 - from
				if to != 0 {
					s.To = day(to)
					days = to - from
				}
				in.Seats = append(in.Seats, s)
				list := new(big.Rat).Mul(rat(t, base), big.NewRat(q*int64(days), 31))
				lists = append(lists, list)
				if to == 0 {
					break
				}
				from = to
			}
			// usage: up to 3 SKUs
			for k := range rng.IntN(4) {
				model := []string{"graduated", "volume"}[rng.IntN(2)]
				var tiers []pricing.Tier
				var specs []tierSpec
				bound := int64(0)
				nt := 1 + rng.IntN(3)
				for i := range nt {
					price := money.New(int64(1+rng.IntN(500)), 3)
					tr := pricing.Tier{UnitPrice: price}
					sp := tierSpec{price: rat(t, price)}
					if i < nt-1 {
						bound += int64(1 + rng.IntN(500))
						b := money.NewFromInt(bound)
						tr.UpTo = &b
						sp.upTo = bound
					}
					tiers = append(tiers, tr)
					specs = append(specs, sp)
				}
				inc := money.NewFromInt(int64(rng.IntN(30)))
				rate := pricing.Rate{Model: pricing.Model(model), Tiers: tiers, IncludedQuantity: inc}
				qty := money.New(int64(rng.IntN(200000)), 1+uint8(rng.IntN(2)))
				in.Usage = append(in.Usage, billing.Usage{SubscriptionID: "S", SKU: fmt.Sprintf("k%d", k), Quantity: qty, List: rate})
				if qty.IsZero() {
					continue
				}
				lists = append(lists, chargeOf(model, specs, rat(t, inc), rat(t, qty)))
			}
			for _, l := range lists {
				a := new(big.Rat).Set(l)
				for _, f := range factors {
					a.Mul(a, f)
				}
				want = append(want, roundCents(a))
			}
			inv, err := billing.Compute(in)
			if err != nil {
				t.Fatal(err)
			}
			// seat segments of zero days produce no line in Compute; drop them from want.
			if len(inv.Lines) != len(want) {
				t.Fatalf("%d lines, want %d: %+v", len(inv.Lines), len(want), in)
			}
			total := new(big.Rat)
			for i, l := range inv.Lines {
				if rat(t, l.Amount).Cmp(want[i]) != 0 {
					t.Fatalf("line %d (%s): %s, want %s", i, l.Kind, l.Amount, want[i].FloatString(2))
				}
				total.Add(total, want[i])
				// SPEC 12 on every line: platform revenue + commissions = the line.
				sum := l.Split.PlatformRevenue
				for _, lv := range l.Split.Levels {
					sum = sum.Add(lv.Commission)
				}
				if !sum.Equal(l.Amount) {
					t.Fatalf("line %d: platform + commissions = %s, line %s", i, sum, l.Amount)
				}
				if rat(t, l.Split.PlatformRevenue).Cmp(roundCents(lists[i])) != 0 {
					t.Fatalf("line %d: platform revenue %s, want %s", i, l.Split.PlatformRevenue, roundCents(lists[i]).FloatString(2))
				}
			}
			if rat(t, inv.Total).Cmp(total) != 0 {
				t.Fatalf("total %s, want %s", inv.Total, total.FloatString(2))
			}
			platform, shares := billing.Shares(inv)
			sum := platform
			for _, s := range shares {
				sum = sum.Add(s.Commission)
			}
			if !sum.Equal(inv.Total) {
				t.Fatalf("invoice: platform + commissions = %s, total %s", sum, inv.Total)
			}
		})
	}
}
