// Package access holds the roles, their permissions and the caller (Principal) with its subtree.
// It is the single place that says who may do what; handlers ask it, they never decide alone.
package access

import (
	"github.com/channelbilling/cms/shared/apperr"
	"slices"
	"sort"
	"strings"
)

// EntityType is a level of the channel hierarchy.
type EntityType string

// The levels of the hierarchy, top to bottom.
const (
	Platform    EntityType = "platform"
	Distributor EntityType = "distributor"
	Partner     EntityType = "partner"
	Tenant      EntityType = "tenant"
)

// PlatformID is the id of the one platform entity of a deployment.
const PlatformID = "platform"

// PlatformPath is the path of the platform entity; every other path starts with it.
const PlatformPath = "/platform/"

// Depth returns the level of t: platform 0, distributor 1, partner 2, tenant 3, -1 when unknown.
func (t EntityType) Depth() int {
	switch t {
	case Platform:
		return 0
	case Distributor:
		return 1
	case Partner:
		return 2
	case Tenant:
		return 3
	}
	return -1
}

// Permission is a "resource.action" string that a route requires.
type Permission string

// The permissions. Each route requires exactly one.
const (
	DistributorsList     Permission = "distributors.list"
	DistributorsRead     Permission = "distributors.instance.read"
	DistributorsCreate   Permission = "distributors.create"
	DistributorsUpdate   Permission = "distributors.instance.update"
	DistributorsDelete   Permission = "distributors.instance.delete"
	DistributorsSuspend  Permission = "distributors.instance.suspend"
	DistributorsMarkups  Permission = "distributors.markups.read"
	DistributorsMarkupsW Permission = "distributors.markups.create"

	PartnersList     Permission = "partners.list"
	PartnersRead     Permission = "partners.instance.read"
	PartnersCreate   Permission = "partners.create"
	PartnersUpdate   Permission = "partners.instance.update"
	PartnersDelete   Permission = "partners.instance.delete"
	PartnersSuspend  Permission = "partners.instance.suspend"
	PartnersMarkups  Permission = "partners.markups.read"
	PartnersMarkupsW Permission = "partners.markups.create"

	TenantsList    Permission = "tenants.list"
	TenantsRead    Permission = "tenants.instance.read"
	TenantsCreate  Permission = "tenants.create"
	TenantsUpdate  Permission = "tenants.instance.update"
	TenantsDelete  Permission = "tenants.instance.delete"
	TenantsSuspend Permission = "tenants.instance.suspend"

	UsersList    Permission = "users.list"
	UsersRead    Permission = "users.instance.read"
	UsersCreate  Permission = "users.create"
	UsersUpdate  Permission = "users.instance.update"
	UsersDelete  Permission = "users.instance.delete"
	UsersWelcome Permission = "users.instance.welcome"

	RolesList   Permission = "roles.list"
	RolesAssign Permission = "roles.assign"

	PricingList   Permission = "pricing.list"
	PricingRead   Permission = "pricing.instance.read"
	PricingCreate Permission = "pricing.create"
	PricingUpdate Permission = "pricing.instance.update"
	PricingDelete Permission = "pricing.instance.delete"

	PlansList    Permission = "plans.list"
	PlansRead    Permission = "plans.instance.read"
	PlansCreate  Permission = "plans.create"
	PlansUpdate  Permission = "plans.instance.update"
	PlansDelete  Permission = "plans.instance.delete"
	PlansPublish Permission = "plans.instance.publish"
	PlansRetire  Permission = "plans.instance.retire"

	PriceListsRead  Permission = "pricelists.read"
	PriceListsWrite Permission = "pricelists.overrides.write"

	SubscriptionsList    Permission = "subscriptions.list"
	SubscriptionsRead    Permission = "subscriptions.instance.read"
	SubscriptionsCreate  Permission = "subscriptions.create"
	SubscriptionsUpdate  Permission = "subscriptions.instance.update"
	SubscriptionsCancel  Permission = "subscriptions.instance.cancel"
	SubscriptionsLicense Permission = "subscriptions.instance.license"
	SubscriptionsHistory Permission = "subscriptions.instance.history"

	// UsageIngest pushes usage records (POST /usage) for tenants in the caller's subtree.
	UsageIngest Permission = "usage.ingest"
	// UsageRead reads the period's usage totals and charges (GET /usage) in the subtree.
	UsageRead Permission = "usage.read"

	// BillingRunsCreate starts a billing run (platform admins only).
	BillingRunsCreate Permission = "billing.runs.create"
	// BillingRunsRead reads a billing run's progress (callers scoped at the platform).
	BillingRunsRead Permission = "billing.runs.read"
	// BillingSummaryRead totals the invoices of a tenant, subscription or subtree.
	BillingSummaryRead Permission = "billing.summary.read"
	// InvoicesList and InvoicesRead list and read the invoices of the subtree.
	InvoicesList Permission = "invoices.list"
	InvoicesRead Permission = "invoices.instance.read"
	// CommissionsRead reads the commissions of the distributors and partners of the subtree.
	CommissionsRead Permission = "commissions.read"
)

// Role is a named set of permissions held at one scope entity.
type Role string

// The roles.
const (
	PlatformAdmin     Role = "platform_admin"
	PlatformViewer    Role = "platform_viewer"
	DistributorAdmin  Role = "distributor_admin"
	DistributorViewer Role = "distributor_viewer"
	PartnerAdmin      Role = "partner_admin"
	PartnerViewer     Role = "partner_viewer"
	TenantAdmin       Role = "tenant_admin"
	TenantViewer      Role = "tenant_viewer"
	Finance           Role = "finance"
)

// RoleDef describes a role: the entity types it may be held at and its permissions.
// PermissionsAt says what it grants at each of those types (see Role.PermissionsAt).
type RoleDef struct {
	Name          Role                        `json:"name"`
	Description   string                      `json:"description"`
	ScopeTypes    []EntityType                `json:"scopeTypes"`
	Permissions   []Permission                `json:"permissions"`
	PermissionsAt map[EntityType][]Permission `json:"permissionsAt"`
}

var (
	hierarchyRead = []Permission{
		DistributorsList, DistributorsRead, DistributorsMarkups,
		PartnersList, PartnersRead, PartnersMarkups,
		TenantsList, TenantsRead,
	}
	usersRead  = []Permission{UsersList, UsersRead, RolesList}
	usersWrite = []Permission{UsersCreate, UsersUpdate, UsersDelete, UsersWelcome, RolesAssign}
	channel    = []EntityType{Platform, Distributor, Partner}
	partnerW   = []Permission{PartnersCreate, PartnersUpdate, PartnersDelete, PartnersSuspend, PartnersMarkupsW}
	tenantW    = []Permission{TenantsCreate, TenantsUpdate, TenantsDelete, TenantsSuspend}
	distW      = []Permission{DistributorsCreate, DistributorsUpdate, DistributorsDelete, DistributorsSuspend, DistributorsMarkupsW}
	// Everyone may read the catalog: partners and tenants choose plans from it.
	catalogRead  = []Permission{PricingList, PricingRead, PlansList, PlansRead}
	catalogWrite = []Permission{PricingCreate, PricingUpdate, PricingDelete, PlansCreate, PlansUpdate, PlansDelete, PlansPublish, PlansRetire}
	subsRead     = []Permission{SubscriptionsList, SubscriptionsRead, SubscriptionsHistory}
	subsWrite    = []Permission{SubscriptionsCreate, SubscriptionsUpdate, SubscriptionsCancel, SubscriptionsLicense}
	// Usage: every role reads its subtree's usage; the platform and the channel admins push it.
	usageRead  = []Permission{UsageRead}
	usageWrite = []Permission{UsageIngest}
	// Billing: everyone reads the invoices and billing summary of their subtree; the channel
	// (not tenants) reads commissions; runs are read at the platform and started by its admin.
	invoicesRead    = []Permission{BillingSummaryRead, InvoicesList, InvoicesRead}
	commissionsRead = []Permission{CommissionsRead}
	runsRead        = []Permission{BillingRunsRead}
)

func join(lists ...[]Permission) []Permission {
	var out []Permission
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

var roles = map[Role]RoleDef{
	PlatformAdmin: {Description: "Everything on the platform.", ScopeTypes: []EntityType{Platform},
		Permissions: join(hierarchyRead, usersRead, usersWrite, distW, partnerW, tenantW, catalogRead, catalogWrite,
			[]Permission{PriceListsRead, PriceListsWrite}, subsRead, subsWrite, usageRead, usageWrite,
			[]Permission{BillingRunsCreate}, runsRead, invoicesRead, commissionsRead)},
	PlatformViewer: {Description: "Read everything on the platform.", ScopeTypes: []EntityType{Platform},
		Permissions: join(hierarchyRead, usersRead, catalogRead, []Permission{PriceListsRead}, subsRead, usageRead, runsRead, invoicesRead, commissionsRead)},
	DistributorAdmin: {Description: "Manage a distributor's partners, tenants, users, prices and subscriptions.", ScopeTypes: []EntityType{Distributor},
		Permissions: join(hierarchyRead, usersRead, usersWrite, []Permission{DistributorsUpdate}, partnerW, tenantW, catalogRead,
			[]Permission{PriceListsRead, PriceListsWrite}, subsRead, subsWrite, usageRead, usageWrite, invoicesRead, commissionsRead)},
	DistributorViewer: {Description: "Read a distributor's subtree.", ScopeTypes: []EntityType{Distributor},
		Permissions: join(hierarchyRead, usersRead, catalogRead, []Permission{PriceListsRead}, subsRead, usageRead, invoicesRead, commissionsRead)},
	PartnerAdmin: {Description: "Manage a partner's tenants, users, price lists and subscriptions.", ScopeTypes: []EntityType{Partner},
		Permissions: join([]Permission{PartnersList, PartnersRead, PartnersMarkups, PartnersUpdate, TenantsList, TenantsRead}, usersRead, usersWrite, tenantW,
			catalogRead, []Permission{PriceListsRead, PriceListsWrite}, subsRead, subsWrite, usageRead, usageWrite, invoicesRead, commissionsRead)},
	PartnerViewer: {Description: "Read a partner's subtree.", ScopeTypes: []EntityType{Partner},
		Permissions: join([]Permission{PartnersList, PartnersRead, PartnersMarkups, TenantsList, TenantsRead}, usersRead, catalogRead,
			[]Permission{PriceListsRead}, subsRead, usageRead, invoicesRead, commissionsRead)},
	TenantAdmin: {Description: "Manage a tenant, its users and its subscriptions.", ScopeTypes: []EntityType{Tenant},
		Permissions: join([]Permission{TenantsList, TenantsRead, TenantsUpdate}, usersRead, usersWrite, catalogRead,
			[]Permission{PriceListsRead}, subsRead, subsWrite, usageRead, invoicesRead)},
	TenantViewer: {Description: "Read a tenant.", ScopeTypes: []EntityType{Tenant},
		Permissions: join([]Permission{TenantsList, TenantsRead}, usersRead, catalogRead, []Permission{PriceListsRead}, subsRead, usageRead, invoicesRead)},
	Finance: {Description: "Read the hierarchy, prices, subscriptions, billing, invoices, commissions and exports of a subtree.", ScopeTypes: channel,
		Permissions: join(hierarchyRead, catalogRead, []Permission{PriceListsRead}, subsRead, usageRead, runsRead, invoicesRead, commissionsRead)},
}

// Lookup returns the definition of r and whether r is a known role.
func Lookup(r Role) (RoleDef, bool) {
	d, ok := roles[r]
	d.Name = r
	if ok {
		d.PermissionsAt = map[EntityType][]Permission{}
		for _, t := range d.ScopeTypes {
			d.PermissionsAt[t] = r.PermissionsAt(t)
		}
	}
	return d, ok
}

// platformOnly are the permissions on platform objects (billing runs span every tenant): they
// take effect only for a role held at the platform.
var platformOnly = map[Permission]bool{BillingRunsCreate: true, BillingRunsRead: true}

// levelOf is the level of the entities a permission acts on: below that level a subtree holds
// none of them (a partner's subtree has no distributor), so the permission grants nothing there.
func levelOf(p Permission) int {
	switch {
	case strings.HasPrefix(string(p), "distributors."):
		return Distributor.Depth()
	case strings.HasPrefix(string(p), "partners."):
		return Partner.Depth()
	}
	return Tenant.Depth()
}

// effectiveAt reports whether permission p takes effect for a role held at an entity of type t.
// An unknown t keeps nothing that is platform-only.
func effectiveAt(p Permission, t EntityType) bool {
	if platformOnly[p] && t != Platform {
		return false
	}
	return t.Depth() <= levelOf(p)
}

// PermissionsAt returns the permissions role r grants when held at an entity of type t: its
// permissions less those that act on nothing in such a subtree (billing runs below the
// platform, distributors below a distributor, partners below a partner). This is what the
// caller holds (Principal.Can) and what granting the role gives away (Principal.CanGrant).
func (r Role) PermissionsAt(t EntityType) []Permission {
	var out []Permission
	for _, p := range roles[r].Permissions {
		if effectiveAt(p, t) {
			out = append(out, p)
		}
	}
	return out
}

// Roles returns every role definition, sorted by name.
func Roles() []RoleDef {
	out := make([]RoleDef, 0, len(roles))
	for r := range roles {
		d, _ := Lookup(r)
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Has reports whether role r grants permission p at some scope type (see HasAt).
func (r Role) Has(p Permission) bool {
	d, ok := roles[r]
	return ok && slices.Contains(d.Permissions, p)
}

// HasAt reports whether role r held at an entity of type t grants permission p.
func (r Role) HasAt(p Permission, t EntityType) bool { return r.Has(p) && effectiveAt(p, t) }

// AllowedAt reports whether role r may be held at an entity of type t.
func (r Role) AllowedAt(t EntityType) bool {
	d, ok := roles[r]
	return ok && slices.Contains(d.ScopeTypes, t)
}

// Principal is the authenticated caller: a user holding one role at one scope entity.
// ScopePath is the path of the scope entity ("/platform/dst_x/"), so the caller's subtree is
// every entity whose path starts with it.
type Principal struct {
	UserID    string
	Email     string
	Role      Role
	ScopeID   string
	ScopeType EntityType
	ScopePath string
	// Suspended is true when the scope entity or one of its ancestors is suspended.
	Suspended bool
}

// Can reports whether the caller holds permission p: its role grants it at its scope's type.
func (p Principal) Can(perm Permission) bool { return p.Role.HasAt(perm, p.ScopeType) }

// Require returns nil when the caller holds perm, and a Forbidden error otherwise (also for an
// empty perm, so that a route without a permission can never pass).
func (p Principal) Require(perm Permission) error {
	if perm == "" || !p.Can(perm) {
		return apperr.New(apperr.Forbidden, "forbidden", "Your role does not allow this action.")
	}
	return nil
}

// Covers reports whether the entity at path lies in the caller's subtree (itself included).
func (p Principal) Covers(path string) bool {
	return p.ScopePath != "" && strings.HasPrefix(path, p.ScopePath)
}

// Above reports whether the entity at path lies strictly below the caller's scope entity, so
// that the caller acts on it as an ancestor (suspend, delete, set markups).
func (p Principal) Above(path string) bool { return p.Covers(path) && path != p.ScopePath }

// CanGrant reports whether the caller may give role r at an entity of type at (SPEC 6: never
// above the caller's own role): at is not above the caller's own scope, and every permission r
// grants there is one the caller holds, so nobody hands out more than they have. Permissions
// that act on nothing at that level do not count (see PermissionsAt): a distributor admin may
// make finance users of its distributor, whose role reads billing runs only at the platform.
func (p Principal) CanGrant(r Role, at EntityType) bool {
	if _, ok := roles[r]; !ok || !r.AllowedAt(at) || at.Depth() < p.ScopeType.Depth() || p.ScopeType.Depth() < 0 {
		return false
	}
	for _, perm := range r.PermissionsAt(at) {
		if !p.Can(perm) {
			return false
		}
	}
	return true
}

// CanGrantSomewhere reports whether the caller may give role r at some entity type, so that
// asking for a role above the caller's own is refused as such before any scope is looked at.
func (p Principal) CanGrantSomewhere(r Role) bool {
	for _, t := range roles[r].ScopeTypes {
		if p.CanGrant(r, t) {
			return true
		}
	}
	return false
}

// PathOf returns the path of an entity with the given id under the parent path.
func PathOf(parentPath, id string) string { return parentPath + id + "/" }

// IDsOnPath returns the ids along a path, top first ("/platform/d/p/" -> platform, d, p).
func IDsOnPath(path string) []string {
	var out []string
	for _, s := range strings.Split(path, "/") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
