package pricing_test

import (
	"encoding/json"
	"fmt"
	"math/big"
	"testing"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/pricing"
)

// dec builds a non-negative decimal below bound / 10^scale from any int64.
func dec(v, bound int64, scale uint8) money.Decimal {
	v %= bound
	if v < 0 {
		v = -v
	}
	return money.New(v, scale)
}

// fuzzRate builds a valid rate of the model picked by sel from fuzzed numbers: three prices, two
// tier widths, an included quantity and a scale byte spreading them over 0 to 5 decimals.
func fuzzRate(sel uint8, p1, p2, p3, w1, w2, inc int64, s uint8) pricing.Rate {
	price := func(v int64, k uint8) money.Decimal { return dec(v, 1e12, (s>>k)%5) }
	r := pricing.Rate{IncludedQuantity: dec(inc, 1e7, s%4)}
	switch sel % 4 {
	case 0:
		r.Model = pricing.PerUnit
		up := price(p1, 0)
		r.UnitPrice = &up
	case 1, 2:
		r.Model = pricing.Graduated
		if sel%4 == 2 {
			r.Model = pricing.Volume
		}
		upTo1 := dec(w1, 1e9, s%3).Add(money.New(1, s%3)) // > 0
		upTo2 := upTo1.Add(dec(w2, 1e9, (s>>2)%3)).Add(money.New(1, 2))
		r.Tiers = []pricing.Tier{
			{UpTo: &upTo1, UnitPrice: price(p1, 0), FlatFee: price(p3, 1)},
			{UpTo: &upTo2, UnitPrice: price(p2, 2), FlatFee: price(p1, 3)},
			{UnitPrice: price(p3, 4), FlatFee: price(p2, 5)},
		}
	case 3:
		r.Model = pricing.Package
		size := dec(w1, 1e6, s%3).Add(money.New(1, s%3)) // > 0
		pp := price(p2, 1)
		r.PackageSize, r.PackagePrice = &size, &pp
	}
	return r
}

// checkCharge asserts what holds for every successful charge.
func checkCharge(t *testing.T, r pricing.Rate, q money.Decimal, c pricing.Charge) {
	t.Helper()
	if c.Amount.IsNeg() {
		t.Fatalf("negative amount %s for q=%s", c.Amount, q)
	}
	if c.Billable.IsNeg() || c.Billable.Cmp(q) > 0 {
		t.Fatalf("billable %s outside [0, %s]", c.Billable, q)
	}
	if len(c.Tiers) > 0 {
		var qty, amt money.Decimal
		for _, tc := range c.Tiers {
			if tc.Quantity.Sign() <= 0 {
				t.Fatalf("tier with quantity %s", tc.Quantity)
			}
			qty = qty.Add(tc.Quantity)
			amt = amt.Add(tc.Amount)
		}
		if !qty.Equal(c.Billable) {
			t.Fatalf("tier quantities sum to %s, billable %s", qty, c.Billable)
		}
		if !amt.Equal(c.Amount) {
			t.Fatalf("tier amounts sum to %s, amount %s", amt, c.Amount)
		}
	}
	if r.Model == pricing.Package && !c.Billable.IsZero() {
		if !c.Packages.IsInteger() || c.Packages.Sign() <= 0 {
			t.Fatalf("packages = %s", c.Packages)
		}
		// Packages is the smallest integer n with n * size >= B. That is checkable while n - 1 and
		// (n - 1) * size are exact, i.e. far below 34 digits; beyond, rounding decides.
		size, n := *r.PackageSize, c.Packages
		limit := money.New(1e15, 0)
		exact := n.Cmp(limit) < 0 && c.Billable.Cmp(limit) < 0
		if exact && (n.Mul(size).Cmp(c.Billable) < 0 || n.Sub(money.NewFromInt(1)).Mul(size).Cmp(c.Billable) >= 0) {
			t.Fatalf("packages %s of %s do not cover %s tightly", c.Packages, size, c.Billable)
		}
	}
}

// FuzzChargeMonotone checks that a larger quantity never costs less under per_unit, graduated and
// package. Volume pricing is not monotone (101 units in a cheaper tier can cost less than 100 in
// a dearer one, by design), so volume rates are only checked for the general properties.
func FuzzChargeMonotone(f *testing.F) {
	// sel, p1, p2, p3, w1, w2, inc, s, q, dq, qs
	f.Add(uint8(1), int64(10), int64(8), int64(5), int64(99), int64(899), int64(50), uint8(2), int64(1250), int64(50), uint8(0))
	f.Add(uint8(0), int64(25), int64(0), int64(0), int64(0), int64(0), int64(10), uint8(2), int64(11), int64(1), uint8(0))
	f.Add(uint8(3), int64(0), int64(15), int64(0), int64(99), int64(0), int64(0), uint8(0), int64(100), int64(1), uint8(0))
	f.Add(uint8(3), int64(0), int64(2), int64(0), int64(4), int64(0), int64(1), uint8(1), int64(101), int64(1), uint8(2))
	f.Add(uint8(2), int64(100), int64(50), int64(25), int64(99), int64(899), int64(0), uint8(0), int64(100), int64(1), uint8(0))
	f.Add(uint8(1), int64(-7), int64(1<<62), int64(-1<<63), int64(-1), int64(1<<40), int64(-5), uint8(255), int64(-1<<63), int64(1<<62), uint8(255))
	f.Fuzz(func(t *testing.T, sel uint8, p1, p2, p3, w1, w2, inc int64, s uint8, q, dq int64, qs uint8) {
		r := fuzzRate(sel, p1, p2, p3, w1, w2, inc, s)
		if err := r.Validate(); err != nil {
			t.Fatalf("fuzzRate built an invalid rate: %v", err)
		}
		q1 := dec(q, 1e13, qs%6)
		q2 := q1.Add(dec(dq, 1e13, (qs>>3)%6))
		c1, err := r.Charge(q1)
		if err != nil {
			t.Fatalf("Charge(%s): %v", q1, err)
		}
		c2, err := r.Charge(q2)
		if err != nil {
			t.Fatalf("Charge(%s): %v", q2, err)
		}
		checkCharge(t, r, q1, c1)
		checkCharge(t, r, q2, c2)
		if r.Model != pricing.Volume && c2.Amount.Cmp(c1.Amount) < 0 {
			t.Fatalf("%s: charge(%s) = %s < charge(%s) = %s", r.Model, q2, c2.Amount, q1, c1.Amount)
		}
		adj, err := pricing.LateAdjustment(r, q1, q2.Sub(q1))
		if err != nil {
			t.Fatalf("LateAdjustment: %v", err)
		}
		if !adj.Equal(c2.Amount.Sub(c1.Amount)) {
			t.Fatalf("LateAdjustment = %s, want %s", adj, c2.Amount.Sub(c1.Amount))
		}
	})
}

// FuzzChargeNoPanic feeds arbitrary JSON as a rate and arbitrary text as a quantity: nothing may
// panic, an invalid rate or quantity must come back as an error, and a charge that succeeds must
// be consistent.
func FuzzChargeNoPanic(f *testing.F) {
	for _, seed := range []struct{ rate, q string }{
		{`{"model":"graduated","tiers":[{"upTo":100,"unitPrice":"0.10"},{"upTo":1000,"unitPrice":"0.08"},{"upTo":null,"unitPrice":"0.05"}],"includedQuantity":"50"}`, "1250"},
		{`{"model":"per_unit","unitPrice":"0.25","includedQuantity":10}`, "12.5"},
		{`{"model":"volume","tiers":[{"upTo":"100","unitPrice":"1"},{"upTo":null,"unitPrice":"0.5","flatFee":"10"}]}`, "101"},
		{`{"model":"package","packageSize":"0.5","packagePrice":"2"}`, "1.01"},
		{`{"model":"package","packageSize":"0","packagePrice":"2"}`, "1"},
		{`{"model":"graduated","tiers":[{"upTo":"5","unitPrice":"1"},{"upTo":"3","unitPrice":"1"}]}`, "4"},
		{`{"model":"volume","tiers":[]}`, "1"},
		{`{"model":"per_unit","unitPrice":"1e-34"}`, "9999999999999999999999999999999999"},
		{`{"model":"package","packageSize":"1e-30","packagePrice":"1e30"}`, "1e33"},
		{`{"model":"per_unit","unitPrice":"-1"}`, "-1"},
		{`{"model":"tiered"}`, "x"},
		{`not json`, "1"},
	} {
		f.Add(seed.rate, seed.q)
	}
	f.Fuzz(func(t *testing.T, rateJSON, qText string) {
		var r pricing.Rate
		if err := json.Unmarshal([]byte(rateJSON), &r); err != nil {
			return
		}
		q, err := money.Parse(qText)
		if err != nil {
			return
		}
		verr := r.Validate()
		c, err := r.Charge(q)
		switch {
		case verr != nil:
			if err == nil {
				t.Fatalf("Charge accepted a rate Validate rejects: %v", verr)
			}
			if len(pricing.FieldErrors(err)) == 0 {
				t.Fatalf("validation error without field errors: %v", err)
			}
			return
		case q.IsNeg():
			if err == nil {
				t.Fatal("Charge accepted a negative quantity")
			}
			return
		case err != nil:
			t.Fatalf("Charge(%s) of a valid rate: %v", q, err)
		}
		checkCharge(t, r, q, c)
		if _, err := json.Marshal(c); err != nil {
			t.Fatalf("Marshal(charge): %v", err)
		}
		chain := pricing.Chain{Currency: "EUR", Levels: []pricing.Level{{EntityID: "P", Markup: money.NewFromInt(20)}}}
		if _, err := chain.PriceUsage(r, &r, q); err != nil {
			if fes := pricing.FieldErrors(err); len(fes) != 1 || fes[0].Field != "amount" {
				t.Fatalf("PriceUsage: %v", err)
			}
		}
	})
}

// ratOf reads a decimal as an exact rational.
func ratOf(t *testing.T, d money.Decimal) *big.Rat {
	t.Helper()
	r, ok := new(big.Rat).SetString(d.String())
	if !ok {
		t.Fatalf("%s is not a rational", d)
	}
	return r
}

// roundRat rounds x to minor digits after the point, half away from zero, in exact rational
// arithmetic: the reference money.RoundMoney is checked against.
func roundRat(x *big.Rat, minor int) *big.Rat {
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(minor)), nil)
	y := new(big.Rat).Mul(x, new(big.Rat).SetInt(scale))
	q, r := new(big.Int).QuoRem(y.Num(), y.Denom(), new(big.Int)) // truncated toward zero
	if twice := new(big.Int).Lsh(new(big.Int).Abs(r), 1); twice.Cmp(y.Denom()) >= 0 {
		q.Add(q, big.NewInt(int64(y.Num().Sign())))
	}
	return new(big.Rat).SetFrac(q, scale)
}

// checkAgainstRat compares a full-precision figure of a split and its rounding with the exact
// rational value want, computed independently of money and pricing. got was obtained from exact
// inputs by mults multiplications, each exact or rounded to money.Precision (34) significant
// digits, so it lies within want x mults x 10^-33; with mults = 0 it must be want itself. Its
// rounding must be want's rounding to the minor unit whenever every value in that interval
// rounds alike (always, when the interval is a point).
func checkAgainstRat(t *testing.T, what string, got, gotRounded money.Decimal, want *big.Rat, mults, minor int) {
	t.Helper()
	bound := new(big.Rat).Abs(want)
	bound.Mul(bound, new(big.Rat).SetFrac(big.NewInt(int64(mults)), new(big.Int).Exp(big.NewInt(10), big.NewInt(money.Precision-1), nil)))
	diff := new(big.Rat).Sub(ratOf(t, got), want)
	if diff.Abs(diff).Cmp(bound) > 0 {
		t.Fatalf("%s = %s, exactly %s: off by %s, more than %s", what, got, want.FloatString(40), diff.FloatString(40), bound.FloatString(40))
	}
	lo := roundRat(new(big.Rat).Sub(want, bound), minor)
	hi := roundRat(new(big.Rat).Add(want, bound), minor)
	if lo.Cmp(hi) == 0 && ratOf(t, gotRounded).Cmp(lo) != 0 {
		t.Fatalf("%s rounds to %s, exactly %s rounds to %s", what, gotRounded, want.FloatString(40), lo.FloatString(minor))
	}
}

// FuzzChainInvariant splits random amounts down random chains of one to four levels, in
// currencies with 0, 2 and 3 minor digits, with and without a tenant override, and checks that
// platform revenue plus every commission is the tenant's rounded amount to the minor unit (which
// Split guarantees by construction), that each level buys at what its parent sells, that every
// rounded figure is the rounding of its full-precision one, and, against an independent exact
// computation in big.Rat (list x each 1 + markup/100, or the override), that every level's
// amount and its rounding to the minor unit, half away from zero, are right.
func FuzzChainInvariant(f *testing.F) {
	// list, ls, m1..m4, ms, n, override, hasOverride, cur
	f.Add(int64(2032258064516129), uint8(13), int64(100), int64(200), int64(0), int64(0), uint8(1), uint8(2), int64(0), false, uint8(0))
	f.Add(int64(9200), uint8(2), int64(10), int64(20), int64(0), int64(0), uint8(0), uint8(2), int64(0), false, uint8(0))
	f.Add(int64(9200), uint8(2), int64(10), int64(20), int64(0), int64(0), uint8(0), uint8(2), int64(9555), true, uint8(0))
	f.Add(int64(5), uint8(3), int64(333), int64(-50), int64(1), int64(999999), uint8(1), uint8(4), int64(-5), true, uint8(2))
	f.Add(int64(-250), uint8(2), int64(10), int64(20), int64(7), int64(3), uint8(0), uint8(3), int64(0), false, uint8(1))
	f.Add(int64(-1<<63), uint8(255), int64(1<<63-1), int64(-1<<63), int64(-9999), int64(12345), uint8(255), uint8(255), int64(-1<<63), true, uint8(255))
	currencies := []string{"EUR", "JPY", "KWD", "USD"}
	f.Fuzz(func(t *testing.T, list int64, ls uint8, m1, m2, m3, m4 int64, ms, n uint8, override int64, hasOverride bool, cur uint8) {
		chain := pricing.Chain{Currency: currencies[int(cur)%len(currencies)]}
		for i, m := range []int64{m1, m2, m3, m4}[:1+int(n)%4] {
			// Markups above -100 % (down to -99.99 %) and below 10,000,000 %, with up to 3 decimals.
			markup := money.New(m%10_000_000, ms%4)
			if markup.Cmp(money.New(-9999, 2)) < 0 {
				markup = markup.Abs()
			}
			chain.Levels = append(chain.Levels, pricing.Level{EntityID: string(rune('A' + i)), Markup: markup})
		}
		if err := chain.Validate(); err != nil {
			t.Fatalf("invalid chain %+v: %v", chain, err)
		}
		listAmount := money.New(list, ls%20)
		var ov *money.Decimal
		if hasOverride {
			o := money.New(override, ls%7)
			ov = &o
		}
		s, err := chain.Split(listAmount, ov)
		if fes := pricing.FieldErrors(err); len(fes) == 1 && fes[0].Field == "amount" {
			// Refused as too large (10^(33 - minor units)): only legitimate when some amount along
			// the chain is at least near that.
			largest := listAmount.Abs()
			amount := listAmount
			for _, l := range chain.Levels {
				amount = amount.Mul(pricing.Factor(l.Markup))
				largest = money.Max(largest, amount.Abs())
			}
			if ov != nil {
				largest = money.Max(largest, ov.Abs())
			}
			near, _ := money.Parse(fmt.Sprintf("1e%d", money.Precision-2-money.MinorUnits(chain.Currency)))
			if largest.Cmp(near) < 0 {
				t.Fatalf("Split refused amounts no larger than %s: %v", largest, err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		round := func(d money.Decimal) money.Decimal {
			r, err := money.RoundMoney(d, chain.Currency)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		if !s.PlatformRevenue.Equal(round(s.List)) || !s.List.Equal(listAmount) {
			t.Fatalf("platform revenue %s is not round(%s)", s.PlatformRevenue, s.List)
		}
		minor := money.MinorUnits(chain.Currency)
		exact := ratOf(t, listAmount)
		checkAgainstRat(t, "platform", s.List, s.PlatformRevenue, exact, 0, minor)
		mults := 0
		sum := s.PlatformRevenue
		buy := s.List
		product := listAmount
		for i, l := range s.Levels {
			if !l.Buy.Equal(buy) {
				t.Fatalf("level %d buys at %s, its parent sells at %s", i, l.Buy, buy)
			}
			if !l.BuyRounded.Equal(round(l.Buy)) || !l.SellRounded.Equal(round(l.Sell)) {
				t.Fatalf("level %d rounding: %+v", i, l)
			}
			if !l.Commission.Equal(l.SellRounded.Sub(l.BuyRounded)) {
				t.Fatalf("level %d commission %s", i, l.Commission)
			}
			product = product.Mul(pricing.Factor(chain.Levels[i].Markup))
			last := i == len(s.Levels)-1
			if !(last && ov != nil) && !l.Sell.Equal(product) {
				t.Fatalf("level %d sells at %s, want list x factors = %s", i, l.Sell, product)
			}
			if last && ov != nil {
				exact, mults = ratOf(t, *ov), 0
			} else {
				f := new(big.Rat).Quo(ratOf(t, chain.Levels[i].Markup), big.NewRat(100, 1))
				exact = new(big.Rat).Mul(exact, f.Add(f, big.NewRat(1, 1)))
				mults++
			}
			checkAgainstRat(t, fmt.Sprintf("level %d sell", i), l.Sell, l.SellRounded, exact, mults, minor)
			sum = sum.Add(l.Commission)
			buy = l.Sell
		}
		checkAgainstRat(t, "tenant", s.Tenant, s.TenantRounded, exact, mults, minor)
		if ov != nil && !s.Tenant.Equal(*ov) {
			t.Fatalf("tenant %s, override %s", s.Tenant, ov)
		}
		if !s.TenantRounded.Equal(round(s.Tenant)) {
			t.Fatalf("tenant rounded %s is not round(%s)", s.TenantRounded, s.Tenant)
		}
		if !sum.Equal(s.TenantRounded) {
			t.Fatalf("platform %s + commissions = %s, tenant pays %s", s.PlatformRevenue, sum, s.TenantRounded)
		}
		if got, want := s.TenantRounded.String(), round(s.Tenant).String(); got != want {
			t.Fatalf("tenant amount written %s, want %s", got, want)
		}
	})
}
