package billing_test

import (
	"fmt"
	"math/big"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/pricing"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// TestRandomInvoices generates channels, catalogs, subscription histories and usage, bills them
// through the service's own path (Process of each tenant's message: gather, timeline,
// planAtEnd, rates, Compute, the stored invoice) period after period, and checks every invoice
// against an independent computation:
//
//   - channels: a distributor and a partner, or a distributor-less partner; markups from -20 %
//     to +60 % with up to 2 decimals, some changing during the generated periods (a change takes
//     effect from the first period starting on or after its date), some levels without any;
//   - currencies with 0, 2 and 3 minor digits (JPY, EUR/USD, KWD); three consecutive periods
//     from a random month of 2026-2028 (months of 28 to 31 days, February 2028 included);
//   - SKUs of all four models (per_unit, graduated, volume, package) with flat fees, included
//     quantities, fractional bounds and a rate change during the periods; plans whose charges
//     may replace the included quantity; tenant price-list overrides (complete rates, some
//     starting or ending during the periods);
//   - several subscriptions per tenant, imported (starting before they were created) or not,
//     with seat and plan changes (some on the same day), license key changes (no new segment),
//     cancellations now or at the period's end, seats written "7" or "7.0";
//   - usage at awkward quantities (tier bounds and package multiples past the included
//     quantity, within the included quantity, zero), flags of the period being billed, and late
//     usage for periods already invoiced (billed on the tenant's next invoice, priced as in the
//     original period, more than once for one aggregate).
//
// For every invoice it checks each line (kind, subscription, SKU, quantity, amount,
// description, original period, tiers), the total, the platform's revenue, each ancestor's
// revenue, cost and commission (round(sell) - round(buy) per line, SPEC 12), the invariant
// platform revenue + commissions = total, the number (per issuer and year of issue, gapless)
// and that every usage flag was acknowledged. The expected figures are computed with math/big
// rationals from the generator's own record of what happened (segments, rates in effect,
// markups): its tier walk, proration by calendar days, effective dating and rounding share
// nothing with shared/pricing or the billing package but the SPEC's rules.
func TestRandomInvoices(t *testing.T) {
	rng := rand.New(rand.NewPCG(2026, 12))
	n := 500
	if testing.Short() {
		n = 100
	}
	seen := map[string]int{}
	for i := range n {
		seed := rng.Uint64()
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			c := newCase(rand.New(rand.NewPCG(seed, uint64(i))))
			c.seen = seen
			c.run(t)
		})
	}
	// The generator must keep reaching every situation it claims to (a narrower generator would
	// still pass): each of these happened on some invoice line or invoice.
	for _, what := range []string{"seats", "usage", "adjustment", "override", "plan included", "plan at end differs",
		"per_unit", "graduated", "volume", "package", "flat fee", "0 minor digits", "2 minor digits", "3 minor digits",
		"28 days", "29 days", "30 days", "31 days", "one level", "two levels", "several segments", "zero-day segment",
		"negative commission", "empty invoice", "new year's number", "markup change", "rate change"} {
		if seen[what] < 3 {
			t.Errorf("the generator reached %q %d times", what, seen[what])
		}
	}
	t.Logf("reached: %v", seen)
}

// Exact arithmetic of the independent computation.

func pow10(n int) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil) }

func rat(tb testing.TB, d money.Decimal) *big.Rat {
	tb.Helper()
	r, ok := new(big.Rat).SetString(d.String())
	if !ok {
		tb.Fatalf("rat %s", d)
	}
	return r
}

// roundMinor rounds half away from zero to minor decimals (SPEC 11).
func roundMinor(r *big.Rat, minor int) *big.Rat {
	x := new(big.Rat).Mul(r, new(big.Rat).SetInt(pow10(minor)))
	neg := x.Sign() < 0
	x.Abs(x)
	x.Add(x, big.NewRat(1, 2))
	q := new(big.Int).Quo(x.Num(), x.Denom())
	if neg {
		q.Neg(q)
	}
	return new(big.Rat).SetFrac(q, pow10(minor))
}

// text writes a rounded amount as an invoice writes it: exactly minor decimals, no "-0".
func text(r *big.Rat, minor int) string {
	if r.Sign() == 0 {
		r = new(big.Rat)
	}
	return r.FloatString(minor)
}

func add(a, b *big.Rat) *big.Rat { return new(big.Rat).Add(a, b) }
func sub(a, b *big.Rat) *big.Rat { return new(big.Rat).Sub(a, b) }
func mul(a, b *big.Rat) *big.Rat { return new(big.Rat).Mul(a, b) }

func minRat(a, b *big.Rat) *big.Rat {
	if a.Cmp(b) < 0 {
		return a
	}
	return b
}

// ceilRat returns the smallest integer >= r (r >= 0).
func ceilRat(r *big.Rat) *big.Rat {
	q, m := new(big.Int).QuoRem(r.Num(), r.Denom(), new(big.Int))
	if m.Sign() != 0 {
		q.Add(q, big.NewInt(1))
	}
	return new(big.Rat).SetInt(q)
}

// The independent model of rates.

type tierX struct {
	upTo       *big.Rat // nil: the open last tier
	price, fee *big.Rat
}

type rateX struct {
	model          pricing.Model
	unit           *big.Rat
	tiers          []tierX
	size, pkgPrice *big.Rat
	included       *big.Rat
}

type tierOut struct {
	upTo                    *big.Rat
	qty, price, fee, amount *big.Rat
}

// charge prices q (SPEC 8.1): B = max(0, q - included); nothing at all when B is 0.
func (r rateX) charge(q *big.Rat) (*big.Rat, []tierOut) {
	b := sub(q, r.included)
	if b.Sign() <= 0 {
		return new(big.Rat), nil
	}
	switch r.model {
	case pricing.PerUnit:
		return mul(b, r.unit), nil
	case pricing.Package:
		return mul(ceilRat(new(big.Rat).Quo(b, r.size)), r.pkgPrice), nil
	case pricing.Volume:
		for _, t := range r.tiers {
			if t.upTo == nil || b.Cmp(t.upTo) <= 0 {
				amt := add(mul(b, t.price), t.fee)
				return amt, []tierOut{{t.upTo, b, t.price, t.fee, amt}}
			}
		}
		panic("volume rate without an open tier")
	}
	// graduated: tier i holds max(0, min(B, upTo_i) - upTo_(i-1)) units; a tier holding any
	// charges its fee.
	total, lower := new(big.Rat), new(big.Rat)
	var out []tierOut
	for _, t := range r.tiers {
		hi := b
		if t.upTo != nil {
			hi = minRat(b, t.upTo)
		}
		if units := sub(hi, lower); units.Sign() > 0 {
			amt := add(mul(units, t.price), t.fee)
			total.Add(total, amt)
			out = append(out, tierOut{t.upTo, units, t.price, t.fee, amt})
		}
		if t.upTo != nil {
			lower = t.upTo
		}
	}
	return total, out
}

// dated is a value with the date it takes effect from (SPEC 8.3: from the first period that
// starts on or after it).
type dated[T any] struct {
	from string // YYYY-MM-DD
	v    T
}

// inEffect returns the newest value whose date is on or before p's first day.
func inEffect[T any](vs []dated[T], p period.Period) (T, bool) {
	v, _, ok := inEffectFrom(vs, p)
	return v, ok
}

// inEffectFrom is inEffect with the date of the value returned.
func inEffectFrom[T any](vs []dated[T], p period.Period) (T, string, bool) {
	var best T
	bestFrom, ok := "", false
	first := p.Start().Format(time.DateOnly)
	for _, v := range vs {
		if v.from <= first && (!ok || v.from > bestFrom) {
			best, bestFrom, ok = v.v, v.from, true
		}
	}
	return best, bestFrom, ok
}

// The generated world, as the generator recorded it.

type levelX struct {
	entity  *hierarchy.Entity
	markups []dated[*big.Rat] // percent
}

type planX struct {
	code     string
	base     *big.Rat
	included map[string]*big.Rat // sku code -> the charge's includedQuantity; a charge without one is present with nil
}

type skuX struct {
	code  string
	id    string
	rates []dated[rateX]
}

// segX is a stretch of a subscription with one plan and one seat count; to zero: open.
type segX struct {
	from, to time.Time
	plan     string
	seats    int64
}

type subX struct {
	id     string
	tenant string
	segs   []segX
	// unused: no usage is generated for it.
	unused bool
}

func (s *subX) overlaps(seg segX, p period.Period) bool {
	return seg.from.Before(p.End()) && (seg.to.IsZero() || seg.to.After(p.Start()))
}

func (s *subX) activeIn(p period.Period) bool {
	for _, seg := range s.segs {
		if s.overlaps(seg, p) {
			return true
		}
	}
	return false
}

// planAtEnd is the plan of the last segment lying in p (SPEC 11: usage is priced with the plan
// active at the period's end), "" when none does.
func (s *subX) planAtEnd(p period.Period) string {
	plan := ""
	for _, seg := range s.segs {
		if s.overlaps(seg, p) {
			plan = seg.plan
		}
	}
	return plan
}

func day(t time.Time) time.Time { return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC) }

// activeDays counts the calendar days of p on which seg is active: its start day counts, its
// end day does not.
func activeDays(seg segX, p period.Period) int {
	n := 0
	for d := p.Start(); d.Before(p.End()); d = d.AddDate(0, 0, 1) {
		if !d.Before(day(seg.from)) && (seg.to.IsZero() || d.Before(day(seg.to))) {
			n++
		}
	}
	return n
}

type aggX struct {
	sub, sku string
	p        period.Period
}

type randomCase struct {
	rng      *rand.Rand
	w        *world
	currency string
	minor    int
	periods  []period.Period
	levels   []levelX
	issuer   *hierarchy.Entity
	tenants  []*hierarchy.Entity
	skus     []*skuX
	plans    map[string]*planX
	subs     []*subX
	ovs      map[string][]dated[*rateX] // tenant#sku -> versions (nil: ended)
	// totals is the usage as generated; billed what each invoiced period's ledger says was
	// billed; pending the late aggregates not billed yet, per tenant.
	totals   map[aggX]*big.Rat
	billed   map[string]map[aggX]*big.Rat // tenant -> ...
	invoiced map[string]map[period.Period]bool
	pending  map[string]map[aggX]bool
	seqs     map[int]int64 // year -> last number of the issuer
	seen     map[string]int
}

// num returns a random decimal in [lo, hi] * 10^-scale with scale in [0, maxScale], both as the
// code's Decimal and as the test's rational.
func (c *randomCase) num(lo, hi int64, maxScale int) (money.Decimal, *big.Rat) {
	u := lo + c.rng.Int64N(hi-lo+1)
	s := c.rng.IntN(maxScale + 1)
	return money.New(u, uint8(s)), new(big.Rat).SetFrac(big.NewInt(u), pow10(s))
}

func (c *randomCase) chance(p float64) bool { return c.rng.Float64() < p }

// date returns a random date from 40 days before the first period to the end of the last.
func (c *randomCase) date() string {
	lo := c.periods[0].Start().AddDate(0, 0, -40)
	span := c.periods[len(c.periods)-1].End().Sub(lo)
	return lo.Add(time.Duration(c.rng.Int64N(int64(span)))).Format(time.DateOnly)
}

func newCase(rng *rand.Rand) *randomCase {
	c := &randomCase{rng: rng, w: newWorld(), plans: map[string]*planX{}, ovs: map[string][]dated[*rateX]{},
		totals: map[aggX]*big.Rat{}, billed: map[string]map[aggX]*big.Rat{}, invoiced: map[string]map[period.Period]bool{},
		pending: map[string]map[aggX]bool{}, seqs: map[int]int64{}}
	cur := []struct {
		code  string
		minor int
	}{{"EUR", 2}, {"USD", 2}, {"JPY", 0}, {"KWD", 3}}[rng.IntN(4)]
	c.currency, c.minor = cur.code, cur.minor
	first := period.Period{Year: 2026 + rng.IntN(3), Month: time.Month(1 + rng.IntN(12))}
	for p := first; len(c.periods) < 3; p = p.Next() {
		c.periods = append(c.periods, p)
	}
	c.channel()
	c.catalog()
	for _, tn := range c.tenants {
		if c.chance(0.1) {
			c.brief(tn)
			continue
		}
		for range 1 + rng.IntN(3) {
			c.subscription(tn)
		}
	}
	return c
}

// channel makes a distributor (or none) and a partner with markup histories, and 1-2 tenants.
func (c *randomCase) channel() {
	var parent *hierarchy.Entity
	types := []access.EntityType{access.Partner}
	if c.chance(0.5) {
		types = []access.EntityType{access.Distributor, access.Partner}
	}
	for _, typ := range types {
		var lv levelX
		var ms []hierarchy.Markup
		if !c.chance(0.1) { // a level may have no markup at all: factor 1
			for i := range 1 + c.rng.IntN(2) {
				u := -2000 + c.rng.Int64N(8001) // -20.00 % .. 60.00 %
				d, r := money.New(u, 2), big.NewRat(u, 100)
				if c.chance(0.3) {
					u /= 100
					d, r = money.NewFromInt(u), big.NewRat(u, 1)
				}
				from := "2020-01-01"
				if i > 0 {
					from = c.date()
				}
				lv.markups = append(lv.markups, dated[*big.Rat]{from, r})
				ms = append(ms, hierarchy.Markup{Markup: d.String(), StartDate: from})
			}
		}
		sort.Slice(ms, func(i, j int) bool { return ms[i].StartDate > ms[j].StartDate }) // newest first
		lv.entity = c.w.addEntity(string(typ)[:3]+"_x", typ, parent, ms)
		parent = lv.entity
		c.levels = append(c.levels, lv)
	}
	c.issuer = parent
	if c.chance(0.5) {
		c.issuer.BillingID = "PB"
	}
	for i := range 1 + c.rng.IntN(2) {
		tn := c.w.addEntity(fmt.Sprintf("tnt_%d", i), access.Tenant, c.issuer, nil)
		if c.currency != "EUR" || c.chance(0.5) {
			tn.Currency = c.currency // else the platform's (EUR)
		}
		c.tenants = append(c.tenants, tn)
	}
}

// rate returns a random valid rate of a random model.
func (c *randomCase) rate() (pricing.Rate, rateX) {
	model := pricing.Models[c.rng.IntN(len(pricing.Models))]
	r, x := pricing.Rate{Model: model}, rateX{model: model, included: new(big.Rat)}
	if c.chance(0.6) {
		r.IncludedQuantity, x.included = c.num(0, 3000, 1)
	}
	switch model {
	case pricing.PerUnit:
		d, v := c.num(0, 5000, 4)
		r.UnitPrice, x.unit = &d, v
	case pricing.Package:
		d, v := c.num(1, 500, 1)
		r.PackageSize, x.size = &d, v
		d2, v2 := c.num(0, 50000, 2)
		r.PackagePrice, x.pkgPrice = &d2, v2
	default:
		bound, boundX := money.Zero, new(big.Rat)
		nt := 1 + c.rng.IntN(4)
		for i := range nt {
			var t pricing.Tier
			var tx tierX
			t.UnitPrice, tx.price = c.num(0, 5000, 4)
			tx.fee = new(big.Rat)
			if c.chance(0.5) {
				t.FlatFee, tx.fee = c.num(1, 5000, 2)
			}
			if i < nt-1 {
				d, v := c.num(1, 2000, 1)
				bound, boundX = bound.Add(d), add(boundX, v)
				b := bound
				t.UpTo, tx.upTo = &b, boundX
			}
			r.Tiers, x.tiers = append(r.Tiers, t), append(x.tiers, tx)
		}
	}
	return r, x
}

// catalog makes 2-3 SKUs (a rate from 2020, sometimes a new one during the periods), 2-3
// plans charging some of them, and the tenants' overrides.
func (c *randomCase) catalog() {
	for i := range 2 + c.rng.IntN(2) {
		k := &skuX{code: fmt.Sprintf("k%d", i), id: fmt.Sprintf("sku_k%d", i)}
		sku := &catalog.SKU{ID: k.id, Code: k.code, Currency: c.currency}
		for v := range 1 + c.rng.IntN(2) {
			from := "2020-01-01"
			if v > 0 {
				from = c.date()
			}
			r, x := c.rate()
			k.rates = append(k.rates, dated[rateX]{from, x})
			sku.Rates = append(sku.Rates, catalog.RateVersion{EffectiveFrom: from, Rate: r})
		}
		sort.Slice(sku.Rates, func(i, j int) bool { return sku.Rates[i].EffectiveFrom > sku.Rates[j].EffectiveFrom })
		c.skus = append(c.skus, k)
		c.w.skus = append(c.w.skus, sku)
	}
	for i := range 2 + c.rng.IntN(2) {
		px := &planX{code: fmt.Sprintf("plan%d", i), included: map[string]*big.Rat{}}
		base, baseX := c.num(0, 20000, 3)
		px.base = baseX
		pl := &catalog.Plan{ID: "pln_" + px.code, Code: px.code, Currency: c.currency, BasePrice: base, Status: catalog.PlanPublished}
		for _, k := range c.skus {
			if !c.chance(0.7) {
				continue
			}
			ch := catalog.PlanCharge{SKUID: k.id, SKUCode: k.code}
			px.included[k.code] = nil
			if c.chance(0.5) {
				d, v := c.num(0, 500, 1)
				ch.IncludedQuantity, px.included[k.code] = &d, v
			}
			pl.Charges = append(pl.Charges, ch)
		}
		c.plans[pl.ID] = px
		c.w.plans[pl.ID] = pl
	}
	for _, tn := range c.tenants {
		for _, k := range c.skus {
			if !c.chance(0.3) {
				continue
			}
			o := &catalog.Override{TenantID: tn.ID, SKUID: k.id}
			used := map[string]bool{}
			for v := range 1 + c.rng.IntN(2) {
				from := c.date()
				if v == 0 && c.chance(0.5) {
					from = "2020-01-01"
				}
				if used[from] {
					continue
				}
				used[from] = true
				ver := catalog.OverrideVersion{EffectiveFrom: from, CreatedAt: time.Date(2020, 1, 1, 0, 0, v, 0, time.UTC)}
				var x *rateX
				if v == 0 || c.chance(0.5) {
					r, rx := c.rate()
					ver.Rate, x = &r, &rx
				} // else the override ends
				o.Versions = append(o.Versions, ver)
				c.ovs[tn.ID+"#"+k.code] = append(c.ovs[tn.ID+"#"+k.code], dated[*rateX]{from, x})
			}
			sort.Slice(o.Versions, func(i, j int) bool { return o.Versions[i].EffectiveFrom > o.Versions[j].EffectiveFrom })
			c.w.overrides[tn.ID] = append(c.w.overrides[tn.ID], o)
		}
	}
}

func (c *randomCase) planIDs() []string {
	ids := make([]string, 0, len(c.plans))
	for id := range c.plans {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// seats returns n as a subscription stores it, sometimes written with a scale ("7.0").
func (c *randomCase) seats(n int64) money.Decimal {
	if c.chance(0.2) {
		return money.New(n*10, 1)
	}
	return money.NewFromInt(n)
}

// subscription generates one subscription of tn: its history in the world (as the
// subscriptions service writes it) and its segments in the generator's record.
func (c *randomCase) subscription(tn *hierarchy.Entity) {
	plans := c.planIDs()
	lo := c.periods[0].Start().AddDate(0, 0, -45)
	end := c.periods[len(c.periods)-1].End()
	start := lo.Add(time.Duration(c.rng.Int64N(int64(end.Add(-24 * time.Hour).Sub(lo))))).Truncate(time.Minute)
	created := start
	if c.chance(0.3) { // an import: created after the date it starts
		created = start.Add(time.Duration(1+c.rng.IntN(10*24)) * time.Hour)
	}
	plan, seats := plans[c.rng.IntN(len(plans))], int64(1+c.rng.IntN(50))
	id := fmt.Sprintf("sub_%s_%d", tn.ID, len(c.subs))
	s := c.w.subscribe(id, tn, plan, c.seats(seats), start, created)
	x := &subX{id: id, tenant: tn.ID, segs: []segX{{from: start, plan: plan, seats: seats}}}
	c.subs = append(c.subs, x)
	at := created
	next := func() time.Time {
		if c.chance(0.2) {
			return at.Add(time.Duration(1+c.rng.IntN(300)) * time.Minute) // often the same day
		}
		return at.Add(time.Duration(1+c.rng.IntN(25*24)) * time.Hour)
	}
	for range c.rng.IntN(5) {
		at = next()
		if !at.Before(end.AddDate(0, 0, 10)) {
			return
		}
		newPlan, newSeats := plan, seats
		switch c.rng.IntN(4) {
		case 0:
			c.w.licenseKey(s, at)
			continue
		case 1:
			for newSeats == seats {
				newSeats = int64(1 + c.rng.IntN(50))
			}
		case 2:
			for len(plans) > 1 && newPlan == plan {
				newPlan = plans[c.rng.IntN(len(plans))]
			}
		default:
			for len(plans) > 1 && newPlan == plan {
				newPlan = plans[c.rng.IntN(len(plans))]
			}
			for newSeats == seats {
				newSeats = int64(1 + c.rng.IntN(50))
			}
		}
		if newPlan == plan && newSeats == seats {
			continue
		}
		upd := ""
		if newPlan != plan {
			upd = newPlan
		}
		var q *money.Decimal
		if newSeats != seats {
			d := c.seats(newSeats)
			q = &d
		}
		c.w.update(s, at, upd, q)
		x.segs[len(x.segs)-1].to = at
		x.segs = append(x.segs, segX{from: at, plan: newPlan, seats: newSeats})
		plan, seats = newPlan, newSeats
	}
	if !c.chance(0.5) {
		return
	}
	at = next()
	if c.chance(0.5) {
		c.w.cancel(s, at, subscriptions.CancelNow, false)
		x.segs[len(x.segs)-1].to = at
	} else {
		c.w.cancel(s, at, subscriptions.CancelPeriodEnd, c.chance(0.5))
		x.segs[len(x.segs)-1].to = period.Of(at).End()
	}
}

// brief gives tn one subscription that lasts a few hours of one day and has no usage: the
// tenant is active in that period (it is invoiced) but for no whole day, so its invoice has no
// line and a total of zero.
func (c *randomCase) brief(tn *hierarchy.Entity) {
	p := c.periods[c.rng.IntN(len(c.periods))]
	start := p.Start().AddDate(0, 0, c.rng.IntN(28)).Add(time.Duration(c.rng.IntN(20)) * time.Hour)
	end := start.Add(time.Duration(1+c.rng.IntN(180)) * time.Minute)
	plan := c.planIDs()[0]
	id := fmt.Sprintf("sub_%s_%d", tn.ID, len(c.subs))
	s := c.w.subscribe(id, tn, plan, c.seats(3), start, start)
	c.w.cancel(s, end, subscriptions.CancelNow, false)
	c.subs = append(c.subs, &subX{id: id, tenant: tn.ID, segs: []segX{{from: start, to: end, plan: plan, seats: 3}}, unused: true})
}

// quantity returns an awkward usage quantity for SKU k: a random one, a tier bound or a
// package multiple past one of the included quantities that may apply, within it, or zero.
func (c *randomCase) quantity(k *skuX) (money.Decimal, *big.Rat) {
	switch c.rng.IntN(5) {
	case 0, 1:
		return c.num(0, 200000, 3)
	case 2:
		return money.Zero, new(big.Rat)
	}
	rx := k.rates[c.rng.IntN(len(k.rates))].v
	incs := []*big.Rat{rx.included, new(big.Rat)}
	for _, p := range c.plans {
		if inc := p.included[k.code]; inc != nil {
			incs = append(incs, inc)
		}
	}
	inc := incs[c.rng.IntN(len(incs))]
	var at *big.Rat
	switch {
	case c.chance(0.3):
		at = new(big.Rat).Quo(inc, big.NewRat(2, 1)) // within the included quantity
	case rx.model == pricing.Package:
		at = add(inc, mul(rx.size, big.NewRat(int64(1+c.rng.IntN(5)), 1)))
	case len(rx.tiers) > 1:
		at = add(inc, rx.tiers[c.rng.IntN(len(rx.tiers)-1)].upTo)
	default:
		at = add(inc, big.NewRat(int64(c.rng.IntN(100)), 1))
	}
	d, err := money.Parse(at.FloatString(4))
	if err != nil {
		panic(err)
	}
	r, _ := new(big.Rat).SetString(d.String())
	return d, r
}

func (c *randomCase) addUsage(tenant string, k aggX, d money.Decimal, r *big.Rat, late bool) {
	c.w.addUsage(tenant, billing.UsageKey{SubscriptionID: k.sub, SKU: k.sku, Period: k.p}, d, late)
	if old, ok := c.totals[k]; ok {
		r = add(old, r)
	}
	c.totals[k] = r
}

func (c *randomCase) run(t *testing.T) {
	for _, p := range c.periods {
		// The period's usage, for the subscriptions active in it; some aggregates are flagged
		// (usage that arrived after the period ended, before its invoice).
		for _, s := range c.subs {
			if !s.activeIn(p) || s.unused {
				continue
			}
			for _, k := range c.skus {
				if c.chance(0.5) {
					d, r := c.quantity(k)
					c.addUsage(s.tenant, aggX{s.id, k.code, p}, d, r, c.chance(0.2))
				}
			}
		}
		now := p.End().Add(5 * time.Minute)
		svc := c.w.service(&now)
		for _, tn := range c.tenants {
			active := false
			for _, s := range c.subs {
				active = active || (s.tenant == tn.ID && s.activeIn(p))
			}
			if !active {
				continue // the run's fan-out invoices tenants with a subscription active in p
			}
			want := c.expect(tn.ID, p)
			inv, fail := c.w.bill(t, svc, p, tn.ID)
			if fail != nil || inv == nil {
				t.Fatalf("%s %s: invoice %+v, failure %+v", tn.ID, p, inv, fail)
			}
			c.check(t, tn.ID, p, now, inv, want)
			if fl := c.w.flags[tn.ID]; len(fl) != 0 {
				t.Fatalf("%s %s: flags left unacknowledged: %+v", tn.ID, p, fl)
			}
		}
		// Late usage for periods already invoiced, billed on the tenants' next invoices.
		for _, s := range c.subs {
			for _, q := range c.periods {
				if !c.invoiced[s.tenant][q] || !s.activeIn(q) || s.unused || !c.chance(0.3) {
					continue
				}
				k := aggX{s.id, c.skus[c.rng.IntN(len(c.skus))].code, q}
				d, r := c.num(1, 50000, 2)
				c.addUsage(s.tenant, k, d, r, true)
				if c.pending[s.tenant] == nil {
					c.pending[s.tenant] = map[aggX]bool{}
				}
				c.pending[s.tenant][k] = true
			}
		}
	}
}

// lineX is an expected invoice line with its amount at every level: amounts[0] the list
// amount, amounts[i] what level i sells at (the last: what the tenant pays), full precision.
type lineX struct {
	kind, sub, sku, desc, original string
	qty                            *big.Rat
	amounts                        []*big.Rat
	tiers                          []tierOut
}

// amounts carries a list amount down the chain in effect in p; tenant, when not nil, is the
// override's amount and replaces the last level's.
func (c *randomCase) amounts(list *big.Rat, p period.Period, tenant *big.Rat) []*big.Rat {
	out := []*big.Rat{list}
	for i, lv := range c.levels {
		f := big.NewRat(1, 1)
		if m, ok := inEffect(lv.markups, p); ok {
			f = add(f, new(big.Rat).Quo(m, big.NewRat(100, 1)))
		}
		next := mul(out[i], f)
		if i == len(c.levels)-1 && tenant != nil {
			next = tenant
		}
		out = append(out, next)
	}
	return out
}

// factor is the product of the chain's factors in p.
func (c *randomCase) factor(p period.Period) *big.Rat {
	a := c.amounts(big.NewRat(1, 1), p, nil)
	return a[len(a)-1]
}

// rates returns the list rate of SKU code for subscription s in p (the rate in effect at p's
// first instant with the included quantity of the plan at p's end, when its charge sets one)
// and the tenant's override in effect in p (nil: none).
func (c *randomCase) rates(s *subX, code string, p period.Period) (rateX, *rateX) {
	var k *skuX
	for _, x := range c.skus {
		if x.code == code {
			k = x
		}
	}
	list, from, ok := inEffectFrom(k.rates, p)
	if !ok {
		panic("no rate")
	}
	if _, first, _ := inEffectFrom(k.rates, c.periods[0]); first != from {
		c.seen["rate change"]++
	}
	c.seen[string(list.model)]++
	if pl := s.planAtEnd(p); pl != "" {
		if inc := c.plans[pl].included[code]; inc != nil {
			list.included = inc
			c.seen["plan included"]++
		}
	}
	ov, _ := inEffect(c.ovs[s.tenant+"#"+code], p)
	if ov != nil {
		c.seen["override"]++
		c.seen[string(ov.model)]++
	}
	return list, ov
}

func (c *randomCase) sub(id string) *subX {
	for _, s := range c.subs {
		if s.id == id {
			return s
		}
	}
	panic("no subscription " + id)
}

// expect computes tenant's invoice for p from the generator's record, in the documented line
// order (seats by subscription and start, usage by subscription and SKU, adjustments by
// original period, subscription and SKU), and records the period's ledger and the late usage
// it bills.
func (c *randomCase) expect(tenant string, p period.Period) []lineX {
	var out []lineX
	dim := int64(p.End().AddDate(0, 0, -1).Day())
	subs := []*subX{}
	for _, s := range c.subs {
		if s.tenant == tenant {
			subs = append(subs, s)
		}
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].id < subs[j].id })
	for _, s := range subs {
		lines, firstPlan := 0, ""
		for _, seg := range s.segs {
			days := int64(activeDays(seg, p))
			if s.overlaps(seg, p) {
				if firstPlan == "" {
					firstPlan = seg.plan
				}
				if days == 0 {
					c.seen["zero-day segment"]++
				}
			}
			if !s.overlaps(seg, p) || days == 0 {
				continue
			}
			if lines++; lines == 2 {
				c.seen["several segments"]++
			}
			pl := c.plans[seg.plan]
			list := mul(pl.base, big.NewRat(seg.seats*days, dim))
			out = append(out, lineX{kind: billing.KindSeats, sub: s.id, qty: big.NewRat(seg.seats, 1), amounts: c.amounts(list, p, nil),
				desc: fmt.Sprintf("%s: %d seats, %d/%d days", pl.code, seg.seats, days, dim)})
		}
		if firstPlan != "" && s.planAtEnd(p) != firstPlan {
			c.seen["plan at end differs"]++
		}
	}
	var aggs []aggX
	for k := range c.totals {
		if k.p == p && c.sub(k.sub).tenant == tenant {
			aggs = append(aggs, k)
		}
	}
	sort.Slice(aggs, func(i, j int) bool {
		if aggs[i].sub != aggs[j].sub {
			return aggs[i].sub < aggs[j].sub
		}
		return aggs[i].sku < aggs[j].sku
	})
	if c.billed[tenant] == nil {
		c.billed[tenant] = map[aggX]*big.Rat{}
		c.invoiced[tenant] = map[period.Period]bool{}
	}
	for _, k := range aggs {
		q := c.totals[k]
		c.billed[tenant][k] = q
		if q.Sign() == 0 {
			continue
		}
		list, ov := c.rates(c.sub(k.sub), k.sku, p)
		a0, tiers := list.charge(q)
		var tenantAmt *big.Rat
		if ov != nil {
			tenantAmt, tiers = ov.charge(q)
		} else {
			f := c.factor(p)
			for i, tr := range tiers {
				tiers[i] = tierOut{tr.upTo, tr.qty, mul(tr.price, f), mul(tr.fee, f), mul(tr.amount, f)}
			}
		}
		for _, tr := range tiers {
			if tr.fee.Sign() != 0 {
				c.seen["flat fee"]++
			}
		}
		out = append(out, lineX{kind: billing.KindUsage, sub: k.sub, sku: k.sku, qty: q, amounts: c.amounts(a0, p, tenantAmt),
			tiers: tiers, desc: k.sku + " usage"})
	}
	var late []aggX
	for k := range c.pending[tenant] {
		if k.p.Before(p) && c.invoiced[tenant][k.p] {
			late = append(late, k)
		}
	}
	sort.Slice(late, func(i, j int) bool {
		a, b := late[i], late[j]
		if a.p != b.p {
			return a.p.Before(b.p)
		}
		if a.sub != b.sub {
			return a.sub < b.sub
		}
		return a.sku < b.sku
	})
	for _, k := range late {
		delete(c.pending[tenant], k)
		old, ok := c.billed[tenant][k]
		if !ok {
			old = new(big.Rat)
		}
		now := c.totals[k]
		if now.Cmp(old) <= 0 {
			continue
		}
		c.billed[tenant][k] = now
		list, ov := c.rates(c.sub(k.sub), k.sku, k.p)
		la, _ := list.charge(now)
		lb, _ := list.charge(old)
		var tenantAmt *big.Rat
		if ov != nil {
			oa, _ := ov.charge(now)
			ob, _ := ov.charge(old)
			tenantAmt = sub(oa, ob)
		}
		out = append(out, lineX{kind: billing.KindAdjustment, sub: k.sub, sku: k.sku, qty: sub(now, old), original: k.p.String(),
			amounts: c.amounts(sub(la, lb), k.p, tenantAmt), desc: fmt.Sprintf("%s late usage for %s", k.sku, k.p)})
	}
	c.invoiced[tenant][p] = true
	return out
}

// check compares the stored invoice with the expected lines.
func (c *randomCase) check(t *testing.T, tenant string, p period.Period, now time.Time, inv *billing.Invoice, want []lineX) {
	t.Helper()
	m := c.minor
	ctx := func() string { return fmt.Sprintf("%s %s (%s)", tenant, p, c.currency) }
	if inv.TenantID != tenant || inv.Period != p.String() || inv.Currency != c.currency || inv.IssuerID != c.issuer.ID {
		t.Fatalf("%s: invoice %s %s %s %s", ctx(), inv.TenantID, inv.Period, inv.Currency, inv.IssuerID)
	}
	prefix := c.issuer.ID
	if c.issuer.BillingID != "" {
		prefix = c.issuer.BillingID
	}
	c.seqs[now.Year()]++
	if wantNo := fmt.Sprintf("%s-%04d-%06d", prefix, now.Year(), c.seqs[now.Year()]); inv.Number != wantNo {
		t.Fatalf("%s: number %s, want %s", ctx(), inv.Number, wantNo)
	}
	c.seen[fmt.Sprintf("%d minor digits", m)]++
	c.seen[fmt.Sprintf("%d days", p.End().AddDate(0, 0, -1).Day())]++
	c.seen[map[int]string{1: "one level", 2: "two levels"}[len(c.levels)]]++
	if p.Month == time.December {
		c.seen["new year's number"]++
	}
	if p != c.periods[0] && c.factor(p).Cmp(c.factor(p.Prev())) != 0 {
		c.seen["markup change"]++
	}
	if len(want) == 0 {
		c.seen["empty invoice"]++
	}
	for _, l := range want {
		c.seen[l.kind]++
	}
	if len(inv.Lines) != len(want) {
		var got []string
		for _, l := range inv.Lines {
			got = append(got, l.Kind+" "+l.SubscriptionID+" "+l.SKU+" "+l.Amount.Amount.String())
		}
		var exp []string
		for _, l := range want {
			exp = append(exp, l.kind+" "+l.sub+" "+l.sku+" "+text(roundMinor(l.amounts[len(l.amounts)-1], m), m))
		}
		t.Fatalf("%s: %d lines, want %d:\n got  %s\n want %s", ctx(), len(inv.Lines), len(want), strings.Join(got, "; "), strings.Join(exp, "; "))
	}
	n := len(c.levels)
	total, platform := new(big.Rat), new(big.Rat)
	rev, cost := make([]*big.Rat, n), make([]*big.Rat, n)
	for i := range n {
		rev[i], cost[i] = new(big.Rat), new(big.Rat)
	}
	for i, l := range inv.Lines {
		x := want[i]
		rounded := make([]*big.Rat, len(x.amounts))
		for j, a := range x.amounts {
			rounded[j] = roundMinor(a, m)
		}
		amount := rounded[n]
		orig := ""
		if l.OriginalPeriod != nil {
			orig = *l.OriginalPeriod
		}
		if l.Kind != x.kind || l.SubscriptionID != x.sub || l.SKU != x.sku || rat(t, l.Quantity).Cmp(x.qty) != 0 || l.Description != x.desc ||
			orig != x.original || l.Amount.Currency != c.currency || l.Amount.Amount.String() != text(amount, m) {
			t.Fatalf("%s: line %d\n got  %s %s %s qty %s %q orig %q %s %s\n want %s %s %s qty %s %q orig %q %s (list %s)",
				ctx(), i, l.Kind, l.SubscriptionID, l.SKU, l.Quantity, l.Description, orig, l.Amount.Amount, l.Amount.Currency,
				x.kind, x.sub, x.sku, x.qty.FloatString(4), x.desc, x.original, text(amount, m), x.amounts[0].FloatString(8))
		}
		if len(l.Tiers) != len(x.tiers) {
			t.Fatalf("%s: line %d has %d tiers, want %d", ctx(), i, len(l.Tiers), len(x.tiers))
		}
		for j, tr := range l.Tiers {
			xt := x.tiers[j]
			upOK := (tr.UpTo == nil) == (xt.upTo == nil) && (tr.UpTo == nil || rat(t, *tr.UpTo).Cmp(xt.upTo) == 0)
			if !upOK || rat(t, tr.Quantity).Cmp(xt.qty) != 0 || rat(t, tr.UnitPrice).Cmp(xt.price) != 0 ||
				tr.Amount.Amount.String() != text(roundMinor(xt.amount, m), m) {
				t.Fatalf("%s: line %d tier %d: %+v, want qty %s unit price %s amount %s", ctx(), i, j, tr,
					xt.qty.FloatString(4), xt.price.FloatString(8), text(roundMinor(xt.amount, m), m))
			}
		}
		total.Add(total, amount)
		platform.Add(platform, rounded[0])
		for j := range n {
			rev[j].Add(rev[j], rounded[j+1])
			cost[j].Add(cost[j], rounded[j])
		}
	}
	if inv.Total.Amount.String() != text(total, m) || inv.Total.Currency != c.currency {
		t.Fatalf("%s: total %s, want %s", ctx(), inv.Total, text(total, m))
	}
	if rat(t, inv.PlatformRevenue).Cmp(platform) != 0 {
		t.Fatalf("%s: platform revenue %s, want %s", ctx(), inv.PlatformRevenue, text(platform, m))
	}
	if len(inv.Lines) == 0 {
		if len(inv.Shares) != 0 {
			t.Fatalf("%s: shares of an empty invoice %+v", ctx(), inv.Shares)
		}
		return
	}
	if len(inv.Shares) != n {
		t.Fatalf("%s: %d shares, want %d", ctx(), len(inv.Shares), n)
	}
	sum := inv.PlatformRevenue
	for j, sh := range inv.Shares {
		lv := c.levels[j].entity
		// Each ancestor earns round(sell) - round(buy) on every line (SPEC 12).
		if sh.EntityID != lv.ID || sh.EntityPath != lv.Path || rat(t, sh.Revenue).Cmp(rev[j]) != 0 || rat(t, sh.Cost).Cmp(cost[j]) != 0 ||
			rat(t, sh.Commission).Cmp(sub(rev[j], cost[j])) != 0 {
			t.Fatalf("%s: share %d %+v, want %s revenue %s cost %s commission %s", ctx(), j, sh, lv.ID,
				text(rev[j], m), text(cost[j], m), text(sub(rev[j], cost[j]), m))
		}
		if sh.Commission.IsNeg() {
			c.seen["negative commission"]++
		}
		sum = sum.Add(sh.Commission)
	}
	if !sum.Equal(inv.Total.Amount) {
		t.Fatalf("%s: platform revenue + commissions = %s, total %s", ctx(), sum, inv.Total.Amount)
	}
}
