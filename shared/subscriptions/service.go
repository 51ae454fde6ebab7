package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/outbox"
	"github.com/channelbilling/cms/shared/period"
)

// startSkew is how far in the future a start date may lie: the caller's clock may be a little
// ahead of ours.
const startSkew = 5 * time.Minute

// attempts bounds the optimistic retries of a create racing other changes of its tenant.
const attempts = 5

// Service applies the subscription rules for a caller. Every method checks the permission first
// (Forbidden), then the caller's subtree (NotFound for a subscription whose tenant lies outside
// it; Unprocessable for a body naming a tenant outside it). Partners therefore see only their
// tenants' subscriptions and tenants only their own.
type Service struct {
	Store    Store
	Entities Entities
	Plans    Plans
	// PlatformCurrency is the currency of tenants that carry none.
	PlatformCurrency string
	Now              func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func notFound() error { return apperr.NotFoundf("No subscription with this id.") }

func (s *Service) currencyOf(e *hierarchy.Entity) string {
	if e.Currency != "" {
		return e.Currency
	}
	return s.PlatformCurrency
}

// lookup returns the subscription with id when its tenant lies in the caller's subtree, with a
// cancellation that has come due recorded first.
func (s *Service) lookup(ctx context.Context, p access.Principal, id string) (*Subscription, error) {
	sub, err := s.Store.GetSubscription(ctx, id)
	if apperr.Is(err, apperr.NotFound) || (err == nil && !p.Covers(sub.TenantPath)) {
		return nil, notFound()
	}
	if err != nil {
		return nil, err
	}
	return s.settle(ctx, sub)
}

// settle records a cancellation scheduled for the end of a period once that end has passed:
// status cancelled, the tenant's active count decremented, a cancel_effective history entry by
// the system. It returns sub unchanged when nothing is due.
func (s *Service) settle(ctx context.Context, sub *Subscription) (*Subscription, error) {
	if !sub.due(s.now()) {
		return sub, nil
	}
	out, err := s.Store.UpdateSubscription(ctx, sub.ID, func(cur *Subscription) (*Change, error) {
		if !cur.due(s.now()) {
			return nil, nil
		}
		before := cur.State()
		cur.Status, cur.UpdatedAt = StatusCancelled, s.now()
		return &Change{History: HistoryEntry{ID: ids.New("hst"), At: *cur.CancelAt, Actor: SystemActor,
			Action: ActionCancelEffective, Before: before, After: cur.State()}, ActiveDelta: -1}, nil
	})
	if apperr.Is(err, apperr.NotFound) {
		return nil, notFound()
	}
	return out, err
}

// SettleTenant records every cancellation of the tenant's subscriptions that has come due, so
// that its count of active subscriptions is current (the tenant delete rule reads it). It does
// nothing for other entities. It fails only on storage errors.
func (s *Service) SettleTenant(ctx context.Context, e *hierarchy.Entity) error {
	if e.Type != access.Tenant {
		return nil
	}
	subs, err := s.Store.ListSubscriptions(ctx, e.Path)
	if err != nil {
		return err
	}
	for _, sub := range subs {
		if _, err := s.settle(ctx, sub); err != nil {
			return err
		}
	}
	return nil
}

// event returns an outbox event about sub.
func event(typ string, sub *Subscription, now time.Time, d EventDetail) (outbox.Event, error) {
	d.SubscriptionID, d.TenantID, d.PlanID, d.Quantity, d.StartDate = sub.ID, sub.TenantID, sub.PlanID, sub.Quantity, sub.StartDate
	ev, err := outbox.New(typ, sub.TenantPath, now, d)
	if err != nil {
		return outbox.Event{}, apperr.Wrap(err, "event "+typ)
	}
	return ev, nil
}

// subscribable checks that plan id exists, is published and is priced in currency, recording
// problems against field. It returns the plan when it is fine.
func (s *Service) subscribable(ctx context.Context, p access.Principal, f *apperr.Fields, field, id, currency string) (*catalog.Plan, error) {
	pl, err := s.Plans.GetPlan(ctx, id)
	switch {
	case apperr.Is(err, apperr.NotFound) || (err == nil && pl.Status == catalog.PlanDraft && !p.Can(access.PlansCreate)):
		f.Add(field, "not_found", "no plan with this id")
		return nil, nil
	case err != nil:
		return nil, err
	case pl.Status == catalog.PlanDraft:
		f.Add(field, "plan_not_published", "the plan is a draft: publish it first")
	case pl.Status == catalog.PlanRetired:
		f.Add(field, "plan_retired", "the plan is retired and takes no new subscriptions")
	case pl.Currency != currency:
		f.Add(field, "currency_mismatch", "the plan is priced in "+pl.Currency+", the tenant pays in "+currency)
	default:
		return pl, nil
	}
	return nil, nil
}

// subscriptionsOf returns how many subscriptions a tenant ever had (cancelled ones included).
func subscriptionsOf(tenant *hierarchy.Entity) int {
	if tenant.NbOfSubscriptions == nil {
		return 0
	}
	return *tenant.NbOfSubscriptions
}

// Create subscribes a tenant to a published plan in its currency. It emits customer.created when
// this is the tenant's first subscription ever, decided atomically with the tenant's
// subscription counter. Forbidden, Invalid, Unprocessable (tenant, plan, start date), Conflict.
func (s *Service) Create(ctx context.Context, p access.Principal, in CreateInput) (*Subscription, error) {
	if err := p.Require(access.SubscriptionsCreate); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	tenantID := in.TenantID
	if tenantID == "" {
		if p.ScopeType != access.Tenant {
			return nil, apperr.Field("tenantId", "required", "tenantId is required")
		}
		tenantID = p.ScopeID
	}
	for attempt := range attempts {
		if attempt > 0 {
			// Another change of the tenant won the race: let it settle before reading again.
			select {
			case <-ctx.Done():
				return nil, apperr.Wrap(ctx.Err(), "create subscription")
			case <-time.After(time.Duration(attempt*attempt) * 10 * time.Millisecond):
			}
		}
		now := s.now()
		var f apperr.Fields
		tenant, err := s.Entities.GetEntity(ctx, tenantID)
		if apperr.Is(err, apperr.NotFound) || (err == nil && (!p.Covers(tenant.Path) || tenant.Type != access.Tenant)) {
			f.Add("tenantId", "not_found", "no such tenant in your scope")
			return nil, f.Unprocessable()
		}
		if err != nil {
			return nil, err
		}
		if tenant.Status == hierarchy.StatusCancelled {
			f.Add("tenantId", "cancelled", "the tenant is cancelled")
		}
		pl, err := s.subscribable(ctx, p, &f, "planId", in.PlanID, s.currencyOf(tenant))
		if err != nil {
			return nil, err
		}
		start := now
		if in.start != nil {
			start = *in.start
		}
		if start.After(now.Add(startSkew)) {
			f.Add("startDate", "in_future", "startDate must not lie in the future")
		}
		if tenant.InvoicedThrough != "" && period.Of(start).String() <= tenant.InvoicedThrough {
			f.Add("startDate", "period_invoiced", "startDate falls in a period already invoiced for this tenant (through "+tenant.InvoicedThrough+")")
		}
		if err := f.Unprocessable(); err != nil {
			return nil, err
		}
		sub := &Subscription{
			ID: ids.New("sub"), TenantID: tenant.ID, PlanID: pl.ID, Quantity: in.quantity, Status: StatusActive,
			StartDate: start, CreatedAt: now, UpdatedAt: now, TenantPath: tenant.Path,
		}
		if in.LicenseKey != "" {
			k := in.LicenseKey
			sub.LicenseKey = &k
		}
		c := Change{
			History:       HistoryEntry{ID: ids.New("hst"), At: now, Actor: p.UserID, Action: ActionCreate, After: sub.State()},
			ActiveDelta:   1,
			PublishedPlan: pl.ID,
		}
		expect := -1
		if subscriptionsOf(tenant) == 0 {
			// The first subscription: the event is written only if the counter is still 0 when
			// the transaction commits; a concurrent first subscription makes one of us retry.
			ev, err := event(outbox.CustomerCreated, sub, now, EventDetail{Actor: p.UserID})
			if err != nil {
				return nil, err
			}
			c.Events, expect = append(c.Events, ev), 0
		}
		err = s.Store.CreateSubscription(ctx, sub, c, expect)
		if ae := apperr.As(err); err != nil && ae.Kind == apperr.Conflict && ae.Code == "tenant_changed" {
			continue // read the tenant again: cancelled, invoiced, or no longer its first
		}
		if err := retiredMeanwhile(err); err != nil {
			return nil, err
		}
		return sub, nil
	}
	return nil, apperr.New(apperr.Conflict, "concurrent_update", "The tenant is being changed by someone else; retry.")
}

// Get returns a subscription. Forbidden, NotFound.
func (s *Service) Get(ctx context.Context, p access.Principal, id string) (*Subscription, error) {
	if err := p.Require(access.SubscriptionsRead); err != nil {
		return nil, err
	}
	return s.lookup(ctx, p, id)
}

// ListFields are the searchable and sortable fields of subscriptions.
var ListFields = listing.Fields[*Subscription]{
	ID: func(s *Subscription) string { return s.ID },
	Searchable: map[string]func(*Subscription) string{
		"tenantId":   func(s *Subscription) string { return s.TenantID },
		"planId":     func(s *Subscription) string { return s.PlanID },
		"status":     func(s *Subscription) string { return s.Status },
		"licenseKey": func(s *Subscription) string { return deref(s.LicenseKey) },
		"startDate":  func(s *Subscription) string { return s.StartDate.Format(listing.TimeLayout) },
		"createdAt":  func(s *Subscription) string { return s.CreatedAt.Format(listing.TimeLayout) },
		"updatedAt":  func(s *Subscription) string { return s.UpdatedAt.Format(listing.TimeLayout) },
	},
	DefaultSort: "createdAt",
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// List returns a page of the subscriptions in the caller's subtree. Filters: "tenantId" (one
// tenant), "parent" (any entity: its whole subtree), "planId", "status" (active or cancelled, as
// of now). Forbidden, Invalid, NotFound (tenantId or parent outside the subtree).
func (s *Service) List(ctx context.Context, p access.Principal, q listing.Query, after *listing.Cursor) ([]*Subscription, *listing.Cursor, error) {
	if err := p.Require(access.SubscriptionsList); err != nil {
		return nil, nil, err
	}
	var f apperr.Fields
	if err := ListFields.Validate(&q); err != nil {
		f.Merge("", err)
	}
	status := q.Filters["status"]
	if status != "" && status != StatusActive && status != StatusCancelled {
		f.Add("status", "invalid", "status must be active or cancelled")
	}
	if err := f.Err(); err != nil {
		return nil, nil, err
	}
	prefix := p.ScopePath
	for _, name := range []string{"parent", "tenantId"} { // the narrower one last
		id := q.Filters[name]
		if id == "" {
			continue
		}
		e, err := s.Entities.GetEntity(ctx, id)
		if apperr.Is(err, apperr.NotFound) || (err == nil && (!p.Covers(e.Path) || (name == "tenantId" && e.Type != access.Tenant))) {
			return nil, nil, apperr.NotFoundf("No %s with this id.", map[string]string{"parent": "entity", "tenantId": "tenant"}[name])
		}
		if err != nil {
			return nil, nil, err
		}
		if len(e.Path) < len(prefix) || e.Path[:len(prefix)] != prefix {
			return []*Subscription{}, nil, nil // a tenant outside the parent filter: nothing matches both
		}
		prefix = e.Path
	}
	all, err := s.Store.ListSubscriptions(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	now := s.now()
	plan := q.Filters["planId"]
	all = slices.DeleteFunc(all, func(sub *Subscription) bool {
		return (plan != "" && sub.PlanID != plan) || (status != "" && sub.StatusAt(now) != status)
	})
	page, next := listing.Apply(ListFields, all, q, after)
	for i, sub := range page {
		if sub.due(now) { // record a cancellation that came due, once
			if page[i], err = s.settle(ctx, sub); err != nil {
				return nil, nil, err
			}
		}
	}
	return page, next, nil
}

var errUnchanged = errors.New("unchanged")

// update applies fn to the subscription with id, which the caller must be able to see, through
// the store; fn returning errUnchanged (or a nil change) leaves it as it is.
func (s *Service) update(ctx context.Context, p access.Principal, id string, fn func(*Subscription) (*Change, error)) (*Subscription, error) {
	cur, err := s.lookup(ctx, p, id)
	if err != nil {
		return nil, err
	}
	var unchanged *Subscription
	out, err := s.Store.UpdateSubscription(ctx, id, func(sub *Subscription) (*Change, error) {
		if sub.due(s.now()) {
			// Came due since lookup: settle first, then the caller sees a cancelled subscription.
			return nil, apperr.New(apperr.Conflict, "subscription_cancelled", "The subscription is cancelled.")
		}
		c, err := fn(sub)
		if errors.Is(err, errUnchanged) {
			unchanged = sub
			return nil, nil
		}
		return c, err
	})
	if apperr.Is(err, apperr.NotFound) {
		return nil, notFound()
	}
	if err != nil {
		if ae := apperr.As(err); ae.Code == "subscription_cancelled" && cur.CancelAt != nil {
			if _, serr := s.settle(ctx, cur); serr != nil {
				return nil, serr
			}
		}
		return nil, err
	}
	if unchanged != nil {
		return unchanged, nil
	}
	return out, nil
}

func cancelled() error {
	return apperr.New(apperr.Conflict, "subscription_cancelled", "The subscription is cancelled; it can no longer change.")
}

// Update changes the seats and/or the plan of an active subscription. A new plan must be
// published and in the same currency; a plan change emits customer.upgraded. A change to the
// values the subscription already has records nothing. Forbidden, Invalid, NotFound,
// Unprocessable, Conflict "subscription_cancelled".
func (s *Service) Update(ctx context.Context, p access.Principal, id string, in UpdateInput) (*Subscription, error) {
	if err := p.Require(access.SubscriptionsUpdate); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	cur, err := s.lookup(ctx, p, id)
	if err != nil {
		return nil, err
	}
	if cur.Status == StatusCancelled {
		return nil, cancelled()
	}
	if in.PlanID != nil && *in.PlanID != cur.PlanID {
		old, err := s.Plans.GetPlan(ctx, cur.PlanID)
		if err != nil {
			return nil, err
		}
		var f apperr.Fields
		if _, err := s.subscribable(ctx, p, &f, "planId", *in.PlanID, old.Currency); err != nil {
			return nil, err
		}
		if err := f.Unprocessable(); err != nil {
			return nil, err
		}
	}
	out, err := s.update(ctx, p, id, func(sub *Subscription) (*Change, error) {
		if sub.Status == StatusCancelled {
			return nil, cancelled()
		}
		now := s.now()
		before := sub.State()
		prevPlan := sub.PlanID
		if in.quantity != nil {
			sub.Quantity = *in.quantity
		}
		if in.PlanID != nil {
			sub.PlanID = *in.PlanID
		}
		if sub.PlanID == prevPlan && sub.Quantity.Equal(before.Quantity) {
			return nil, errUnchanged
		}
		sub.UpdatedAt = now
		c := &Change{History: HistoryEntry{ID: ids.New("hst"), At: now, Actor: p.UserID, Action: ActionUpdate, Before: before, After: sub.State()}}
		if sub.PlanID != prevPlan {
			ev, err := event(outbox.CustomerUpgraded, sub, now, EventDetail{PreviousPlanID: prevPlan, Actor: p.UserID})
			if err != nil {
				return nil, err
			}
			c.Events, c.PublishedPlan = []outbox.Event{ev}, sub.PlanID
		}
		return c, nil
	})
	if err := retiredMeanwhile(err); err != nil {
		return nil, err
	}
	return out, nil
}

// retiredMeanwhile turns the store's plan_not_published (the plan's condition failed at the
// write: the plan was retired between the service's check and the write, and nothing was
// written) into the field error the check would have given. Other errors pass unchanged.
func retiredMeanwhile(err error) error {
	if err != nil && apperr.As(err).Code == "plan_not_published" {
		var f apperr.Fields
		f.Add("planId", "plan_not_published", "the plan was retired meanwhile")
		return f.Unprocessable()
	}
	return err
}

// Cancel cancels a subscription now (at = "now" or "") or at the end of the current period
// (at = "period_end": it stays active until the first instant of the next period). It emits
// customer.cancelled. Scheduling the cancellation already scheduled changes nothing; cancelling
// now a subscription scheduled for period end cancels it now. Forbidden, Invalid, NotFound,
// Conflict "subscription_cancelled".
func (s *Service) Cancel(ctx context.Context, p access.Principal, id, at string) (*Subscription, error) {
	if err := p.Require(access.SubscriptionsCancel); err != nil {
		return nil, err
	}
	mode, err := validCancelMode(at)
	if err != nil {
		return nil, err
	}
	return s.update(ctx, p, id, func(sub *Subscription) (*Change, error) {
		if sub.Status == StatusCancelled {
			return nil, cancelled()
		}
		now := s.now()
		before := sub.State()
		c := &Change{History: HistoryEntry{ID: ids.New("hst"), At: now, Actor: p.UserID, Action: ActionCancel, Before: before}}
		switch mode {
		case CancelNow:
			end := now
			if sub.StartDate.After(now) {
				end = sub.StartDate // cancelled before it started: it never runs
			}
			sub.Status, sub.CancelAt, c.ActiveDelta = StatusCancelled, &end, -1
		case CancelPeriodEnd:
			end := period.Of(now).End()
			if sub.CancelAt != nil && sub.CancelAt.Equal(end) {
				return nil, errUnchanged
			}
			sub.CancelAt = &end
		}
		sub.UpdatedAt = now
		c.History.After = sub.State()
		ev, err := event(outbox.CustomerCancelled, sub, now, EventDetail{CancelAt: sub.CancelAt, Mode: mode, Actor: p.UserID})
		if err != nil {
			return nil, err
		}
		c.Events = []outbox.Event{ev}
		return c, nil
	})
}

// SetLicenseKey sets or replaces the license key of an active subscription. Forbidden, Invalid,
// NotFound, Conflict "subscription_cancelled".
func (s *Service) SetLicenseKey(ctx context.Context, p access.Principal, id string, in LicenseKeyInput) (*Subscription, error) {
	if err := p.Require(access.SubscriptionsLicense); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	return s.update(ctx, p, id, func(sub *Subscription) (*Change, error) {
		if sub.Status == StatusCancelled {
			return nil, cancelled()
		}
		if sub.LicenseKey != nil && *sub.LicenseKey == in.LicenseKey {
			return nil, errUnchanged
		}
		now := s.now()
		before := sub.State()
		k := in.LicenseKey
		sub.LicenseKey, sub.UpdatedAt = &k, now
		return &Change{History: HistoryEntry{ID: ids.New("hst"), At: now, Actor: p.UserID, Action: ActionLicenseKey, Before: before, After: sub.State()}}, nil
	})
}

// HistoryFields are the searchable and sortable fields of history entries.
var HistoryFields = listing.Fields[HistoryEntry]{
	ID: func(h HistoryEntry) string { return h.ID },
	Searchable: map[string]func(HistoryEntry) string{
		"seq":    func(h HistoryEntry) string { return fmt.Sprintf("%012d", h.Seq) },
		"at":     func(h HistoryEntry) string { return h.At.Format(listing.TimeLayout) },
		"action": func(h HistoryEntry) string { return h.Action },
		"actor":  func(h HistoryEntry) string { return h.Actor },
	},
	DefaultSort: "seq",
}

// History returns a page of the subscription's history, in the order it was recorded by default. Forbidden,
// Invalid, NotFound.
func (s *Service) History(ctx context.Context, p access.Principal, id string, q listing.Query, after *listing.Cursor) ([]HistoryEntry, *listing.Cursor, error) {
	if err := p.Require(access.SubscriptionsHistory); err != nil {
		return nil, nil, err
	}
	if err := HistoryFields.Validate(&q); err != nil {
		return nil, nil, err
	}
	if _, err := s.lookup(ctx, p, id); err != nil {
		return nil, nil, err
	}
	all, err := s.Store.History(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	page, next := listing.Apply(HistoryFields, all, q, after)
	return page, next, nil
}
