package usage

import (
	"context"
	"strings"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
)

// Pricer prices a period's usage.
type Pricer interface {
	// Charge returns what the tenant of ref would pay now for quantity of ref's SKU in ref's
	// period: its own price (the partner's sell price after every markup, or the tenant's
	// price-list override), with the included quantity of its plan, at the rates, markups and
	// override in effect in that period, rounded to the currency's minor unit like an invoice
	// line. NotFound or Unprocessable when it cannot be priced (no rate in effect for the
	// period); any other error is internal.
	Charge(ctx context.Context, ref AggregateRef, quantity money.Decimal) (money.Money, error)
}

// Subscriptions finds the tenant of a subscription (GET /usage?subscriptionId=).
type Subscriptions interface {
	// SubscriptionTenant returns the id of the tenant holding the subscription. NotFound.
	SubscriptionTenant(ctx context.Context, id string) (string, error)
}

// Line is one item of GET /api/v1/usage: a subscription's period total of one SKU and what it
// would cost now (SPEC 7.1). Charge is null when the SKU has no rate in effect in the period.
type Line struct {
	SubscriptionID string        `json:"subscriptionId"`
	TenantID       string        `json:"tenantId"`
	SKU            string        `json:"sku"`
	Quantity       money.Decimal `json:"quantity"`
	Charge         *money.Money  `json:"charge"`
}

// Answer is the data of GET /api/v1/usage: {period, items}.
type Answer struct {
	Period period.Period `json:"period"`
	Items  []Line        `json:"items"`
}

// ListFields are the searchable and sortable fields of the usage list.
var ListFields = listing.Fields[AggregateRef]{
	ID: func(a AggregateRef) string { return a.TenantPath + a.Key.SubscriptionID + "#" + a.Key.SKU },
	Searchable: map[string]func(AggregateRef) string{
		"tenantId":       func(a AggregateRef) string { return a.TenantID },
		"subscriptionId": func(a AggregateRef) string { return a.Key.SubscriptionID },
		"sku":            func(a AggregateRef) string { return a.Key.SKU },
	},
	DefaultSort: "subscriptionId",
}

func notFound(what string) error { return apperr.NotFoundf("No %s with this id.", what) }

// List returns a page of the period's totals in the caller's subtree, per subscription and
// SKU, each with the charge it would produce now. Filters: "period" (YYYY-MM, default the
// current period; the token of the next page keeps it), "tenantId", "subscriptionId" (each
// must lie in the caller's subtree: NotFound otherwise). q is updated with the period used.
// Forbidden, Invalid, NotFound.
func (s *Service) List(ctx context.Context, p access.Principal, q *listing.Query, after *listing.Cursor) (*Answer, *listing.Cursor, error) {
	if !p.Can(access.UsageRead) {
		return nil, nil, apperr.New(apperr.Forbidden, "forbidden", "Your role does not allow this action.")
	}
	var f apperr.Fields
	if err := ListFields.Validate(q); err != nil {
		f.Merge("", err)
	}
	per := period.Of(s.now())
	if v := q.Filters["period"]; v != "" {
		pp, err := period.Parse(v)
		if err != nil {
			f.Add("period", "invalid", "period must be YYYY-MM")
		}
		per = pp
	}
	if err := f.Err(); err != nil {
		return nil, nil, err
	}
	if q.Filters == nil {
		q.Filters = map[string]string{}
	}
	q.Filters["period"] = per.String()
	prefix := p.ScopePath
	tenantID := q.Filters["tenantId"]
	subID := q.Filters["subscriptionId"]
	if subID != "" {
		owner, err := s.Subscriptions.SubscriptionTenant(ctx, subID)
		if apperr.Is(err, apperr.NotFound) {
			return nil, nil, notFound("subscription")
		}
		if err != nil {
			return nil, nil, err
		}
		if tenantID != "" && tenantID != owner {
			return &Answer{Period: per, Items: []Line{}}, nil, nil // the two filters exclude each other
		}
		t, err := s.Tenants.Tenant(ctx, owner)
		if apperr.Is(err, apperr.NotFound) || (err == nil && !p.Covers(t.Path)) {
			return nil, nil, notFound("subscription")
		}
		if err != nil {
			return nil, nil, err
		}
		prefix = t.Path + subID + "#"
	} else if tenantID != "" {
		t, err := s.Tenants.Tenant(ctx, tenantID)
		if apperr.Is(err, apperr.NotFound) || (err == nil && !p.Covers(t.Path)) {
			return nil, nil, notFound("tenant")
		}
		if err != nil {
			return nil, nil, err
		}
		prefix = t.Path
	}
	refs, err := s.Store.Aggregates(ctx, per, prefix)
	if err != nil {
		return nil, nil, err
	}
	refs = slicesFilter(refs, func(a AggregateRef) bool { return strings.HasPrefix(a.TenantPath, p.ScopePath) })
	page, next := listing.Apply(ListFields, refs, *q, after)
	keys := make([]AggregateKey, len(page))
	for i, a := range page {
		keys[i] = a.Key
	}
	totals, err := s.Store.Totals(ctx, keys)
	if err != nil {
		return nil, nil, err
	}
	ans := &Answer{Period: per, Items: make([]Line, 0, len(page))}
	for _, a := range page {
		l := Line{SubscriptionID: a.Key.SubscriptionID, TenantID: a.TenantID, SKU: a.Key.SKU, Quantity: totals[a.Key].Quantity}
		c, err := s.Pricer.Charge(ctx, a, l.Quantity)
		switch {
		case err == nil:
			l.Charge = &c
		case apperr.Is(err, apperr.NotFound), apperr.Is(err, apperr.Unprocessable):
			// No rate in effect for the period: the quantity stands, the charge is unknown.
		default:
			return nil, nil, err
		}
		ans.Items = append(ans.Items, l)
	}
	return ans, next, nil
}

func slicesFilter[T any](in []T, keep func(T) bool) []T {
	out := in[:0:0]
	for _, v := range in {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}
