package usage_test

import (
	"context"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/usage"
)

// fakeTenants answers from a map; fail makes every lookup a transient error.
type fakeTenants struct {
	m    map[string]*usage.Tenant
	fail error
}

func (f *fakeTenants) Tenant(_ context.Context, id string) (*usage.Tenant, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	t, ok := f.m[id]
	if !ok {
		return nil, apperr.NotFoundf("No tenant with this id.")
	}
	return t, nil
}

// fakeSub is a subscription of the fake resolver: its tenant, the SKU codes of its plan, and
// when it is active.
type fakeSub struct {
	id, tenant string
	skus       []string
	from, to   time.Time // to zero: still active
}

type fakeResolver struct {
	subs []fakeSub
	fail error
}

func (f *fakeResolver) Resolve(_ context.Context, t *usage.Tenant, subID, sku string, at time.Time) (usage.Resolution, error) {
	if f.fail != nil {
		return usage.Resolution{}, f.fail
	}
	var found []usage.Resolution
	for _, s := range f.subs {
		if s.tenant != t.ID || (subID != "" && s.id != subID) || at.Before(s.from) || (!s.to.IsZero() && !at.Before(s.to)) {
			continue
		}
		for _, k := range s.skus {
			if strings.EqualFold(k, sku) {
				found = append(found, usage.Resolution{SubscriptionID: s.id, SKU: k})
			}
		}
	}
	switch len(found) {
	case 0:
		if subID != "" {
			return usage.Resolution{}, apperr.Field("subscriptionId", "not_found", "no such subscription of the tenant active then with this SKU")
		}
		return usage.Resolution{}, apperr.Field("sku", "no_subscription", "no subscription of the tenant charged this SKU then")
	case 1:
		return found[0], nil
	}
	return usage.Resolution{}, apperr.Field("subscriptionId", "ambiguous", "several subscriptions charge this SKU: name one")
}

type fakeCatalog struct {
	thresholds map[string][]money.Decimal
	fail       error
}

func (f *fakeCatalog) Thresholds(_ context.Context, sku string) ([]money.Decimal, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	return f.thresholds[sku], nil
}

// fakePricer charges 0.10 per unit in EUR; SKU "free" has no rate.
type fakePricer struct{}

func (fakePricer) Charge(_ context.Context, ref usage.AggregateRef, q money.Decimal) (money.Money, error) {
	if ref.Key.SKU == "free" {
		return money.Money{}, apperr.New(apperr.Unprocessable, "no_rate", "No rate in effect.")
	}
	return money.NewMoney(q.Mul(money.New(10, 2)), "EUR")
}

type fakeSubs struct{ owner map[string]string }

func (f fakeSubs) SubscriptionTenant(_ context.Context, id string) (string, error) {
	if t, ok := f.owner[id]; ok {
		return t, nil
	}
	return "", apperr.NotFoundf("No subscription with this id.")
}
