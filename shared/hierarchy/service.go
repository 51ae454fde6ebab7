package hierarchy

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/ids"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/period"
)

type perms struct {
	list, read, create, update, delete, suspend, markupsRead, markupsWrite access.Permission
}

var permsOf = map[access.EntityType]perms{
	access.Distributor: {access.DistributorsList, access.DistributorsRead, access.DistributorsCreate, access.DistributorsUpdate,
		access.DistributorsDelete, access.DistributorsSuspend, access.DistributorsMarkups, access.DistributorsMarkupsW},
	access.Partner: {access.PartnersList, access.PartnersRead, access.PartnersCreate, access.PartnersUpdate,
		access.PartnersDelete, access.PartnersSuspend, access.PartnersMarkups, access.PartnersMarkupsW},
	access.Tenant: {access.TenantsList, access.TenantsRead, access.TenantsCreate, access.TenantsUpdate,
		access.TenantsDelete, access.TenantsSuspend, "", ""},
}

var idPrefix = map[access.EntityType]string{access.Distributor: "dst", access.Partner: "prt", access.Tenant: "tnt"}

// Service applies the hierarchy rules for a caller. Every method checks the permission first
// (Forbidden), then the caller's subtree (NotFound for ids outside it).
type Service struct {
	Store Store
	// PlatformCurrency is the currency of the platform's list prices and the default of its
	// distributors and distributor-less partners.
	PlatformCurrency string
	Now              func() time.Time
	// BeforeDelete, when set, runs before an entity below the caller is deleted (after the
	// permission and subtree checks); its error aborts the delete. The wiring uses it to settle
	// subscription cancellations that have come due, so that the tenant's count of active
	// subscriptions, which the delete rule reads, is current.
	BeforeDelete func(ctx context.Context, e *Entity) error
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func notFound(t access.EntityType) error {
	return apperr.NotFoundf("No %s with this id.", t)
}

// lookup returns the entity of type t with id when it lies in the caller's subtree.
func (s *Service) lookup(ctx context.Context, p access.Principal, t access.EntityType, id string) (*Entity, error) {
	e, err := s.Store.GetEntity(ctx, id)
	if apperr.Is(err, apperr.NotFound) {
		return nil, notFound(t)
	}
	if err != nil {
		return nil, err
	}
	if e.Type != t || !p.Covers(e.Path) {
		return nil, notFound(t)
	}
	return e, nil
}

// NameRef sets ref's Name to the current name of the entity it points at, with one strongly
// consistent read. Names are never copied into the items that point at an entity (a rename
// would leave every copy stale), so an answer names its references when it is made. A ref
// whose entity no longer exists keeps an empty name rather than failing the answer it is part
// of. It returns the store's error otherwise.
func NameRef(ctx context.Context, st Store, ref *Ref) error {
	if ref == nil {
		return nil
	}
	e, err := st.GetEntity(ctx, ref.ID)
	switch {
	case apperr.Is(err, apperr.NotFound):
		ref.Name = ""
		return nil
	case err != nil:
		return err
	}
	ref.Name = e.Name
	return nil
}

// NameRefs names every ref (see NameRef) with one BatchGet of their distinct ids: a page of a
// list (at most 500 items) usually points at a few parents or scopes, and costs one query plus
// this one read whatever its size. It returns the store's error.
func NameRefs(ctx context.Context, st Store, refs []*Ref) error {
	var ids []string
	seen := map[string]bool{}
	for _, r := range refs {
		if r != nil && !seen[r.ID] {
			seen[r.ID] = true
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	got, err := st.GetEntities(ctx, ids)
	if err != nil {
		return err
	}
	for _, r := range refs {
		if r == nil {
			continue
		}
		r.Name = ""
		if e, ok := got[r.ID]; ok {
			r.Name = e.Name
		}
	}
	return nil
}

// named returns a function that passes on an entity with its parent's current name, or the
// error it was given, or the store's: s.named(ctx)(s.Store.UpdateEntity(...)).
func (s *Service) named(ctx context.Context) func(*Entity, error) (*Entity, error) {
	return func(e *Entity, err error) (*Entity, error) {
		if err != nil {
			return nil, err
		}
		if err := NameRef(ctx, s.Store, e.Parent); err != nil {
			return nil, err
		}
		return e, nil
	}
}

// Get returns the entity of type t with id, its parent named as it is now. Forbidden, NotFound.
func (s *Service) Get(ctx context.Context, p access.Principal, t access.EntityType, id string) (*Entity, error) {
	if err := p.Require(permsOf[t].read); err != nil {
		return nil, err
	}
	return s.named(ctx)(s.lookup(ctx, p, t, id))
}

// Resolve returns any entity in the caller's subtree, whatever its type (the platform included).
// NotFound.
func (s *Service) Resolve(ctx context.Context, p access.Principal, id string) (*Entity, error) {
	e, err := s.Store.GetEntity(ctx, id)
	if apperr.Is(err, apperr.NotFound) || (err == nil && !p.Covers(e.Path)) {
		return nil, apperr.NotFoundf("No entity with this id.")
	}
	return e, err
}

// ListFields are the searchable and sortable fields of entities.
var ListFields = listing.Fields[*Entity]{
	ID: func(e *Entity) string { return e.ID },
	Searchable: map[string]func(*Entity) string{
		"name":         func(e *Entity) string { return e.Name },
		"billingId":    func(e *Entity) string { return e.BillingID },
		"contactEmail": func(e *Entity) string { return e.ContactEmail },
		"status":       func(e *Entity) string { return e.Status },
		"createdAt":    func(e *Entity) string { return e.CreatedAt.Format(listing.TimeLayout) },
		"updatedAt":    func(e *Entity) string { return e.UpdatedAt.Format(listing.TimeLayout) },
	},
	DefaultSort: "createdAt",
}

// List returns a page of entities of type t in the caller's subtree, their parents named as
// they are now: one query of the subtree, then one BatchGet of the page's distinct parents.
// Filters: "parent" (an entity id: its whole subtree) and "status". Forbidden, Invalid,
// NotFound (parent).
func (s *Service) List(ctx context.Context, p access.Principal, t access.EntityType, q listing.Query, after *listing.Cursor) ([]*Entity, *listing.Cursor, error) {
	if err := p.Require(permsOf[t].list); err != nil {
		return nil, nil, err
	}
	var f apperr.Fields
	if err := ListFields.Validate(&q); err != nil {
		f.Merge("", err)
	}
	status := q.Filters["status"]
	if status != "" && status != StatusActive && status != StatusSuspended && status != StatusCancelled {
		f.Add("status", "invalid", "status must be active, suspended or cancelled")
	}
	if err := f.Err(); err != nil {
		return nil, nil, err
	}
	prefix := p.ScopePath
	if parent := q.Filters["parent"]; parent != "" {
		pe, err := s.Resolve(ctx, p, parent)
		if err != nil {
			return nil, nil, err
		}
		prefix = pe.Path
	}
	all, err := s.Store.ListSubtree(ctx, t, prefix)
	if err != nil {
		return nil, nil, err
	}
	if status != "" {
		all = slices.DeleteFunc(all, func(e *Entity) bool { return e.Status != status })
	}
	page, next := listing.Apply(ListFields, all, q, after)
	parents := make([]*Ref, len(page))
	for i, e := range page {
		parents[i] = e.Parent
	}
	if err := NameRefs(ctx, s.Store, parents); err != nil {
		return nil, nil, err
	}
	return page, next, nil
}

// Create makes a distributor, partner or tenant. Forbidden, Invalid, Unprocessable (parent),
// Conflict "billing_id_taken".
func (s *Service) Create(ctx context.Context, p access.Principal, t access.EntityType, in CreateInput) (*Entity, error) {
	if err := p.Require(permsOf[t].create); err != nil {
		return nil, err
	}
	if err := in.Validate(t); err != nil {
		return nil, err
	}
	parentRef := in.Parent
	if parentRef == nil {
		if p.ScopeType == access.Platform && t != access.Distributor {
			return nil, apperr.Field("parent", "required", "a platform admin must name the parent of a "+string(t))
		}
		parentRef = &ParentInput{Type: p.ScopeType, ID: p.ScopeID}
	}
	var f apperr.Fields
	parent, err := s.Store.GetEntity(ctx, parentRef.ID)
	switch {
	case apperr.Is(err, apperr.NotFound) || (err == nil && !p.Covers(parent.Path)):
		f.Add("parent.id", "not_found", "no such parent in your scope")
		return nil, f.Unprocessable()
	case err != nil:
		return nil, err
	}
	if parent.Type != parentRef.Type || !slices.Contains(ParentTypes[t], parent.Type) {
		f.Add("parent.type", "invalid", "a "+string(t)+" hangs under a "+joinTypes(ParentTypes[t]))
	}
	if parent.Type == access.Tenant || parent.Status == StatusCancelled {
		f.Add("parent.id", "invalid", "the parent cannot take children")
	}
	currency := parent.Currency
	if currency == "" {
		currency = s.PlatformCurrency
	}
	if in.Currency != "" && in.Currency != currency {
		f.Add("currency", "mismatch", "currency must be the parent's currency "+currency)
	}
	if err := f.Unprocessable(); err != nil {
		return nil, err
	}
	now := s.now()
	id := ids.New(idPrefix[t])
	e := &Entity{
		ID: id, Type: t, Name: in.Name, Status: StatusActive,
		Parent:    &Ref{Type: parent.Type, ID: parent.ID, Name: parent.Name},
		BillingID: in.BillingID, Currency: currency, ContactEmail: in.ContactEmail,
		CreatedAt: now, UpdatedAt: now, Path: access.PathOf(parent.Path, id),
	}
	zero := 0
	switch t {
	case access.Tenant:
		e.ContactName, e.Phone, e.BillingCycle = in.ContactName, in.Phone, "monthly"
		e.NbOfSubscriptions = &zero
	case access.Partner:
		e.Tier = in.Tier
		if e.Tier == "" {
			e.Tier = TierStandard
		}
		e.NbOfTenants = &zero
	default:
		e.NbOfTenants = &zero
	}
	for _, m := range in.Markups {
		e.Markups = append(e.Markups, Markup{Markup: string(m.Markup), StartDate: m.StartDate, CreatedAt: now, CreatedBy: p.UserID})
	}
	sortMarkups(e.Markups)
	if err := s.Store.CreateEntity(ctx, e); err != nil {
		if apperr.Is(err, apperr.NotFound) {
			return nil, apperr.New(apperr.Unprocessable, "parent_gone", "The parent was deleted meanwhile.")
		}
		return nil, err
	}
	return e, nil
}

func joinTypes(ts []access.EntityType) string {
	var s []string
	for _, t := range ts {
		s = append(s, string(t))
	}
	return strings.Join(s, " or ")
}

// Update changes the given fields. Forbidden, Invalid, NotFound, Unprocessable, Conflict.
func (s *Service) Update(ctx context.Context, p access.Principal, t access.EntityType, id string, in UpdateInput) (*Entity, error) {
	if err := p.Require(permsOf[t].update); err != nil {
		return nil, err
	}
	if err := in.Validate(t); err != nil {
		return nil, err
	}
	if _, err := s.lookup(ctx, p, t, id); err != nil {
		return nil, err
	}
	return s.named(ctx)(s.Store.UpdateEntity(ctx, id, func(e *Entity) error {
		set := func(dst *string, v *string) {
			if v != nil {
				*dst = *v
			}
		}
		if in.Currency != nil && *in.Currency != e.Currency {
			return apperr.Field("currency", "immutable", "the currency follows the parent and cannot be changed")
		}
		set(&e.Name, in.Name)
		set(&e.BillingID, in.BillingID)
		set(&e.ContactEmail, in.ContactEmail)
		set(&e.ContactName, in.ContactName)
		set(&e.Phone, in.Phone)
		set(&e.Tier, in.Tier)
		set(&e.BillingCycle, in.BillingCycle)
		e.UpdatedAt = s.now()
		return nil
	}))
}

// Delete removes an entity below the caller's scope. Forbidden (own scope), NotFound, Conflict
// "has_children".
func (s *Service) Delete(ctx context.Context, p access.Principal, t access.EntityType, id string) error {
	if err := p.Require(permsOf[t].delete); err != nil {
		return err
	}
	e, err := s.lookup(ctx, p, t, id)
	if err != nil {
		return err
	}
	if !p.Above(e.Path) {
		return apperr.New(apperr.Forbidden, "forbidden", "You cannot delete the entity you are scoped to.")
	}
	if s.BeforeDelete != nil {
		if err := s.BeforeDelete(ctx, e); err != nil {
			return err
		}
	}
	return s.Store.DeleteEntity(ctx, id)
}

// Suspend suspends or reinstates an entity below the caller's scope. Forbidden, Invalid,
// NotFound, Unprocessable (cancelled tenant).
func (s *Service) Suspend(ctx context.Context, p access.Principal, t access.EntityType, id string, in SuspensionInput) (*Entity, error) {
	if err := p.Require(permsOf[t].suspend); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	e, err := s.lookup(ctx, p, t, id)
	if err != nil {
		return nil, err
	}
	if !p.Above(e.Path) {
		return nil, apperr.New(apperr.Forbidden, "forbidden", "You cannot suspend the entity you are scoped to.")
	}
	return s.named(ctx)(s.Store.UpdateEntity(ctx, id, func(e *Entity) error {
		if e.Status == StatusCancelled {
			return apperr.New(apperr.Unprocessable, "cancelled", "A cancelled tenant cannot be suspended or reinstated.")
		}
		now := s.now()
		if *in.Suspended {
			e.Status = StatusSuspended
			e.Suspension = &Suspension{Reason: strings.TrimSpace(in.Reason), At: now, By: p.UserID}
		} else {
			e.Status = StatusActive
			e.Suspension = nil
		}
		e.UpdatedAt = now
		return nil
	}))
}

// Markups returns the markup history of a distributor or partner, newest first.
// Forbidden, NotFound.
func (s *Service) Markups(ctx context.Context, p access.Principal, t access.EntityType, id string) ([]Markup, error) {
	if err := p.Require(permsOf[t].markupsRead); err != nil {
		return nil, err
	}
	e, err := s.lookup(ctx, p, t, id)
	if err != nil {
		return nil, err
	}
	return e.Markups, nil
}

// AddMarkup adds an entry to the markup history of an entity below the caller's scope. It takes
// effect from the first period that starts on or after its start date (SPEC 8.3). A start date
// before the current period's first day is refused (Invalid "in_past"): a period that has ended
// may be invoiced and keeps the markup it was billed with. A start date on the current period's
// first day is accepted and, by that rule, applies to the running period too (docs/catalog.md).
// Forbidden, Invalid, NotFound, Unprocessable.
func (s *Service) AddMarkup(ctx context.Context, p access.Principal, t access.EntityType, id string, in MarkupInput) (*Entity, error) {
	if err := p.Require(permsOf[t].markupsWrite); err != nil {
		return nil, err
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	e, err := s.lookup(ctx, p, t, id)
	if err != nil {
		return nil, err
	}
	if !p.Above(e.Path) {
		return nil, apperr.New(apperr.Forbidden, "forbidden", "Your own markup is set by your parent.")
	}
	now := s.now()
	periodStart := period.Of(now).FirstDay()
	if in.StartDate < periodStart {
		return nil, apperr.Field("startDate", "in_past", "startDate must not fall before the current period ("+periodStart+")")
	}
	return s.named(ctx)(s.Store.UpdateEntity(ctx, id, func(e *Entity) error {
		// In front, so that the stable sort puts it before an entry with the same start date and
		// the same recording time: the later write wins even when the clock did not move.
		e.Markups = append([]Markup{{Markup: string(in.Markup), StartDate: in.StartDate, CreatedAt: now, CreatedBy: p.UserID}}, e.Markups...)
		sortMarkups(e.Markups)
		e.UpdatedAt = now
		return nil
	}))
}

// sortMarkups orders a history newest first: by start date, then by when it was recorded.
func sortMarkups(ms []Markup) {
	slices.SortStableFunc(ms, func(a, b Markup) int {
		if c := strings.Compare(b.StartDate, a.StartDate); c != 0 {
			return c
		}
		return b.CreatedAt.Compare(a.CreatedAt)
	})
}
