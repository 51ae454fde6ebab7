package catalog_test

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/catalog"
)

// fakeStore is an in-memory catalog.Store: one mutex stands in for the transactions.
type fakeStore struct {
	mu        sync.Mutex
	skus      map[string]*catalog.SKU
	plans     map[string]*catalog.Plan
	codes     map[string]string // "sku:<lower code>" or "plan:<lower code>" -> id
	overrides map[string]*catalog.Override
}

func newFakeStore() *fakeStore {
	return &fakeStore{skus: map[string]*catalog.SKU{}, plans: map[string]*catalog.Plan{}, codes: map[string]string{},
		overrides: map[string]*catalog.Override{}}
}

func cloneSKU(k *catalog.SKU) *catalog.SKU {
	c := *k
	c.Rates = slices.Clone(k.Rates)
	c.Thresholds = slices.Clone(k.Thresholds)
	return &c
}

func clonePlan(p *catalog.Plan) *catalog.Plan {
	c := *p
	c.Charges = slices.Clone(p.Charges)
	return &c
}

func (f *fakeStore) CreateSKU(_ context.Context, k *catalog.SKU) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := "sku:" + strings.ToLower(k.Code)
	if _, ok := f.codes[key]; ok {
		return apperr.New(apperr.Conflict, "code_taken", "taken")
	}
	k.Version = 1
	f.codes[key] = k.ID
	f.skus[k.ID] = cloneSKU(k)
	return nil
}

func (f *fakeStore) GetSKU(_ context.Context, id string) (*catalog.SKU, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.skus[id]
	if !ok {
		return nil, apperr.NotFoundf("no sku")
	}
	return cloneSKU(k), nil
}

func (f *fakeStore) GetSKUs(ctx context.Context, ids []string) (map[string]*catalog.SKU, error) {
	out := map[string]*catalog.SKU{}
	for _, id := range ids {
		if k, err := f.GetSKU(ctx, id); err == nil {
			out[id] = k
		}
	}
	return out, nil
}

func (f *fakeStore) ListSKUs(context.Context) ([]*catalog.SKU, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*catalog.SKU
	for _, k := range f.skus {
		out = append(out, cloneSKU(k))
	}
	return out, nil
}

func (f *fakeStore) UpdateSKU(_ context.Context, id string, fn func(*catalog.SKU) error) (*catalog.SKU, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.skus[id]
	if !ok {
		return nil, apperr.NotFoundf("no sku")
	}
	next := cloneSKU(k)
	if err := fn(next); err != nil {
		return nil, err
	}
	next.Version++
	next.PlanCount = k.PlanCount
	f.skus[id] = cloneSKU(next)
	return next, nil
}

func (f *fakeStore) DeleteSKU(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.skus[id]
	if !ok {
		return apperr.NotFoundf("no sku")
	}
	if k.PlanCount > 0 {
		return apperr.New(apperr.Conflict, "sku_in_use", "in use")
	}
	delete(f.skus, id)
	delete(f.codes, "sku:"+strings.ToLower(k.Code))
	return nil
}

// refs moves plan references the way the DynamoDB transactions do, failing like them on a SKU
// that is gone or in another currency.
func (f *fakeStore) refs(before, after []catalog.PlanCharge, currency string) error {
	for i, c := range after {
		k, ok := f.skus[c.SKUID]
		if !ok || k.Currency != currency {
			var fe apperr.Fields
			fe.Add("charges["+string(rune('0'+i))+"].skuId", "not_found", "gone")
			return fe.Unprocessable()
		}
	}
	for _, c := range before {
		f.skus[c.SKUID].PlanCount--
	}
	for _, c := range after {
		f.skus[c.SKUID].PlanCount++
	}
	return nil
}

func (f *fakeStore) CreatePlan(_ context.Context, p *catalog.Plan) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := "plan:" + strings.ToLower(p.Code)
	if _, ok := f.codes[key]; ok {
		return apperr.New(apperr.Conflict, "code_taken", "taken")
	}
	if err := f.refs(nil, p.Charges, p.Currency); err != nil {
		return err
	}
	p.Version = 1
	f.codes[key] = p.ID
	f.plans[p.ID] = clonePlan(p)
	return nil
}

func (f *fakeStore) GetPlan(_ context.Context, id string) (*catalog.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.plans[id]
	if !ok {
		return nil, apperr.NotFoundf("no plan")
	}
	return clonePlan(p), nil
}

func (f *fakeStore) ListPlans(context.Context) ([]*catalog.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*catalog.Plan
	for _, p := range f.plans {
		out = append(out, clonePlan(p))
	}
	return out, nil
}

func (f *fakeStore) UpdatePlan(_ context.Context, id string, fn func(*catalog.Plan) error) (*catalog.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.plans[id]
	if !ok {
		return nil, apperr.NotFoundf("no plan")
	}
	next := clonePlan(p)
	if err := fn(next); err != nil {
		return nil, err
	}
	if err := f.refs(p.Charges, next.Charges, next.Currency); err != nil {
		return nil, err
	}
	next.Version++
	f.plans[id] = clonePlan(next)
	return next, nil
}

func (f *fakeStore) DeletePlan(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.plans[id]
	if !ok {
		return apperr.NotFoundf("no plan")
	}
	if p.Status != catalog.PlanDraft {
		return apperr.New(apperr.Conflict, "plan_not_draft", "not a draft")
	}
	_ = f.refs(p.Charges, nil, p.Currency)
	delete(f.plans, id)
	delete(f.codes, "plan:"+strings.ToLower(p.Code))
	return nil
}

func (f *fakeStore) GetOverrides(_ context.Context, tenantID string) ([]*catalog.Override, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*catalog.Override
	for _, o := range f.overrides {
		if o.TenantID == tenantID {
			c := *o
			c.Versions = slices.Clone(o.Versions)
			out = append(out, &c)
		}
	}
	return out, nil
}

func (f *fakeStore) UpdateOverride(_ context.Context, tenantID, skuID string, fn func(*catalog.Override) error) (*catalog.Override, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := &catalog.Override{TenantID: tenantID, SKUID: skuID}
	if o, ok := f.overrides[tenantID+"/"+skuID]; ok {
		c := *o
		c.Versions = slices.Clone(o.Versions)
		cur = &c
	}
	if err := fn(cur); err != nil {
		return nil, err
	}
	cur.Version++
	f.overrides[tenantID+"/"+skuID] = cur
	return cur, nil
}

var _ catalog.Store = (*fakeStore)(nil)
