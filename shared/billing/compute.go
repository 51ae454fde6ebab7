// Package billing computes invoices and commissions (SPEC 11, 12): pure functions from what a
// tenant had in a period (seat segments, usage totals, late usage) and the markup chain in effect
// to invoice lines, their total and every channel entity's share. It knows nothing of storage;
// the billing run gathers the inputs and stores the results.
package billing

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/pricing"
)

// Line kinds (SPEC 7.1).
const (
	KindSeats      = "seats"
	KindUsage      = "usage"
	KindAdjustment = "adjustment"
)

// Segment is a stretch of a period during which a subscription had one plan and one quantity.
// To is the end (exclusive by day: the end day does not count); zero means still running.
type Segment struct {
	SubscriptionID string
	PlanCode       string
	BasePrice      money.Decimal // list price per seat per month, in effect at the period's start
	Quantity       int64
	From, To       time.Time
}

// Usage is a period's total for one subscription and SKU, with the SKU's list rate in effect at
// the period's start and the tenant's override, if any.
type Usage struct {
	SubscriptionID string
	SKU            string
	Quantity       money.Decimal
	List           pricing.Rate
	Override       *pricing.Rate
}

// Late is usage that arrived for a period already invoiced (SPEC 10): QOld is what that invoice
// billed, DQ what came after. List, Override and Chain are those of the original period.
type Late struct {
	SubscriptionID string
	SKU            string
	OriginalPeriod period.Period
	QOld, DQ       money.Decimal
	List           pricing.Rate
	Override       *pricing.Rate
	Chain          pricing.Chain
}

// Input is everything one tenant's invoice for one period is made of.
type Input struct {
	Period period.Period
	// Chain holds the tenant's channel ancestors (distributor if any, then partner) with the
	// markups in effect at the period's first instant.
	Chain pricing.Chain
	Seats []Segment
	Usage []Usage
	Late  []Late
}

// TierLine is one tier of a usage line as the tenant sees it.
type TierLine struct {
	UpTo      *money.Decimal `json:"upTo"`
	Quantity  money.Decimal  `json:"quantity"`
	UnitPrice money.Decimal  `json:"unitPrice"`
	Amount    money.Decimal  `json:"amount"`
}

// Line is one invoice line. Amount is the tenant's amount rounded to the currency's minor unit;
// Split carries the line down the chain for commissions.
type Line struct {
	Kind           string
	SubscriptionID string
	SKU            string
	Description    string
	Quantity       money.Decimal
	Amount         money.Decimal
	Tiers          []TierLine
	OriginalPeriod string
	Split          pricing.Split
}

// Computed is a computed (not yet numbered or stored) invoice.
type Computed struct {
	Period   period.Period
	Currency string
	Lines    []Line
	Total    money.Decimal
}

// Compute prices a tenant's period: one seats line per segment (prorated by days), one usage line
// per subscription and SKU with a quantity, one adjustment line per late usage. Each line is
// computed at full precision and rounded once; the total is the sum of the rounded lines. Lines
// come in a deterministic order (seats, usage, adjustments; then by subscription, SKU, start).
// It returns the pricing errors of a bad rate or chain (an invalid chain fails even an invoice
// without lines).
func Compute(in Input) (Computed, error) {
	if err := in.Chain.Validate(); err != nil {
		return Computed{}, err
	}
	// The total is written like every amount, with the currency's minor digits, also when the
	// invoice has no line ("0.00", not "0").
	zero, _ := money.RoundMoney(money.Zero, in.Chain.Currency) // the currency was validated above
	inv := Computed{Period: in.Period, Currency: in.Chain.Currency, Total: zero}
	days := pricing.DaysInMonth(in.Period.Year, in.Period.Month)
	var errs []error
	seats := append([]Segment(nil), in.Seats...)
	sort.SliceStable(seats, func(i, j int) bool {
		if seats[i].SubscriptionID != seats[j].SubscriptionID {
			return seats[i].SubscriptionID < seats[j].SubscriptionID
		}
		return seats[i].From.Before(seats[j].From)
	})
	for _, s := range seats {
		active := pricing.ActiveDays(in.Period.Year, in.Period.Month, s.From, s.To)
		if active == 0 || s.Quantity <= 0 {
			continue
		}
		qty := money.NewFromInt(s.Quantity)
		list, err := pricing.Prorate(s.BasePrice.Mul(qty), active, days)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		split, err := in.Chain.Split(list, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		inv.Lines = append(inv.Lines, Line{
			Kind: KindSeats, SubscriptionID: s.SubscriptionID, Quantity: qty, Amount: split.TenantRounded, Split: split,
			Description: fmt.Sprintf("%s: %d seats, %d/%d days", s.PlanCode, s.Quantity, active, days),
		})
	}
	usage := append([]Usage(nil), in.Usage...)
	sort.SliceStable(usage, func(i, j int) bool {
		if usage[i].SubscriptionID != usage[j].SubscriptionID {
			return usage[i].SubscriptionID < usage[j].SubscriptionID
		}
		return usage[i].SKU < usage[j].SKU
	})
	for _, u := range usage {
		if u.Quantity.IsZero() {
			continue
		}
		ul, err := in.Chain.PriceUsage(u.List, u.Override, u.Quantity)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s/%s: %w", u.SubscriptionID, u.SKU, err))
			continue
		}
		line := Line{Kind: KindUsage, SubscriptionID: u.SubscriptionID, SKU: u.SKU, Quantity: u.Quantity,
			Amount: ul.Split.TenantRounded, Split: ul.Split, Description: fmt.Sprintf("%s usage", u.SKU)}
		for _, t := range ul.Tenant.Tiers {
			amt, _ := money.RoundMoney(t.Amount, inv.Currency) // the chain's currency is valid here
			line.Tiers = append(line.Tiers, TierLine{UpTo: t.UpTo, Quantity: t.Quantity, UnitPrice: t.UnitPrice, Amount: amt})
		}
		inv.Lines = append(inv.Lines, line)
	}
	late := append([]Late(nil), in.Late...)
	sort.SliceStable(late, func(i, j int) bool {
		a, b := late[i], late[j]
		if c := a.OriginalPeriod.Compare(b.OriginalPeriod); c != 0 {
			return c < 0
		}
		if a.SubscriptionID != b.SubscriptionID {
			return a.SubscriptionID < b.SubscriptionID
		}
		return a.SKU < b.SKU
	})
	for _, l := range late {
		split, err := l.Chain.PriceLateUsage(l.List, l.Override, l.QOld, l.DQ)
		if err != nil {
			errs = append(errs, fmt.Errorf("late %s/%s: %w", l.SubscriptionID, l.SKU, err))
			continue
		}
		inv.Lines = append(inv.Lines, Line{Kind: KindAdjustment, SubscriptionID: l.SubscriptionID, SKU: l.SKU,
			Quantity: l.DQ, Amount: split.TenantRounded, Split: split, OriginalPeriod: l.OriginalPeriod.String(),
			Description: fmt.Sprintf("%s late usage for %s", l.SKU, l.OriginalPeriod)})
	}
	if err := errors.Join(errs...); err != nil {
		return Computed{}, err
	}
	for _, l := range inv.Lines {
		inv.Total = inv.Total.Add(l.Amount)
	}
	return inv, nil
}

// Share is what one channel entity earned on an invoice: its revenue (what its children paid
// it), its cost (what it paid its parent) and the difference.
type Share struct {
	EntityID   string
	Revenue    money.Decimal
	Cost       money.Decimal
	Commission money.Decimal
}

// Shares returns the platform's revenue and each ancestor's share of an invoice, in chain order.
// By construction platformRevenue + every Commission = inv.Total (SPEC 12).
func Shares(inv Computed) (platformRevenue money.Decimal, shares []Share) {
	platformRevenue = money.Zero
	index := map[string]int{}
	for _, l := range inv.Lines {
		platformRevenue = platformRevenue.Add(l.Split.PlatformRevenue)
		for _, lv := range l.Split.Levels {
			i, ok := index[lv.EntityID]
			if !ok {
				i = len(shares)
				index[lv.EntityID] = i
				shares = append(shares, Share{EntityID: lv.EntityID, Revenue: money.Zero, Cost: money.Zero, Commission: money.Zero})
			}
			shares[i].Revenue = shares[i].Revenue.Add(lv.SellRounded)
			shares[i].Cost = shares[i].Cost.Add(lv.BuyRounded)
			shares[i].Commission = shares[i].Commission.Add(lv.Commission)
		}
	}
	return platformRevenue, shares
}
