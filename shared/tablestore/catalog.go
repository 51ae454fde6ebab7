package tablestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/pricing"
)

// rateItem is one rate version of a SKU. The rate is kept as its JSON, where every decimal is a
// string, so nothing passes through a binary float.
type rateItem struct {
	EffectiveFrom string
	Rate          string
	CreatedAt     time.Time
	CreatedBy     string `dynamo:",omitempty"`
}

// skuItem is a SKU: PK SKU#<id>, SK SKU; GSI1 SKU / <code>. Plans counts the plans charging it.
type skuItem struct {
	PK, SK         string
	GSI1PK, GSI1SK string
	Kind           string
	ID             string
	Code           string
	Name           string
	Unit           string `dynamo:",omitempty"`
	Currency       string
	Thresholds     []string `dynamo:",omitempty"`
	Rates          []rateItem
	Plans          int
	CreatedAt      time.Time
	UpdatedAt      time.Time
	Version        int64
}

// codeItem reserves a SKU or plan code: PK SKUCODE#<lower code> or PLANCODE#<lower code>.
type codeItem struct {
	PK, SK  string
	Kind    string
	OwnerID string
}

// planChargeItem is one charge of a plan.
type planChargeItem struct {
	SKUID            string
	SKUCode          string
	IncludedQuantity string `dynamo:",omitempty"`
}

// planItem is a plan: PK PLAN#<id>, SK PLAN; GSI1 PLAN / <code>.
type planItem struct {
	PK, SK         string
	GSI1PK, GSI1SK string
	Kind           string
	ID             string
	Code           string
	Name           string
	Currency       string
	BillingCycle   string
	BasePrice      string
	Charges        []planChargeItem `dynamo:",omitempty"`
	Status         string
	PublishedAt    *time.Time `dynamo:",omitempty"`
	RetiredAt      *time.Time `dynamo:",omitempty"`
	CreatedAt      time.Time
	UpdatedAt      time.Time
	Version        int64
}

// overrideVersionItem is one version of an override; an empty Rate ends the override.
type overrideVersionItem struct {
	EffectiveFrom string
	Rate          string `dynamo:",omitempty"`
	CreatedAt     time.Time
	CreatedBy     string `dynamo:",omitempty"`
}

// overrideItem is a tenant's price-list override of one SKU: PK OVR#<tenantId>, SK SKU#<skuId>.
type overrideItem struct {
	PK, SK    string
	Kind      string
	TenantID  string
	SKUID     string
	Versions  []overrideVersionItem
	UpdatedAt time.Time
	Version   int64
}

const (
	skuSK  = "SKU"
	planSK = "PLAN"
)

func skuPK(id string) string       { return "SKU#" + id }
func planPK(id string) string      { return "PLAN#" + id }
func skuCodePK(c string) string    { return "SKUCODE#" + lower(c) }
func planCodePK(c string) string   { return "PLANCODE#" + lower(c) }
func overridePK(id string) string  { return "OVR#" + id }
func overrideSK(sku string) string { return "SKU#" + sku }

func rateJSON(r pricing.Rate) (string, error) {
	b, err := json.Marshal(r)
	return string(b), err
}

func parseRate(s string) (pricing.Rate, error) {
	var r pricing.Rate
	err := json.Unmarshal([]byte(s), &r)
	return r, err
}

func toSKUItem(k *catalog.SKU) (skuItem, error) {
	it := skuItem{PK: skuPK(k.ID), SK: skuSK, GSI1PK: "SKU", GSI1SK: k.Code, Kind: "sku", ID: k.ID, Code: k.Code,
		Name: k.Name, Unit: k.Unit, Currency: k.Currency, Plans: k.PlanCount, CreatedAt: k.CreatedAt,
		UpdatedAt: k.UpdatedAt, Version: k.Version}
	for _, t := range k.Thresholds {
		it.Thresholds = append(it.Thresholds, t.String())
	}
	for _, r := range k.Rates {
		j, err := rateJSON(r.Rate)
		if err != nil {
			return skuItem{}, err
		}
		it.Rates = append(it.Rates, rateItem{EffectiveFrom: r.EffectiveFrom, Rate: j, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy})
	}
	return it, nil
}

func (it skuItem) sku() (*catalog.SKU, error) {
	k := &catalog.SKU{ID: it.ID, Code: it.Code, Name: it.Name, Unit: it.Unit, Currency: it.Currency,
		PlanCount: it.Plans, CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt, Version: it.Version}
	for _, t := range it.Thresholds {
		d, err := money.Parse(t)
		if err != nil {
			return nil, fmt.Errorf("sku %s threshold: %w", it.ID, err)
		}
		k.Thresholds = append(k.Thresholds, d)
	}
	for _, r := range it.Rates {
		rate, err := parseRate(r.Rate)
		if err != nil {
			return nil, fmt.Errorf("sku %s rate: %w", it.ID, err)
		}
		k.Rates = append(k.Rates, catalog.RateVersion{EffectiveFrom: r.EffectiveFrom, Rate: rate, CreatedAt: r.CreatedAt, CreatedBy: r.CreatedBy})
	}
	return k, nil
}

func codeTaken(what string) error {
	var f apperr.Fields
	f.Add("code", "taken", "another "+what+" already uses this code")
	ae := apperr.As(f.Err())
	ae.Kind, ae.Code, ae.Message = apperr.Conflict, "code_taken", "The code is already in use."
	return ae
}

func concurrent(what string) error {
	return apperr.New(apperr.Conflict, "concurrent_update", "The "+what+" is being changed by someone else; retry.")
}

// CreateSKU implements catalog.Store.
func (s *Store) CreateSKU(ctx context.Context, k *catalog.SKU) error {
	k.Version = 1
	it, err := toSKUItem(k)
	if err != nil {
		return apperr.Wrap(err, "encode sku")
	}
	err = s.db.WriteTx().
		Put(s.table.Put(it).If("attribute_not_exists(PK)")).
		Put(s.table.Put(codeItem{PK: skuCodePK(k.Code), SK: "SKUCODE", Kind: "skucode", OwnerID: k.ID}).If("attribute_not_exists(PK)")).
		Run(ctx)
	switch {
	case err == nil:
		return nil
	case failedAt(err)[1]:
		return codeTaken("SKU")
	case isTxConflict(err):
		return concurrent("SKU code")
	}
	return apperr.Wrap(err, "create sku")
}

// GetSKU implements catalog.Store.
func (s *Store) GetSKU(ctx context.Context, id string) (*catalog.SKU, error) {
	var it skuItem
	err := s.table.Get("PK", skuPK(id)).Range("SK", dynamo.Equal, skuSK).Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.NotFoundf("No SKU with this id.")
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get sku")
	}
	k, err := it.sku()
	return k, apperr.Wrap(err, "decode sku")
}

// GetSKUs implements catalog.Store.
func (s *Store) GetSKUs(ctx context.Context, ids []string) (map[string]*catalog.SKU, error) {
	out := map[string]*catalog.SKU{}
	var ks []dynamo.Keyed
	seen := map[string]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			ks = append(ks, dynamo.Keys{skuPK(id), skuSK})
		}
	}
	if len(ks) == 0 {
		return out, nil
	}
	var items []skuItem
	err := s.table.Batch("PK", "SK").Get(ks...).Consistent(true).All(ctx, &items)
	if err != nil && !errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.Wrap(err, "get skus")
	}
	for _, it := range items {
		k, err := it.sku()
		if err != nil {
			return nil, apperr.Wrap(err, "decode sku")
		}
		out[k.ID] = k
	}
	return out, nil
}

// ListSKUs implements catalog.Store: one query on GSI1 (SKU).
func (s *Store) ListSKUs(ctx context.Context) ([]*catalog.SKU, error) {
	var items []skuItem
	if err := s.table.Get("GSI1PK", "SKU").Index(GSI1).All(ctx, &items); err != nil {
		return nil, apperr.Wrap(err, "list skus")
	}
	out := make([]*catalog.SKU, 0, len(items))
	for _, it := range items {
		k, err := it.sku()
		if err != nil {
			return nil, apperr.Wrap(err, "decode sku")
		}
		out = append(out, k)
	}
	return out, nil
}

// UpdateSKU implements catalog.Store. Only the attributes a caller can change are written, so
// the Plans counter that plan transactions keep is never overwritten.
func (s *Store) UpdateSKU(ctx context.Context, id string, fn func(*catalog.SKU) error) (*catalog.SKU, error) {
	for range 4 {
		cur, err := s.GetSKU(ctx, id)
		if err != nil {
			return nil, err
		}
		next := *cur
		next.Rates = slices.Clone(cur.Rates)
		next.Thresholds = slices.Clone(cur.Thresholds)
		if err := fn(&next); err != nil {
			return nil, err
		}
		next.Version = cur.Version + 1
		it, err := toSKUItem(&next)
		if err != nil {
			return nil, apperr.Wrap(err, "encode sku")
		}
		up := s.table.Update("PK", skuPK(id)).Range("SK", skuSK).
			Set("Name", it.Name).Set("Rates", it.Rates).Set("UpdatedAt", it.UpdatedAt).Set("Version", it.Version).
			If("'Version' = ?", cur.Version)
		setOrRemove(up, "Unit", it.Unit)
		if len(it.Thresholds) > 0 {
			up.Set("Thresholds", it.Thresholds)
		} else {
			up.Remove("Thresholds")
		}
		err = up.Run(ctx)
		switch {
		case err == nil:
			return &next, nil
		case dynamo.IsCondCheckFailed(err):
			continue
		}
		return nil, apperr.Wrap(err, "update sku")
	}
	return nil, concurrent("SKU")
}

func skuInUse() error {
	return apperr.New(apperr.Conflict, "sku_in_use", "Plans still charge this SKU; remove it from them (or delete the draft plans) first.")
}

// DeleteSKU implements catalog.Store.
func (s *Store) DeleteSKU(ctx context.Context, id string) error {
	k, err := s.GetSKU(ctx, id)
	if err != nil {
		return err
	}
	if k.PlanCount > 0 {
		return skuInUse()
	}
	err = s.db.WriteTx().
		Delete(s.table.Delete("PK", skuPK(id)).Range("SK", skuSK).If("'Plans' = ? AND 'Version' = ?", 0, k.Version)).
		Delete(s.table.Delete("PK", skuCodePK(k.Code)).Range("SK", "SKUCODE").If("'OwnerID' = ?", id)).
		Run(ctx)
	if failedAt(err)[0] || isTxConflict(err) {
		cur, gerr := s.GetSKU(ctx, id)
		if gerr != nil {
			return gerr
		}
		if cur.PlanCount > 0 {
			return skuInUse()
		}
		return concurrent("SKU")
	}
	return apperr.Wrap(err, "delete sku")
}

func toPlanItem(p *catalog.Plan) planItem {
	it := planItem{PK: planPK(p.ID), SK: planSK, GSI1PK: "PLAN", GSI1SK: p.Code, Kind: "plan", ID: p.ID, Code: p.Code,
		Name: p.Name, Currency: p.Currency, BillingCycle: p.BillingCycle, BasePrice: p.BasePrice.String(),
		Status: p.Status, PublishedAt: p.PublishedAt, RetiredAt: p.RetiredAt, CreatedAt: p.CreatedAt,
		UpdatedAt: p.UpdatedAt, Version: p.Version}
	for _, c := range p.Charges {
		ci := planChargeItem{SKUID: c.SKUID, SKUCode: c.SKUCode}
		if c.IncludedQuantity != nil {
			ci.IncludedQuantity = c.IncludedQuantity.String()
		}
		it.Charges = append(it.Charges, ci)
	}
	return it
}

func (it planItem) plan() (*catalog.Plan, error) {
	base, err := money.Parse(it.BasePrice)
	if err != nil {
		return nil, fmt.Errorf("plan %s base price: %w", it.ID, err)
	}
	p := &catalog.Plan{ID: it.ID, Code: it.Code, Name: it.Name, Currency: it.Currency, BillingCycle: it.BillingCycle,
		BasePrice: base, Charges: []catalog.PlanCharge{}, Status: it.Status, PublishedAt: it.PublishedAt, RetiredAt: it.RetiredAt,
		CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt, Version: it.Version}
	for _, c := range it.Charges {
		pc := catalog.PlanCharge{SKUID: c.SKUID, SKUCode: c.SKUCode}
		if c.IncludedQuantity != "" {
			q, err := money.Parse(c.IncludedQuantity)
			if err != nil {
				return nil, fmt.Errorf("plan %s included quantity: %w", it.ID, err)
			}
			pc.IncludedQuantity = &q
		}
		p.Charges = append(p.Charges, pc)
	}
	return p, nil
}

// skuRef counts (delta 1) or uncounts (-1) a plan's reference on a SKU. Counting requires the SKU
// to exist in the plan's currency.
func (s *Store) skuRef(skuID string, delta int, currency string) *dynamo.Update {
	u := s.table.Update("PK", skuPK(skuID)).Range("SK", skuSK).Add("Plans", delta)
	if delta > 0 {
		return u.If("attribute_exists(PK) AND 'Currency' = ?", currency)
	}
	return u.If("attribute_exists(PK)")
}

func skuGone(index int) error {
	var f apperr.Fields
	f.Add(fmt.Sprintf("charges[%d].skuId", index), "not_found", "the SKU was deleted meanwhile or is in another currency")
	return f.Unprocessable()
}

// CreatePlan implements catalog.Store.
func (s *Store) CreatePlan(ctx context.Context, p *catalog.Plan) error {
	p.Version = 1
	tx := s.db.WriteTx().
		Put(s.table.Put(toPlanItem(p)).If("attribute_not_exists(PK)")).
		Put(s.table.Put(codeItem{PK: planCodePK(p.Code), SK: "PLANCODE", Kind: "plancode", OwnerID: p.ID}).If("attribute_not_exists(PK)"))
	for _, c := range p.Charges {
		tx.Update(s.skuRef(c.SKUID, 1, p.Currency))
	}
	err := tx.Run(ctx)
	if err == nil {
		return nil
	}
	failed := failedAt(err)
	if failed[1] {
		return codeTaken("plan")
	}
	for i := range p.Charges {
		if failed[2+i] {
			return skuGone(i)
		}
	}
	if isTxConflict(err) {
		return concurrent("plan")
	}
	return apperr.Wrap(err, "create plan")
}

// GetPlan implements catalog.Store.
func (s *Store) GetPlan(ctx context.Context, id string) (*catalog.Plan, error) {
	var it planItem
	err := s.table.Get("PK", planPK(id)).Range("SK", dynamo.Equal, planSK).Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.NotFoundf("No plan with this id.")
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get plan")
	}
	p, err := it.plan()
	return p, apperr.Wrap(err, "decode plan")
}

// ListPlans implements catalog.Store: one query on GSI1 (PLAN).
func (s *Store) ListPlans(ctx context.Context) ([]*catalog.Plan, error) {
	var items []planItem
	if err := s.table.Get("GSI1PK", "PLAN").Index(GSI1).All(ctx, &items); err != nil {
		return nil, apperr.Wrap(err, "list plans")
	}
	out := make([]*catalog.Plan, 0, len(items))
	for _, it := range items {
		p, err := it.plan()
		if err != nil {
			return nil, apperr.Wrap(err, "decode plan")
		}
		out = append(out, p)
	}
	return out, nil
}

// UpdatePlan implements catalog.Store. A plan item carries no counters, so it is written whole
// under a version condition; the references of SKUs leaving and joining the charges move in the
// same transaction.
func (s *Store) UpdatePlan(ctx context.Context, id string, fn func(*catalog.Plan) error) (*catalog.Plan, error) {
	for range 4 {
		cur, err := s.GetPlan(ctx, id)
		if err != nil {
			return nil, err
		}
		next := *cur
		next.Charges = slices.Clone(cur.Charges)
		if err := fn(&next); err != nil {
			return nil, err
		}
		next.Version = cur.Version + 1
		tx := s.db.WriteTx().Put(s.table.Put(toPlanItem(&next)).If("'Version' = ?", cur.Version))
		before, after := cur.SKUIDs(), next.SKUIDs()
		for _, skuID := range before {
			if !slices.Contains(after, skuID) {
				tx.Update(s.skuRef(skuID, -1, ""))
			}
		}
		added := map[int]int{} // transaction index -> charge index
		n := 1 + len(before) - countShared(before, after)
		for i, skuID := range after {
			if !slices.Contains(before, skuID) {
				tx.Update(s.skuRef(skuID, 1, next.Currency))
				added[n] = i
				n++
			}
		}
		err = tx.Run(ctx)
		if err == nil {
			return &next, nil
		}
		failed := failedAt(err)
		for at, i := range added {
			if failed[at] {
				return nil, skuGone(i)
			}
		}
		if failed[0] || isTxConflict(err) {
			continue
		}
		return nil, apperr.Wrap(err, "update plan")
	}
	return nil, concurrent("plan")
}

func countShared(a, b []string) int {
	n := 0
	for _, x := range a {
		if slices.Contains(b, x) {
			n++
		}
	}
	return n
}

// DeletePlan implements catalog.Store.
func (s *Store) DeletePlan(ctx context.Context, id string) error {
	p, err := s.GetPlan(ctx, id)
	if err != nil {
		return err
	}
	notDraft := apperr.New(apperr.Conflict, "plan_not_draft", "Only draft plans can be deleted; retire a published plan instead.")
	if p.Status != catalog.PlanDraft {
		return notDraft
	}
	tx := s.db.WriteTx().
		Delete(s.table.Delete("PK", planPK(id)).Range("SK", planSK).If("'Status' = ? AND 'Version' = ?", catalog.PlanDraft, p.Version)).
		Delete(s.table.Delete("PK", planCodePK(p.Code)).Range("SK", "PLANCODE").If("'OwnerID' = ?", id))
	for _, c := range p.Charges {
		tx.Update(s.skuRef(c.SKUID, -1, ""))
	}
	err = tx.Run(ctx)
	if failedAt(err)[0] || isTxConflict(err) {
		cur, gerr := s.GetPlan(ctx, id)
		if gerr != nil {
			return gerr
		}
		if cur.Status != catalog.PlanDraft {
			return notDraft
		}
		return concurrent("plan")
	}
	return apperr.Wrap(err, "delete plan")
}

func (it overrideItem) override() (*catalog.Override, error) {
	o := &catalog.Override{TenantID: it.TenantID, SKUID: it.SKUID, UpdatedAt: it.UpdatedAt, Version: it.Version}
	for _, v := range it.Versions {
		ov := catalog.OverrideVersion{EffectiveFrom: v.EffectiveFrom, CreatedAt: v.CreatedAt, CreatedBy: v.CreatedBy}
		if v.Rate != "" {
			r, err := parseRate(v.Rate)
			if err != nil {
				return nil, fmt.Errorf("override %s/%s: %w", it.TenantID, it.SKUID, err)
			}
			ov.Rate = &r
		}
		o.Versions = append(o.Versions, ov)
	}
	return o, nil
}

func toOverrideItem(o *catalog.Override) (overrideItem, error) {
	it := overrideItem{PK: overridePK(o.TenantID), SK: overrideSK(o.SKUID), Kind: "override", TenantID: o.TenantID,
		SKUID: o.SKUID, UpdatedAt: o.UpdatedAt, Version: o.Version}
	for _, v := range o.Versions {
		vi := overrideVersionItem{EffectiveFrom: v.EffectiveFrom, CreatedAt: v.CreatedAt, CreatedBy: v.CreatedBy}
		if v.Rate != nil {
			j, err := rateJSON(*v.Rate)
			if err != nil {
				return overrideItem{}, err
			}
			vi.Rate = j
		}
		it.Versions = append(it.Versions, vi)
	}
	return it, nil
}

// GetOverrides implements catalog.Store: one query on the tenant's override partition.
func (s *Store) GetOverrides(ctx context.Context, tenantID string) ([]*catalog.Override, error) {
	var items []overrideItem
	if err := s.table.Get("PK", overridePK(tenantID)).Consistent(true).All(ctx, &items); err != nil {
		return nil, apperr.Wrap(err, "list overrides")
	}
	out := make([]*catalog.Override, 0, len(items))
	for _, it := range items {
		o, err := it.override()
		if err != nil {
			return nil, apperr.Wrap(err, "decode override")
		}
		out = append(out, o)
	}
	return out, nil
}

// UpdateOverride implements catalog.Store.
func (s *Store) UpdateOverride(ctx context.Context, tenantID, skuID string, fn func(*catalog.Override) error) (*catalog.Override, error) {
	for range 4 {
		var it overrideItem
		cur := &catalog.Override{TenantID: tenantID, SKUID: skuID}
		err := s.table.Get("PK", overridePK(tenantID)).Range("SK", dynamo.Equal, overrideSK(skuID)).Consistent(true).One(ctx, &it)
		switch {
		case err == nil:
			if cur, err = it.override(); err != nil {
				return nil, apperr.Wrap(err, "decode override")
			}
		case !errors.Is(err, dynamo.ErrNotFound):
			return nil, apperr.Wrap(err, "get override")
		}
		next := *cur
		next.Versions = slices.Clone(cur.Versions)
		if err := fn(&next); err != nil {
			return nil, err
		}
		next.Version = cur.Version + 1
		item, err := toOverrideItem(&next)
		if err != nil {
			return nil, apperr.Wrap(err, "encode override")
		}
		put := s.table.Put(item)
		if cur.Version == 0 {
			put.If("attribute_not_exists(PK)")
		} else {
			put.If("'Version' = ?", cur.Version)
		}
		err = put.Run(ctx)
		switch {
		case err == nil:
			return &next, nil
		case dynamo.IsCondCheckFailed(err):
			continue
		}
		return nil, apperr.Wrap(err, "put override")
	}
	return nil, concurrent("override")
}

var _ catalog.Store = (*Store)(nil)
