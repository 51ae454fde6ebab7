package tablestore

import (
	"context"
	"errors"
	"time"

	"github.com/guregu/dynamo/v2"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/hierarchy"
)

type markupItem struct {
	Markup    string
	StartDate string
	CreatedAt time.Time
	CreatedBy string `dynamo:",omitempty"`
}

// entityItem is a hierarchy entity: PK ENT#<id>, SK ENT; GSI1 ENT#<type> / path. It keeps its
// parent's type and id, never its name: the service names the parent when it answers
// (hierarchy.NameRefs), so a rename shows at once under every child.
type entityItem struct {
	PK, SK         string
	GSI1PK, GSI1SK string
	Kind           string
	ID             string
	Type           string
	Name           string
	Status         string
	ParentType     string `dynamo:",omitempty"`
	ParentID       string `dynamo:",omitempty"`
	Path           string
	BillingID      string       `dynamo:",omitempty"`
	Currency       string       `dynamo:",omitempty"`
	ContactEmail   string       `dynamo:",omitempty"`
	ContactName    string       `dynamo:",omitempty"`
	Phone          string       `dynamo:",omitempty"`
	Tier           string       `dynamo:",omitempty"`
	BillingCycle   string       `dynamo:",omitempty"`
	Markups        []markupItem `dynamo:",omitempty"`
	SuspReason     string       `dynamo:",omitempty"`
	SuspAt         *time.Time   `dynamo:",omitempty"`
	SuspBy         string       `dynamo:",omitempty"`
	Children       int
	Users          int
	ActiveSubs     int
	Tenants        int
	Subscriptions  int
	// InvoicedThrough is written by billing only (see hierarchy.Entity.InvoicedThrough).
	InvoicedThrough string `dynamo:",omitempty"`
	CreatedAt       time.Time
	UpdatedAt       time.Time
	Version         int64
}

// billingItem reserves a billingId: PK BILLINGID#<billingId>, SK BILLINGID.
type billingItem struct {
	PK, SK   string
	Kind     string
	EntityID string
}

func entityPK(id string) string { return "ENT#" + id }

const entitySK = "ENT"

func entityGSI(t access.EntityType) string { return "ENT#" + string(t) }

func billingPK(id string) string { return "BILLINGID#" + id }

func toEntityItem(e *hierarchy.Entity) entityItem {
	it := entityItem{
		PK: entityPK(e.ID), SK: entitySK, GSI1PK: entityGSI(e.Type), GSI1SK: e.Path, Kind: "entity",
		ID: e.ID, Type: string(e.Type), Name: e.Name, Status: e.Status, Path: e.Path,
		BillingID: e.BillingID, Currency: e.Currency, ContactEmail: e.ContactEmail, ContactName: e.ContactName,
		Phone: e.Phone, Tier: e.Tier, BillingCycle: e.BillingCycle,
		Children: e.Children, Users: e.Users, ActiveSubs: e.ActiveSubscriptions, InvoicedThrough: e.InvoicedThrough,
		CreatedAt: e.CreatedAt, UpdatedAt: e.UpdatedAt, Version: e.Version,
	}
	if e.Parent != nil {
		it.ParentType, it.ParentID = string(e.Parent.Type), e.Parent.ID
	}
	it.Markups = toMarkupItems(e.Markups)
	if e.Suspension != nil {
		at := e.Suspension.At
		it.SuspReason, it.SuspAt, it.SuspBy = e.Suspension.Reason, &at, e.Suspension.By
	}
	if e.NbOfTenants != nil {
		it.Tenants = *e.NbOfTenants
	}
	if e.NbOfSubscriptions != nil {
		it.Subscriptions = *e.NbOfSubscriptions
	}
	return it
}

func toMarkupItems(ms []hierarchy.Markup) []markupItem {
	var out []markupItem
	for _, m := range ms {
		out = append(out, markupItem(m))
	}
	return out
}

func (it entityItem) entity() *hierarchy.Entity {
	e := &hierarchy.Entity{
		ID: it.ID, Type: access.EntityType(it.Type), Name: it.Name, Status: it.Status, Path: it.Path,
		BillingID: it.BillingID, Currency: it.Currency, ContactEmail: it.ContactEmail, ContactName: it.ContactName,
		Phone: it.Phone, Tier: it.Tier, BillingCycle: it.BillingCycle,
		Children: it.Children, Users: it.Users, ActiveSubscriptions: it.ActiveSubs, InvoicedThrough: it.InvoicedThrough,
		CreatedAt: it.CreatedAt, UpdatedAt: it.UpdatedAt, Version: it.Version,
	}
	if it.ParentID != "" {
		e.Parent = &hierarchy.Ref{Type: access.EntityType(it.ParentType), ID: it.ParentID}
	}
	for _, m := range it.Markups {
		e.Markups = append(e.Markups, hierarchy.Markup(m))
	}
	if it.SuspAt != nil {
		e.Suspension = &hierarchy.Suspension{Reason: it.SuspReason, At: *it.SuspAt, By: it.SuspBy}
	}
	if e.Type == access.Tenant {
		n := it.Subscriptions
		e.NbOfSubscriptions = &n
	} else {
		n := it.Tenants
		e.NbOfTenants = &n
	}
	return e
}

// ancestorsAbove returns the ids on path above the parent (the parent itself excluded).
func ancestorsAbove(path string) []string {
	ids := access.IDsOnPath(path)
	if len(ids) < 2 {
		return nil
	}
	return ids[:len(ids)-2]
}

// CreateEntity implements hierarchy.Store.
func (s *Store) CreateEntity(ctx context.Context, e *hierarchy.Entity) error {
	e.Version = 1
	tx := s.db.WriteTx()
	tx.Put(s.table.Put(toEntityItem(e)).If("attribute_not_exists(PK)"))
	billingAt := -1
	if e.BillingID != "" {
		billingAt = 1
		tx.Put(s.table.Put(billingItem{PK: billingPK(e.BillingID), SK: "BILLINGID", Kind: "billingid", EntityID: e.ID}).If("attribute_not_exists(PK)"))
	}
	parentAt := 1
	if billingAt >= 0 {
		parentAt = 2
	}
	parent := s.table.Update("PK", entityPK(e.Parent.ID)).Range("SK", entitySK).Add("Children", 1).If("attribute_exists(PK)")
	if e.Type == access.Tenant {
		parent.Add("Tenants", 1)
	}
	tx.Update(parent)
	if e.Type == access.Tenant {
		for _, id := range ancestorsAbove(e.Path) {
			tx.Update(s.table.Update("PK", entityPK(id)).Range("SK", entitySK).Add("Tenants", 1))
		}
	}
	err := tx.Run(ctx)
	failed := failedAt(err)
	switch {
	case err == nil:
		return nil
	case failed[billingAt]:
		return billingTaken()
	case failed[parentAt]:
		return apperr.NotFoundf("The parent no longer exists.")
	case isTxConflict(err):
		return apperr.New(apperr.Conflict, "concurrent_update", "Another change touched the same records; retry.")
	}
	return apperr.Wrap(err, "create entity")
}

func billingTaken() error {
	var f apperr.Fields
	f.Add("billingId", "taken", "this billingId is already used by another entity")
	ae := apperr.As(f.Err())
	ae.Kind, ae.Code, ae.Message = apperr.Conflict, "billing_id_taken", "The billingId is already in use."
	return ae
}

// GetEntity implements hierarchy.Store.
func (s *Store) GetEntity(ctx context.Context, id string) (*hierarchy.Entity, error) {
	var it entityItem
	err := s.table.Get("PK", entityPK(id)).Range("SK", dynamo.Equal, entitySK).Consistent(true).One(ctx, &it)
	if errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.NotFoundf("No entity with this id.")
	}
	if err != nil {
		return nil, apperr.Wrap(err, "get entity")
	}
	return it.entity(), nil
}

// GetEntities implements hierarchy.Store.
func (s *Store) GetEntities(ctx context.Context, ids []string) (map[string]*hierarchy.Entity, error) {
	out := map[string]*hierarchy.Entity{}
	if len(ids) == 0 {
		return out, nil
	}
	seen := map[string]bool{}
	var ks []dynamo.Keyed
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			ks = append(ks, dynamo.Keys{entityPK(id), entitySK})
		}
	}
	var items []entityItem
	err := s.table.Batch("PK", "SK").Get(ks...).All(ctx, &items)
	if err != nil && !errors.Is(err, dynamo.ErrNotFound) {
		return nil, apperr.Wrap(err, "get entities")
	}
	for _, it := range items {
		out[it.ID] = it.entity()
	}
	return out, nil
}

// UpdateEntity implements hierarchy.Store. Only the fields a caller may change are written, so
// the counters that transactions keep on the item are never overwritten.
func (s *Store) UpdateEntity(ctx context.Context, id string, fn func(*hierarchy.Entity) error) (*hierarchy.Entity, error) {
	for attempt := 0; attempt < 4; attempt++ {
		cur, err := s.GetEntity(ctx, id)
		if err != nil {
			return nil, err
		}
		next := *cur
		next.Markups = append([]hierarchy.Markup(nil), cur.Markups...)
		if err := fn(&next); err != nil {
			return nil, err
		}
		next.Version = cur.Version + 1
		it := toEntityItem(&next)
		up := s.table.Update("PK", entityPK(id)).Range("SK", entitySK).
			Set("Name", it.Name).Set("Status", it.Status).Set("UpdatedAt", it.UpdatedAt).Set("Version", it.Version).
			If("'Version' = ?", cur.Version)
		setOrRemove(up, "BillingID", it.BillingID)
		setOrRemove(up, "ContactEmail", it.ContactEmail)
		setOrRemove(up, "ContactName", it.ContactName)
		setOrRemove(up, "Phone", it.Phone)
		setOrRemove(up, "Tier", it.Tier)
		setOrRemove(up, "BillingCycle", it.BillingCycle)
		setOrRemove(up, "SuspReason", it.SuspReason)
		setOrRemove(up, "SuspBy", it.SuspBy)
		if it.SuspAt != nil {
			up.Set("SuspAt", *it.SuspAt)
		} else {
			up.Remove("SuspAt")
		}
		if len(it.Markups) > 0 {
			up.Set("Markups", it.Markups)
		} else {
			up.Remove("Markups")
		}
		tx := s.db.WriteTx().Update(up)
		billingAt := -1
		if next.BillingID != cur.BillingID {
			if cur.BillingID != "" {
				tx.Delete(s.table.Delete("PK", billingPK(cur.BillingID)).Range("SK", "BILLINGID").If("'EntityID' = ?", id))
			}
			if next.BillingID != "" {
				billingAt = 1
				if cur.BillingID != "" {
					billingAt = 2
				}
				tx.Put(s.table.Put(billingItem{PK: billingPK(next.BillingID), SK: "BILLINGID", Kind: "billingid", EntityID: id}).If("attribute_not_exists(PK)"))
			}
		}
		err = tx.Run(ctx)
		failed := failedAt(err)
		switch {
		case err == nil:
			return &next, nil
		case failed[billingAt]:
			return nil, billingTaken()
		case failed[0] || isTxConflict(err):
			continue // someone else changed it: read again and reapply
		}
		return nil, apperr.Wrap(err, "update entity")
	}
	return nil, apperr.New(apperr.Conflict, "concurrent_update", "The entity is being changed by someone else; retry.")
}

func setOrRemove(u *dynamo.Update, attr, v string) {
	if v == "" {
		u.Remove(attr)
	} else {
		u.Set(attr, v)
	}
}

// DeleteEntity implements hierarchy.Store.
func (s *Store) DeleteEntity(ctx context.Context, id string) error {
	e, err := s.GetEntity(ctx, id)
	if err != nil {
		return err
	}
	if e.Children > 0 || e.Users > 0 || e.ActiveSubscriptions > 0 {
		return hasChildren(e)
	}
	tx := s.db.WriteTx()
	tx.Delete(s.table.Delete("PK", entityPK(id)).Range("SK", entitySK).
		If("'Children' = ? AND 'Users' = ? AND 'ActiveSubs' = ? AND 'Version' = ?", 0, 0, 0, e.Version))
	if e.BillingID != "" {
		tx.Delete(s.table.Delete("PK", billingPK(e.BillingID)).Range("SK", "BILLINGID").If("'EntityID' = ?", id))
	}
	parent := s.table.Update("PK", entityPK(e.Parent.ID)).Range("SK", entitySK).Add("Children", -1)
	if e.Type == access.Tenant {
		parent.Add("Tenants", -1)
		for _, a := range ancestorsAbove(e.Path) {
			tx.Update(s.table.Update("PK", entityPK(a)).Range("SK", entitySK).Add("Tenants", -1))
		}
	}
	tx.Update(parent)
	err = tx.Run(ctx)
	if failedAt(err)[0] || isTxConflict(err) {
		cur, gerr := s.GetEntity(ctx, id)
		if gerr != nil {
			return gerr
		}
		return hasChildren(cur)
	}
	return apperr.Wrap(err, "delete entity")
}

func hasChildren(e *hierarchy.Entity) error {
	switch {
	case e.Children > 0:
		return apperr.New(apperr.Conflict, "has_children", "The entity still has children; delete them first.")
	case e.Users > 0:
		return apperr.New(apperr.Conflict, "has_users", "The entity still has users; delete them first.")
	case e.ActiveSubscriptions > 0:
		return apperr.New(apperr.Conflict, "has_subscriptions", "The tenant still has active subscriptions; cancel them first.")
	}
	return apperr.New(apperr.Conflict, "concurrent_update", "The entity changed meanwhile; retry.")
}

// ListSubtree implements hierarchy.Store: one query on GSI1 (ENT#<type>, begins_with path).
func (s *Store) ListSubtree(ctx context.Context, t access.EntityType, prefix string) ([]*hierarchy.Entity, error) {
	var items []entityItem
	err := s.table.Get("GSI1PK", entityGSI(t)).Index(GSI1).Range("GSI1SK", dynamo.BeginsWith, prefix).All(ctx, &items)
	if err != nil {
		return nil, apperr.Wrap(err, "list entities")
	}
	out := make([]*hierarchy.Entity, 0, len(items))
	for _, it := range items {
		out = append(out, it.entity())
	}
	return out, nil
}

// EnsurePlatform creates the platform entity when it does not exist yet.
func (s *Store) EnsurePlatform(ctx context.Context, name, currency string, now time.Time) error {
	e := &hierarchy.Entity{ID: access.PlatformID, Type: access.Platform, Name: name, Status: hierarchy.StatusActive,
		Currency: currency, Path: access.PlatformPath, CreatedAt: now, UpdatedAt: now, Version: 1}
	err := s.table.Put(toEntityItem(e)).If("attribute_not_exists(PK)").Run(ctx)
	if err != nil && !dynamo.IsCondCheckFailed(err) {
		return apperr.Wrap(err, "create platform")
	}
	return nil
}
