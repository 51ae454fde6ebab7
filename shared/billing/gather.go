package billing

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/pricing"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// state is one stretch of a subscription's life: a plan and a seat count from From to To
// (To zero: still running).
type state struct {
	planID   string
	quantity int64
	from, to time.Time
}

// timeline derives a subscription's states from its history (SPEC 9: every change is recorded
// with before and after). The first state starts at the start date (which may be earlier than
// the creation: imports); each later one at its change. A state ends at the next change or at
// its cancellation, whichever comes first. Adjacent states with one plan and one quantity (a
// license key change) are merged. A state whose quantity is not a whole number of at least one
// seat is an error: skipping it would leave its seats unbilled without anyone knowing.
func timeline(sub *subscriptions.Subscription, hist []subscriptions.HistoryEntry) ([]state, error) {
	type snap struct {
		at time.Time
		st *subscriptions.State
	}
	var snaps []snap
	for _, h := range hist {
		if h.After != nil {
			snaps = append(snaps, snap{h.At, h.After})
		}
	}
	if len(snaps) == 0 {
		snaps = []snap{{sub.StartDate, sub.State()}}
	}
	var out []state
	for i, s := range snaps {
		from := s.at
		if i == 0 || from.Before(sub.StartDate) {
			from = sub.StartDate
		}
		var to time.Time
		if i+1 < len(snaps) {
			to = snaps[i+1].at
		}
		if s.st.CancelAt != nil && (to.IsZero() || s.st.CancelAt.Before(to)) {
			to = *s.st.CancelAt
		}
		if s.st.Status == subscriptions.StatusCancelled && s.st.CancelAt == nil {
			to = from
		}
		if !to.IsZero() && !to.After(from) {
			continue
		}
		q, err := quantityOf(s.st.Quantity)
		if err != nil {
			return nil, fmt.Errorf("the state from %s has %w", from.Format(time.RFC3339), err)
		}
		if n := len(out); n > 0 && out[n-1].planID == s.st.PlanID && out[n-1].quantity == q && out[n-1].to.Equal(from) {
			out[n-1].to = to
			continue
		}
		out = append(out, state{planID: s.st.PlanID, quantity: q, from: from, to: to})
	}
	return out, nil
}

// quantityOf returns a seat count: a whole number of at least 1 ("10", or "10.0" written with a
// scale). It returns an error naming the value otherwise.
func quantityOf(d money.Decimal) (int64, error) {
	if !d.IsInteger() {
		return 0, fmt.Errorf("a quantity of %s seats, not a whole number", d)
	}
	n, err := strconv.ParseInt(d.Round(0).String(), 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("a quantity of %s seats, not a whole number of at least 1", d)
	}
	return n, nil
}

// overlaps reports whether a state lies (partly) in p.
func (s state) overlaps(p period.Period) bool {
	return s.from.Before(p.End()) && (s.to.IsZero() || s.to.After(p.Start()))
}

// activeIn reports whether a subscription was active at some instant of p.
func activeIn(sub *subscriptions.Subscription, p period.Period) bool {
	return sub.StartDate.Before(p.End()) && (sub.CancelAt == nil || sub.CancelAt.After(p.Start()))
}

// planAtEnd returns the plan of the last state of the timeline that lies in p: the plan that
// prices the period's usage (SPEC 11).
func planAtEnd(states []state, p period.Period) string {
	plan := ""
	for _, s := range states {
		if s.overlaps(p) {
			plan = s.planID
		}
	}
	return plan
}

// lookups caches what every tenant's invoice reads of the catalog within one worker.
type lookups struct {
	cat Catalog
	ttl time.Duration

	mu    sync.Mutex
	at    time.Time
	skus  map[string]*catalog.SKU
	plans map[string]*catalog.Plan
}

func (l *lookups) sku(ctx context.Context, code string, now time.Time) (*catalog.SKU, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	// A list read "after" now (the clock was set back) is as stale as an old one.
	if age := now.Sub(l.at); l.skus == nil || age < 0 || age > l.ttl || l.skus[code] == nil {
		all, err := l.cat.ListSKUs(ctx)
		if err != nil {
			return nil, err
		}
		l.skus = map[string]*catalog.SKU{}
		for _, k := range all {
			l.skus[k.Code] = k
		}
		l.plans = map[string]*catalog.Plan{}
		l.at = now
	}
	if k := l.skus[code]; k != nil {
		return k, nil
	}
	return nil, unbillable(fmt.Sprintf("No SKU has the code %q of the tenant's usage.", code), nil)
}

func (l *lookups) plan(ctx context.Context, id string) (*catalog.Plan, error) {
	l.mu.Lock()
	pl := l.plans[id]
	l.mu.Unlock()
	if pl != nil {
		return pl, nil
	}
	pl, err := l.cat.GetPlan(ctx, id)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.plans == nil {
		l.plans = map[string]*catalog.Plan{}
	}
	l.plans[id] = pl // published plans never change
	l.mu.Unlock()
	return pl, nil
}

// chainOf returns the tenant's markup chain in effect at p's first instant (SPEC 8.3).
func chainOf(entities []*hierarchy.Entity, currency string, p period.Period) (pricing.Chain, error) {
	ch := pricing.Chain{Currency: currency}
	for _, e := range entities {
		if e.Type != access.Distributor && e.Type != access.Partner {
			continue
		}
		m := money.Zero
		if txt := e.MarkupAt(p); txt != "" {
			var err error
			if m, err = money.Parse(txt); err != nil {
				return ch, unbillable("The markup of "+e.ID+" is not a number.", err)
			}
		}
		ch.Levels = append(ch.Levels, pricing.Level{EntityID: e.ID, Markup: m})
	}
	return ch, nil
}

// tenantData is what one tenant's invoice is computed from.
type tenantData struct {
	tenant   *hierarchy.Entity
	issuer   *hierarchy.Entity
	chain    []*hierarchy.Entity // platform first, tenant last
	currency string
	subs     map[string][]state
	plans    map[string]*catalog.Plan
	ovs      []*catalog.Override
	// billed are the quantities to record in the period's ledger; late the adjustments'
	// ledgers and changes the flags to acknowledge once the invoice is stored.
	billed  map[string]money.Decimal
	ledgers map[period.Period]Ledger
	changes []UsageChange
}

// rates returns the list rate and the tenant's override of the SKU with code for subscription
// sub in period p: the rates in effect at p's first instant. The list rate takes the included
// quantity of the plan the subscription had at p's end (SPEC 11); the override is the complete
// replacement rate the tenant's channel set (SPEC 8.3, docs/pricing.md), its own
// includedQuantity included, so the plan's does not apply to it.
func (s *Service) rates(ctx context.Context, d *tenantData, subID, code string, p period.Period) (pricing.Rate, *pricing.Rate, error) {
	k, err := s.look.sku(ctx, code, s.now())
	if err != nil {
		return pricing.Rate{}, nil, err
	}
	rv, ok := k.RateAt(p)
	if !ok {
		return pricing.Rate{}, nil, unbillable(fmt.Sprintf("SKU %s has no rate in effect in %s.", code, p), nil)
	}
	list := rv.Rate
	var charge *catalog.PlanCharge
	if pid := planAtEnd(d.subs[subID], p); pid != "" {
		pl, err := s.look.plan(ctx, pid)
		if err != nil {
			return pricing.Rate{}, nil, err
		}
		for i := range pl.Charges {
			if pl.Charges[i].SKUID == k.ID {
				charge = &pl.Charges[i]
			}
		}
	}
	if charge != nil {
		list = charge.Apply(list)
	}
	var ov *pricing.Rate
	for _, o := range d.ovs {
		if o.SKUID != k.ID {
			continue
		}
		if r := o.RateAt(p); r != nil {
			or := *r
			ov = &or
		}
	}
	return list, ov, nil
}

func aggKey(subID, sku string) string { return subID + "#" + sku }

// withFlagged adds to the period's totals every aggregate of p that is flagged but missing from
// them. The period's listing of aggregates may lag behind (the usage registry is read by a
// query that is eventually consistent in AWS), and usage that lands as the period closes is
// exactly what it can miss; the flags are read strongly and the invoice acknowledges them, so
// an aggregate left out here would never be billed. Its total is read strongly (Totals).
func (s *Service) withFlagged(ctx context.Context, totals []UsageTotal, changes []UsageChange, p period.Period) ([]UsageTotal, error) {
	listed := make(map[UsageKey]bool, len(totals))
	for _, u := range totals {
		listed[u.Key] = true
	}
	var missing []UsageKey
	for _, c := range changes {
		if c.Key.Period == p && !listed[c.Key] {
			listed[c.Key] = true
			missing = append(missing, c.Key)
		}
	}
	if len(missing) == 0 {
		return totals, nil
	}
	now, err := s.Usage.Totals(ctx, missing)
	if err != nil {
		return nil, err
	}
	for _, k := range missing {
		if q, ok := now[k]; ok && !q.IsZero() {
			totals = append(totals, UsageTotal{Key: k, Quantity: q})
		}
	}
	return totals, nil
}

// gather reads everything tenant t's invoice for p is made of and returns the computation's
// input. Late usage is every flagged aggregate of an earlier period that was invoiced, billed
// for its total minus what its ledger says was billed (SPEC 10).
func (s *Service) gather(ctx context.Context, tenantID string, p period.Period) (*tenantData, Input, error) {
	t, err := s.Entities.GetEntity(ctx, tenantID)
	if err != nil {
		return nil, Input{}, err
	}
	if t.Type != access.Tenant {
		return nil, Input{}, apperr.NotFoundf("No tenant with this id.")
	}
	d := &tenantData{tenant: t, subs: map[string][]state{}, plans: map[string]*catalog.Plan{},
		billed: map[string]money.Decimal{}, ledgers: map[period.Period]Ledger{}}
	pathIDs := access.IDsOnPath(t.Path)
	got, err := s.Entities.GetEntities(ctx, pathIDs)
	if err != nil {
		return nil, Input{}, err
	}
	for _, id := range pathIDs {
		e, ok := got[id]
		if !ok {
			return nil, Input{}, unbillable("The tenant's ancestor "+id+" does not exist.", nil)
		}
		d.chain = append(d.chain, e)
	}
	if len(d.chain) >= 2 {
		d.issuer = d.chain[len(d.chain)-2]
	}
	if d.issuer == nil || d.issuer.Type != access.Partner {
		return nil, Input{}, unbillable("The tenant has no partner to issue its invoice.", nil)
	}
	d.currency = t.Currency
	if d.currency == "" {
		d.currency = s.PlatformCurrency
	}
	in := Input{Period: p}
	if in.Chain, err = chainOf(d.chain, d.currency, p); err != nil {
		return nil, Input{}, err
	}
	// Flags first, totals after: an increment landing in between changes its flag's version, so
	// the acknowledgement fails and the next invoice bills what this one did not see.
	changes, err := s.Usage.Changes(ctx, t.ID)
	if err != nil {
		return nil, Input{}, err
	}
	subs, err := s.Subscriptions.ListSubscriptions(ctx, t.Path)
	if err != nil {
		return nil, Input{}, err
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].ID < subs[j].ID })
	listed := 0
	for _, sub := range subs {
		if sub.TenantID == t.ID {
			listed++
		}
	}
	// The listing is an index query (eventually consistent in AWS); the tenant's Subscriptions
	// counter, read strongly, counts every subscription ever created and conditions the
	// invoice's write. A listing short of it misses a subscription created just now (an import
	// into p): computed from it, the invoice would pass that condition and close p to the
	// subscription without its seats. Retry until the listing has caught up.
	if counted := d.tenant.NbOfSubscriptions; counted != nil && listed != *counted {
		return nil, Input{}, apperr.New(apperr.Conflict, "tenant_changed",
			fmt.Sprintf("The subscription listing holds %d of the tenant's %d subscriptions; compute again.", listed, *counted))
	}
	for _, sub := range subs {
		if sub.TenantID != t.ID {
			continue
		}
		hist, err := s.Subscriptions.History(ctx, sub.ID)
		if err != nil {
			return nil, Input{}, err
		}
		states, err := timeline(sub, hist)
		if err != nil {
			return nil, Input{}, unbillable("Subscription "+sub.ID+" cannot be billed: "+err.Error()+".", err)
		}
		d.subs[sub.ID] = states
		for _, st := range states {
			if !st.overlaps(p) {
				continue
			}
			pl, err := s.look.plan(ctx, st.planID)
			if err != nil {
				return nil, Input{}, err
			}
			in.Seats = append(in.Seats, Segment{SubscriptionID: sub.ID, PlanCode: pl.Code, BasePrice: pl.BasePrice,
				Quantity: st.quantity, From: st.from, To: st.to})
		}
	}
	if d.ovs, err = s.Catalog.GetOverrides(ctx, t.ID); err != nil {
		return nil, Input{}, err
	}
	totals, err := s.Usage.PeriodTotals(ctx, t.Path, p)
	if err != nil {
		return nil, Input{}, err
	}
	if totals, err = s.withFlagged(ctx, totals, changes, p); err != nil {
		return nil, Input{}, err
	}
	for _, u := range totals {
		d.billed[aggKey(u.Key.SubscriptionID, u.Key.SKU)] = u.Quantity
		list, ov, err := s.rates(ctx, d, u.Key.SubscriptionID, u.Key.SKU, p)
		if err != nil {
			return nil, Input{}, err
		}
		in.Usage = append(in.Usage, Usage{SubscriptionID: u.Key.SubscriptionID, SKU: u.Key.SKU, Quantity: u.Quantity, List: list, Override: ov})
	}
	var latePeriods []period.Period
	seen := map[period.Period]bool{}
	for _, c := range changes {
		if c.Key.Period.Compare(p) > 0 {
			continue
		}
		d.changes = append(d.changes, c)
		if c.Key.Period.Before(p) && !seen[c.Key.Period] {
			seen[c.Key.Period] = true
			latePeriods = append(latePeriods, c.Key.Period)
		}
	}
	if len(latePeriods) == 0 {
		return d, in, nil
	}
	ledgers, err := s.Store.Ledgers(ctx, t.ID, latePeriods)
	if err != nil {
		return nil, Input{}, err
	}
	var keys []UsageKey
	for _, c := range d.changes {
		if _, ok := ledgers[c.Key.Period]; ok && c.Key.Period.Before(p) {
			keys = append(keys, c.Key)
		}
	}
	now, err := s.Usage.Totals(ctx, keys)
	if err != nil {
		return nil, Input{}, err
	}
	for _, k := range keys {
		lg := ledgers[k.Period]
		old, ok := lg.Billed[aggKey(k.SubscriptionID, k.SKU)]
		if !ok {
			old = money.Zero
		}
		total, ok := now[k]
		if !ok || total.Cmp(old) <= 0 {
			continue
		}
		list, ov, err := s.rates(ctx, d, k.SubscriptionID, k.SKU, k.Period)
		if err != nil {
			return nil, Input{}, err
		}
		ch, err := chainOf(d.chain, d.currency, k.Period)
		if err != nil {
			return nil, Input{}, err
		}
		in.Late = append(in.Late, Late{SubscriptionID: k.SubscriptionID, SKU: k.SKU, OriginalPeriod: k.Period,
			QOld: old, DQ: total.Sub(old), List: list, Override: ov, Chain: ch})
		if lg.Billed == nil {
			lg.Billed = map[string]money.Decimal{}
		}
		lg.Billed[aggKey(k.SubscriptionID, k.SKU)] = total
		ledgers[k.Period] = lg
		d.ledgers[k.Period] = lg
	}
	return d, in, nil
}
