package billing_test

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/billing"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// world is an in-memory channel, catalog, subscription store, usage source and billing store:
// the hand-written fakes of every interface the billing service reads and writes, so that a
// test drives the service's own path (Process -> gather -> timeline -> Compute -> the stored
// invoice) rather than Compute with hand-built inputs. The embedded Store is nil: a store method
// the service starts calling that the fake does not implement fails the test loudly (nil
// interface call) instead of answering something made up.
type world struct {
	billing.Store

	mu        sync.Mutex
	entities  map[string]*hierarchy.Entity
	skus      []*catalog.SKU
	plans     map[string]*catalog.Plan
	overrides map[string][]*catalog.Override
	subs      []*subscriptions.Subscription
	hist      map[string][]subscriptions.HistoryEntry
	// subPath maps a subscription to its tenant's path (usage totals are listed by path).
	subPath map[string]string
	totals  map[billing.UsageKey]money.Decimal
	flags   map[string][]billing.UsageChange // tenant id -> flagged aggregates

	runs     map[string]*billing.Run
	counted  map[string]bool // run#tenant
	failures []billing.TenantFailure
	invoices map[string]*billing.Invoice // tenant#period
	seqs     map[string]int64            // issuer#year
	ledgers  map[string]billing.Ledger   // tenant#period
	sent     []billing.Message
}

func newWorld() *world {
	w := &world{entities: map[string]*hierarchy.Entity{}, plans: map[string]*catalog.Plan{}, overrides: map[string][]*catalog.Override{},
		hist: map[string][]subscriptions.HistoryEntry{}, subPath: map[string]string{}, totals: map[billing.UsageKey]money.Decimal{},
		flags: map[string][]billing.UsageChange{}, runs: map[string]*billing.Run{}, counted: map[string]bool{},
		invoices: map[string]*billing.Invoice{}, seqs: map[string]int64{}, ledgers: map[string]billing.Ledger{}}
	w.entities[access.PlatformID] = &hierarchy.Entity{ID: access.PlatformID, Type: access.Platform, Path: access.PlatformPath}
	return w
}

// addEntity stores an entity under parent (nil: the platform) and returns it.
func (w *world) addEntity(id string, typ access.EntityType, parent *hierarchy.Entity, markups []hierarchy.Markup) *hierarchy.Entity {
	if parent == nil {
		parent = w.entities[access.PlatformID]
	}
	e := &hierarchy.Entity{ID: id, Type: typ, Name: id, Path: access.PathOf(parent.Path, id), Markups: markups,
		Parent: &hierarchy.Ref{Type: parent.Type, ID: parent.ID}}
	w.entities[id] = e
	return e
}

// service returns a billing service over the world whose clock reads *now.
func (w *world) service(now *time.Time) *billing.Service {
	return &billing.Service{Store: w, Entities: w, Catalog: w, Subscriptions: w, Usage: w, Queue: w,
		PlatformCurrency: "EUR", Now: func() time.Time { return *now }, Log: slog.New(slog.DiscardHandler)}
}

// bill processes the tenant message of a run of p for tenant, as the worker does, and returns
// the tenant's invoice of p (nil when it has none) and its failure in the run (nil when none).
func (w *world) bill(tb testing.TB, s *billing.Service, p period.Period, tenant string) (*billing.Invoice, *billing.TenantFailure) {
	tb.Helper()
	runID := "run-" + p.String()
	w.mu.Lock()
	if w.runs[runID] == nil {
		w.runs[runID] = &billing.Run{ID: runID, Period: p, Status: billing.RunRunning}
	}
	w.mu.Unlock()
	if err := s.Process(context.Background(), billing.Message{Kind: billing.KindTenant, RunID: runID, Period: p.String(), TenantID: tenant, Attempt: 1}); err != nil {
		tb.Fatalf("process %s %s: %v", p, tenant, err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var f *billing.TenantFailure
	for i := range w.failures {
		if w.failures[i].TenantID == tenant {
			f = &w.failures[i]
		}
	}
	return w.invoices[tenant+"#"+p.String()], f
}

// Entities.

func (w *world) GetEntity(_ context.Context, id string) (*hierarchy.Entity, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e, ok := w.entities[id]; ok {
		c := *e
		return &c, nil
	}
	return nil, apperr.NotFoundf("no entity %s", id)
}

func (w *world) GetEntities(_ context.Context, ids []string) (map[string]*hierarchy.Entity, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]*hierarchy.Entity{}
	for _, id := range ids {
		if e, ok := w.entities[id]; ok {
			c := *e
			out[id] = &c
		}
	}
	return out, nil
}

// Catalog.

func (w *world) ListSKUs(context.Context) ([]*catalog.SKU, error) { return w.skus, nil }

func (w *world) GetPlan(_ context.Context, id string) (*catalog.Plan, error) {
	if p, ok := w.plans[id]; ok {
		return p, nil
	}
	return nil, apperr.NotFoundf("no plan %s", id)
}

func (w *world) GetOverrides(_ context.Context, tenantID string) ([]*catalog.Override, error) {
	return w.overrides[tenantID], nil
}

// Subscriptions.

func (w *world) ListSubscriptions(_ context.Context, prefix string) ([]*subscriptions.Subscription, error) {
	var out []*subscriptions.Subscription
	for _, s := range w.subs {
		if strings.HasPrefix(s.TenantPath, prefix) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (w *world) GetSubscription(_ context.Context, id string) (*subscriptions.Subscription, error) {
	for _, s := range w.subs {
		if s.ID == id {
			return s, nil
		}
	}
	return nil, apperr.NotFoundf("no subscription %s", id)
}

func (w *world) History(_ context.Context, id string) ([]subscriptions.HistoryEntry, error) {
	return w.hist[id], nil
}

// UsageSource.

func (w *world) PeriodTotals(_ context.Context, tenantPath string, p period.Period) ([]billing.UsageTotal, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []billing.UsageTotal
	for k, q := range w.totals {
		if k.Period == p && w.subPath[k.SubscriptionID] == tenantPath {
			out = append(out, billing.UsageTotal{Key: k, Quantity: q})
		}
	}
	// Map order is random: sort so that a failure reproduces.
	sort.Slice(out, func(i, j int) bool {
		return out[i].Key.SubscriptionID+out[i].Key.SKU < out[j].Key.SubscriptionID+out[j].Key.SKU
	})
	return out, nil
}

func (w *world) Totals(_ context.Context, keys []billing.UsageKey) (map[billing.UsageKey]money.Decimal, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[billing.UsageKey]money.Decimal{}
	for _, k := range keys {
		if q, ok := w.totals[k]; ok {
			out[k] = q
		}
	}
	return out, nil
}

func (w *world) Changes(_ context.Context, tenantID string) ([]billing.UsageChange, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]billing.UsageChange(nil), w.flags[tenantID]...), nil
}

func (w *world) Acknowledge(_ context.Context, tenantID string, c billing.UsageChange) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	fs := w.flags[tenantID]
	for i, f := range fs {
		if f.Key == c.Key {
			if f.Version != c.Version {
				return apperr.New(apperr.Conflict, "flag_changed", "the flag changed")
			}
			w.flags[tenantID] = append(fs[:i:i], fs[i+1:]...)
			return nil
		}
	}
	return nil
}

// addUsage adds q to an aggregate; late marks it changed after its period was invoiced (the
// flag usage ingestion writes, SPEC 10).
func (w *world) addUsage(tenant string, k billing.UsageKey, q money.Decimal, late bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if old, ok := w.totals[k]; ok {
		q = old.Add(q)
	}
	w.totals[k] = q
	if !late {
		return
	}
	for i, f := range w.flags[tenant] {
		if f.Key == k {
			w.flags[tenant][i].Version++
			return
		}
	}
	w.flags[tenant] = append(w.flags[tenant], billing.UsageChange{Key: k, Version: 1})
}

// Queue.

func (w *world) Send(_ context.Context, msgs []billing.Message) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sent = append(w.sent, msgs...)
	return nil
}

// Store: what the tenant message uses.

func (w *world) GetRun(_ context.Context, id string) (*billing.Run, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r, ok := w.runs[id]
	if !ok {
		return nil, apperr.NotFoundf("no run %s", id)
	}
	c := *r
	return &c, nil
}

func (w *world) TenantCounted(_ context.Context, runID, tenantID string) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.counted[runID+"#"+tenantID], nil
}

func (w *world) CountTenant(_ context.Context, runID, tenantID string, created bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.count(runID, tenantID, created)
	return nil
}

func (w *world) count(runID, tenantID string, created bool) {
	if w.counted[runID+"#"+tenantID] {
		return
	}
	w.counted[runID+"#"+tenantID] = true
	r := w.runs[runID]
	r.TenantsDone++
	if created {
		r.InvoicesCreated++
	}
}

func (w *world) FailTenant(_ context.Context, runID string, f billing.TenantFailure) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.counted[runID+"#"+f.TenantID] {
		return nil
	}
	w.count(runID, f.TenantID, false)
	w.runs[runID].TenantsFailed++
	w.failures = append(w.failures, f)
	return nil
}

func (w *world) InvoiceRef(_ context.Context, tenantID string, p period.Period) (*billing.InvoiceRef, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	inv, ok := w.invoices[tenantID+"#"+p.String()]
	if !ok {
		return nil, apperr.NotFoundf("no invoice")
	}
	return &billing.InvoiceRef{InvoiceID: inv.ID, Number: inv.Number, TenantID: tenantID, Period: p, Currency: inv.Currency, Total: inv.Total.Amount}, nil
}

func (w *world) LastSeq(_ context.Context, issuerID string, year int) (int64, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seqs[fmt.Sprintf("%s#%d", issuerID, year)], nil
}

// IssueInvoice checks what the real store's transaction conditions check (one invoice per
// tenant and period, the counter moving from Seq-1 to Seq) and writes the invoice, the counter,
// the ledgers and the run's count together.
func (w *world) IssueInvoice(_ context.Context, is billing.Issue) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	inv := is.Invoice
	key := inv.TenantID + "#" + inv.Period
	if _, ok := w.invoices[key]; ok {
		return apperr.New(apperr.Conflict, "invoice_exists", "the tenant has an invoice for the period")
	}
	ck := fmt.Sprintf("%s#%d", inv.IssuerID, is.Year)
	if w.seqs[ck] != inv.Seq-1 {
		return apperr.New(apperr.Conflict, "number_taken", "the number is taken")
	}
	w.seqs[ck] = inv.Seq
	w.invoices[key] = inv
	for _, l := range is.Ledgers {
		w.ledgers[l.TenantID+"#"+l.Period.String()] = l
	}
	w.count(inv.RunID, inv.TenantID, true)
	return nil
}

func (w *world) Ledgers(_ context.Context, tenantID string, periods []period.Period) (map[period.Period]billing.Ledger, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[period.Period]billing.Ledger{}
	for _, p := range periods {
		if l, ok := w.ledgers[tenantID+"#"+p.String()]; ok {
			c := l
			c.Billed = map[string]money.Decimal{}
			for k, v := range l.Billed {
				c.Billed[k] = v
			}
			out[p] = c
		}
	}
	return out, nil
}

// subscribe stores a subscription of tenant to plan created at `at` (start may be earlier: an
// import) with its creation in the history, as the subscriptions service records it.
func (w *world) subscribe(id string, tenant *hierarchy.Entity, plan string, seats money.Decimal, start, at time.Time) *subscriptions.Subscription {
	s := &subscriptions.Subscription{ID: id, TenantID: tenant.ID, TenantPath: tenant.Path, PlanID: plan, Quantity: seats,
		Status: subscriptions.StatusActive, StartDate: start, CreatedAt: at, UpdatedAt: at}
	w.subs = append(w.subs, s)
	w.subPath[id] = tenant.Path
	w.hist[id] = []subscriptions.HistoryEntry{{ID: id + "-1", Seq: 1, At: at, Action: subscriptions.ActionCreate, After: s.State()}}
	n := 0
	if tenant.NbOfSubscriptions != nil {
		n = *tenant.NbOfSubscriptions
	}
	n++
	tenant.NbOfSubscriptions = &n
	return s
}

// record applies change to the subscription and appends the history entry of action at `at`.
func (w *world) record(s *subscriptions.Subscription, at time.Time, action string, change func()) {
	before := s.State()
	change()
	s.UpdatedAt = at
	h := w.hist[s.ID]
	w.hist[s.ID] = append(h, subscriptions.HistoryEntry{ID: fmt.Sprintf("%s-%d", s.ID, len(h)+1), Seq: int64(len(h) + 1), At: at,
		Action: action, Before: before, After: s.State()})
}

// update changes the plan (unless "") and the seats (unless nil).
func (w *world) update(s *subscriptions.Subscription, at time.Time, plan string, seats *money.Decimal) {
	w.record(s, at, subscriptions.ActionUpdate, func() {
		if plan != "" {
			s.PlanID = plan
		}
		if seats != nil {
			s.Quantity = *seats
		}
	})
}

// licenseKey sets a license key: a history entry that changes no billed value.
func (w *world) licenseKey(s *subscriptions.Subscription, at time.Time) {
	w.record(s, at, subscriptions.ActionLicenseKey, func() { k := "key-" + at.Format(time.RFC3339); s.LicenseKey = &k })
}

// cancel cancels now or at the end of the period of `at`, and, for the latter, records the
// cancellation taking effect (the system's entry at the period's end) when settle is true.
func (w *world) cancel(s *subscriptions.Subscription, at time.Time, mode string, settle bool) {
	w.record(s, at, subscriptions.ActionCancel, func() {
		end := at
		if mode == subscriptions.CancelPeriodEnd {
			end = period.Of(at).End()
		} else {
			s.Status = subscriptions.StatusCancelled
		}
		s.CancelAt = &end
	})
	if mode == subscriptions.CancelPeriodEnd && settle {
		w.record(s, *s.CancelAt, subscriptions.ActionCancelEffective, func() { s.Status = subscriptions.StatusCancelled })
	}
}

// ResolvePending reports the tenant's flags that still have pending increments: the fake's
// increments are all written at once, so none (the fake has nothing to finish or cancel).
func (w *world) ResolvePending(_ context.Context, tenantID string) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, f := range w.flags[tenantID] {
		if f.Pending {
			n++
		}
	}
	return n, nil
}
