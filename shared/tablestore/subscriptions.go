package tablestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/catalog"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/money"
	"github.com/channelbilling/cms/shared/period"
	"github.com/channelbilling/cms/shared/subscriptions"
)

// subItem is a subscription: PK SUB#<id>, SK SUB; GSI1 SUB / <tenant path><id>, so that the
// subscriptions of any subtree are one begins_with query.
type subItem struct {
	PK, SK         string
	GSI1PK, GSI1SK string
	Kind           string
	ID             string
	TenantID       string
	TenantPath     string
	PlanID         string
	Quantity       string
	Status         string
	StartDate      time.Time
	CancelAt       *time.Time `dynamo:",omitempty"`
	LicenseKey     *string    `dynamo:",omitempty"`
	CreatedAt      time.Time
	UpdatedAt      time.Time
	Version        int64
}

// historyItem is one change of a subscription, in the subscription's partition:
// PK SUB#<id>, SK HIST#<seq, 12 digits>: one item per version of the subscription, so two
// changes can never claim one entry. Before and After are JSON snapshots.
type historyItem struct {
	PK, SK         string
	Kind           string
	ID             string
	Seq            int64
	SubscriptionID string
	At             time.Time
	Actor          string
	Action         string
	Before         string `dynamo:",omitempty"`
	After          string `dynamo:",omitempty"`
}

const subSK = "SUB"

func subPK(id string) string { return "SUB#" + id }

func toSubItem(s *subscriptions.Subscription) subItem {
	return subItem{PK: subPK(s.ID), SK: subSK, GSI1PK: "SUB", GSI1SK: s.TenantPath + s.ID, Kind: "subscription",
		ID: s.ID, TenantID: s.TenantID, TenantPath: s.TenantPath, PlanID: s.PlanID, Quantity: s.Quantity.String(),
		Status: s.Status, StartDate: s.StartDate, CancelAt: s.CancelAt, LicenseKey: s.LicenseKey,
		CreatedAt: s.CreatedAt, UpdatedAt: s.UpdatedAt, Version: s.Version}
}

func (it subItem) subscription() (*subscriptions.Subscription, error) {
	q, err := money.Parse(it.Quantity)
	if err != nil {
		return nil, fmt.Errorf("subscription %s quantity: %w", it.ID, err)
	}
	return &subscriptions.Subscription{ID: it.ID, TenantID: it.TenantID, TenantPath: it.TenantPath, PlanID: it.PlanID,
		Quantity: q, Status: it.Status, StartDate: it.StartDate, CancelAt: it.CancelAt, LicenseKey: it.LicenseKey,
		CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt, Version: it.Version}, nil
}

func historyPut(t dynamo.Table, subID string, h subscriptions.HistoryEntry) (*dynamo.Put, error) {
	it := historyItem{PK: subPK(subID), SK: fmt.Sprintf("HIST#%012d", h.Seq), Kind: "subhistory",
		ID: h.ID, Seq: h.Seq, SubscriptionID: subID, At: h.At, Actor: h.Actor, Action: h.Action}
	var err error
	if it.Before, err = encodeState(h.Before); err != nil {
		return nil, err
	}
	if it.After, err = encodeState(h.After); err != nil {
		return nil, err
	}
	return t.Put(it).If("attribute_not_exists(PK)"), nil
}

func encodeState(st *subscriptions.State) (string, error) {
	if st == nil {
		return "", nil
	}
	b, err := json.Marshal(st)
	return string(b), err
}

func decodeState(s string) (*subscriptions.State, error) {
	if s == "" {
		return nil, nil
	}
	var st subscriptions.State
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// planPublished checks, inside a transaction, that a plan is still published.
func (s *Store) planPublished(id string) *dynamo.ConditionCheck {
	return s.table.Check("PK", planPK(id)).Range("SK", planSK).If("'Status' = ?", catalog.PlanPublished)
}

// CreateSubscription implements subscriptions.Store.
func (s *Store) CreateSubscription(ctx context.Context, sub *subscriptions.Subscription, c subscriptions.Change, tenantSubs int) error {
	sub.Version = 1
	c.History.Seq = sub.Version
	hist, err := historyPut(s.table, sub.ID, c.History)
	if err != nil {
		return apperr.Wrap(err, "encode history")
	}
	// The tenant must still take subscriptions starting in this period; the counter condition
	// makes "first subscription" (customer.created) an atomic decision.
	cond := "attribute_exists(PK) AND 'Status' <> ? AND (attribute_not_exists('InvoicedThrough') OR 'InvoicedThrough' < ?)"
	args := []any{hierarchy.StatusCancelled, period.Of(sub.StartDate).String()}
	if tenantSubs >= 0 {
		cond += " AND 'Subscriptions' = ?"
		args = append(args, tenantSubs)
	}
	tenant := s.table.Update("PK", entityPK(sub.TenantID)).Range("SK", entitySK).
		Add("Subscriptions", 1).Add("ActiveSubs", c.ActiveDelta).If(cond, args...)
	tx := s.db.WriteTx().
		Put(s.table.Put(toSubItem(sub)).If("attribute_not_exists(PK)")).
		Put(hist).
		Update(tenant)
	planAt := -1
	if c.PublishedPlan != "" {
		planAt = 3
		tx.Check(s.planPublished(c.PublishedPlan))
	}
	for _, e := range c.Events {
		tx.Put(eventPut(s.table, e))
	}
	err = tx.Run(ctx)
	failed := failedAt(err)
	switch {
	case err == nil:
		return nil
	case failed[2] || isTxConflict(err):
		return apperr.New(apperr.Conflict, "tenant_changed", "The tenant changed meanwhile; retry.")
	case failed[planAt]:
		return apperr.New(apperr.Unprocessable, "plan_not_published", "The plan is no longer published.")
	}
	return apperr.Wrap(err, "create subscription")
}

// GetSubscription implements subscriptions.Store.
func (s *Store) GetSubscription(ctx context.Context, id string) (*subscriptions.Subscription, error) {
	var it subItem
	err := s.table.Get("PK", subPK(id)).Range("SK", dynamo.Equal, subSK).Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.NotFoundf("No subscription with this id.")
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get subscription")
	}
	sub, err := it.subscription()
	return sub, apperr.Wrap(err, "decode subscription")
}

// ListSubscriptions implements subscriptions.Store: one query on GSI1 (SUB, begins_with path).
func (s *Store) ListSubscriptions(ctx context.Context, prefix string) ([]*subscriptions.Subscription, error) {
	var items []subItem
	err := s.table.Get("GSI1PK", "SUB").Index(GSI1).Range("GSI1SK", dynamo.BeginsWith, prefix).All(ctx, &items)
	if err != nil {
		return nil, apperr.Wrap(err, "list subscriptions")
	}
	out := make([]*subscriptions.Subscription, 0, len(items))
	for _, it := range items {
		sub, err := it.subscription()
		if err != nil {
			return nil, apperr.Wrap(err, "decode subscription")
		}
		out = append(out, sub)
	}
	return out, nil
}

// UpdateSubscription implements subscriptions.Store. The subscription item carries no counters,
// so it is written whole under a version condition, with its history entry, the tenant's counter
// and the events in the same transaction.
func (s *Store) UpdateSubscription(ctx context.Context, id string, fn func(*subscriptions.Subscription) (*subscriptions.Change, error)) (*subscriptions.Subscription, error) {
	for range 4 {
		cur, err := s.GetSubscription(ctx, id)
		if err != nil {
			return nil, err
		}
		next := *cur
		c, err := fn(&next)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return cur, nil
		}
		next.Version = cur.Version + 1
		c.History.Seq = next.Version
		hist, err := historyPut(s.table, id, c.History)
		if err != nil {
			return nil, apperr.Wrap(err, "encode history")
		}
		tx := s.db.WriteTx().
			Put(s.table.Put(toSubItem(&next)).If("'Version' = ?", cur.Version)).
			Put(hist)
		n := 2
		if c.ActiveDelta != 0 {
			tx.Update(s.table.Update("PK", entityPK(next.TenantID)).Range("SK", entitySK).Add("ActiveSubs", c.ActiveDelta).If("attribute_exists(PK)"))
			n++
		}
		planAt := -1
		if c.PublishedPlan != "" {
			planAt = n
			tx.Check(s.planPublished(c.PublishedPlan))
		}
		for _, e := range c.Events {
			tx.Put(eventPut(s.table, e))
		}
		err = tx.Run(ctx)
		failed := failedAt(err)
		switch {
		case err == nil:
			return &next, nil
		case failed[planAt]:
			return nil, apperr.New(apperr.Unprocessable, "plan_not_published", "The plan is no longer published.")
		case failed[0] || isTxConflict(err):
			continue
		}
		return nil, apperr.Wrap(err, "update subscription")
	}
	return nil, concurrent("subscription")
}

// History implements subscriptions.Store: one query on the subscription's partition.
func (s *Store) History(ctx context.Context, id string) ([]subscriptions.HistoryEntry, error) {
	var items []historyItem
	err := s.table.Get("PK", subPK(id)).Range("SK", dynamo.BeginsWith, "HIST#").Consistent(true).All(ctx, &items)
	if err != nil {
		return nil, apperr.Wrap(err, "subscription history")
	}
	out := make([]subscriptions.HistoryEntry, 0, len(items))
	for _, it := range items {
		h := subscriptions.HistoryEntry{ID: it.ID, Seq: it.Seq, At: it.At, Actor: it.Actor, Action: it.Action}
		var err error
		if h.Before, err = decodeState(it.Before); err != nil {
			return nil, apperr.Wrap(err, "decode history")
		}
		if h.After, err = decodeState(it.After); err != nil {
			return nil, apperr.Wrap(err, "decode history")
		}
		out = append(out, h)
	}
	return out, nil
}

var _ subscriptions.Store = (*Store)(nil)
