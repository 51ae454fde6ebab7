// Package routes registers each resource's operations on an httpapi.API. Each Lambda function
// registers only its own resource; the docs function and the local runner register them all.
package routes

import (
	"net/http"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/identity"
)

// Function names: one Lambda function each (functions/<name>).
const (
	FnAuth          = "auth"
	FnAuthorizer    = "authorizer"
	FnDistributors  = "distributors"
	FnPartners      = "partners"
	FnTenants       = "tenants"
	FnUsers         = "users"
	FnRoles         = "roles"
	FnDocs          = "docs"
	FnPricing       = "pricing"
	FnPlans         = "plans"
	FnPriceLists    = "pricelists"
	FnSubscriptions = "subscriptions"
	FnUsage         = "usage"
	FnBilling       = "billing"
	FnInvoices      = "invoices"
	FnCommissions   = "commissions"
)

// HTTPFunctions lists the functions that serve HTTP routes.
var HTTPFunctions = []string{FnAuth, FnDistributors, FnPartners, FnTenants, FnUsers, FnRoles, FnDocs,
	FnPricing, FnPlans, FnPriceLists, FnSubscriptions, FnUsage, FnBilling, FnInvoices, FnCommissions}

type hierarchyPerms struct {
	plural                                                          string
	list, read, create, update, delete, suspend, markupsR, markupsW access.Permission
}

var entityRoutes = map[access.EntityType]hierarchyPerms{
	access.Distributor: {"distributors", access.DistributorsList, access.DistributorsRead, access.DistributorsCreate, access.DistributorsUpdate,
		access.DistributorsDelete, access.DistributorsSuspend, access.DistributorsMarkups, access.DistributorsMarkupsW},
	access.Partner: {"partners", access.PartnersList, access.PartnersRead, access.PartnersCreate, access.PartnersUpdate,
		access.PartnersDelete, access.PartnersSuspend, access.PartnersMarkups, access.PartnersMarkupsW},
	access.Tenant: {"tenants", access.TenantsList, access.TenantsRead, access.TenantsCreate, access.TenantsUpdate,
		access.TenantsDelete, access.TenantsSuspend, "", ""},
}

// Hierarchy registers the routes of distributors, partners or tenants (SPEC 7).
func Hierarchy(api *httpapi.API, svc *hierarchy.Service, t access.EntityType) {
	r := entityRoutes[t]
	base := "/api/v1/" + r.plural
	fn, tag := r.plural, r.plural
	filters := []httpapi.Param{{Name: "parent", Description: "An entity id: only entities in its subtree."}, {Name: "status", Description: "active, suspended or cancelled."}}
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base, Function: fn, Permission: r.list, Tag: tag, List: true,
		Summary: "List " + r.plural + " in your subtree", Result: hierarchy.Entity{}, Query: filters, Fields: listFields(hierarchy.ListFields)},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery("parent", "status")
			if err != nil {
				return httpapi.Response{}, err
			}
			items, next, err := svc.List(req.Context(), req.Principal, t, q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			if q.PageSize == 0 {
				q.PageSize = 50
			}
			return req.Page(items, q, next), nil
		})
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: base, Function: fn, Permission: r.create, Tag: tag, Status: http.StatusCreated,
		Summary: "Create a " + string(t), Body: hierarchy.CreateInput{}, Result: hierarchy.Entity{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in hierarchy.CreateInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			e, err := svc.Create(req.Context(), req.Principal, t, in)
			return httpapi.Response{Data: e}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base + "/{id}", Function: fn, Permission: r.read, Tag: tag,
		Summary: "Get a " + string(t), Result: hierarchy.Entity{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			e, err := svc.Get(req.Context(), req.Principal, t, req.PathValue("id"))
			return httpapi.Response{Data: e}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodPut, Path: base + "/{id}", Function: fn, Permission: r.update, Tag: tag,
		Summary: "Update a " + string(t) + " (the parent never changes)", Body: hierarchy.UpdateInput{}, Result: hierarchy.Entity{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in hierarchy.UpdateInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			e, err := svc.Update(req.Context(), req.Principal, t, req.PathValue("id"), in)
			return httpapi.Response{Data: e}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodDelete, Path: base + "/{id}", Function: fn, Permission: r.delete, Tag: tag,
		Summary: "Delete a " + string(t) + " without children (409 otherwise)"},
		func(req *httpapi.Request) (httpapi.Response, error) {
			return httpapi.Response{}, svc.Delete(req.Context(), req.Principal, t, req.PathValue("id"))
		})
	api.Handle(httpapi.Route{Method: http.MethodPut, Path: base + "/{id}/suspension", Function: fn, Permission: r.suspend, Tag: tag,
		Summary: "Suspend or reinstate a " + string(t), Body: hierarchy.SuspensionInput{}, Result: hierarchy.Entity{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in hierarchy.SuspensionInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			e, err := svc.Suspend(req.Context(), req.Principal, t, req.PathValue("id"), in)
			return httpapi.Response{Data: e}, err
		})
	if r.markupsR == "" {
		return
	}
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base + "/{id}/markups", Function: fn, Permission: r.markupsR, Tag: tag, List: true,
		Summary: "The markup history of a " + string(t) + ", newest first", Result: hierarchy.Markup{}, Fields: markupFields},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery()
			if err != nil {
				return httpapi.Response{}, err
			}
			if v := req.URL.Query(); after == nil && v.Get("sort") == "" && v.Get("dir") == "" {
				q.Desc = true // newest first: start date, then recording time, descending
			}
			ms, err := svc.Markups(req.Context(), req.Principal, t, req.PathValue("id"))
			if err != nil {
				return httpapi.Response{}, err
			}
			page, next, err := sliceList(ms, markupSearch, markupSort, &q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			return req.Page(page, q, next), nil
		})
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: base + "/{id}/markups", Function: fn, Permission: r.markupsW, Tag: tag, Status: http.StatusCreated,
		Summary: "Add a markup entry effective from its startDate's first period", Body: hierarchy.MarkupInput{}, Result: hierarchy.Entity{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in hierarchy.MarkupInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			e, err := svc.AddMarkup(req.Context(), req.Principal, t, req.PathValue("id"), in)
			return httpapi.Response{Data: e}, err
		})
}

// Users registers /api/v1/users.
func Users(api *httpapi.API, svc *identity.Users) {
	const base, fn, tag = "/api/v1/users", FnUsers, "users"
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base, Function: fn, Permission: access.UsersList, Tag: tag, List: true,
		Summary: "List users in your subtree", Result: identity.User{}, Fields: listFields(identity.UserFields),
		Query: []httpapi.Param{{Name: "scopeId", Description: "Only users scoped in this entity's subtree."}, {Name: "role", Description: "Only users with this role."}}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery("scopeId", "role")
			if err != nil {
				return httpapi.Response{}, err
			}
			items, next, err := svc.List(req.Context(), req.Principal, q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			if q.PageSize == 0 {
				q.PageSize = 50
			}
			return req.Page(items, q, next), nil
		})
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: base, Function: fn, Permission: access.UsersCreate, Tag: tag, Status: http.StatusCreated,
		Summary: "Create a user (invited unless a password is given)", Body: identity.CreateUserInput{}, Result: identity.User{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in identity.CreateUserInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			u, err := svc.Create(req.Context(), req.Principal, in)
			return httpapi.Response{Data: u}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: base + "/{id}", Function: fn, Permission: access.UsersRead, Tag: tag,
		Summary: "Get a user", Result: identity.User{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			u, err := svc.Get(req.Context(), req.Principal, req.PathValue("id"))
			return httpapi.Response{Data: u}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodPut, Path: base + "/{id}", Function: fn, Permission: access.UsersUpdate, Tag: tag,
		Summary: "Update a user's details", Body: identity.UpdateUserInput{}, Result: identity.User{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in identity.UpdateUserInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			u, err := svc.Update(req.Context(), req.Principal, req.PathValue("id"), in)
			return httpapi.Response{Data: u}, err
		})
	api.Handle(httpapi.Route{Method: http.MethodDelete, Path: base + "/{id}", Function: fn, Permission: access.UsersDelete, Tag: tag,
		Summary: "Delete a user"},
		func(req *httpapi.Request) (httpapi.Response, error) {
			return httpapi.Response{}, svc.Delete(req.Context(), req.Principal, req.PathValue("id"))
		})
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: base + "/{id}/welcome", Function: fn, Permission: access.UsersWelcome, Tag: tag,
		Summary: "Send a new invitation (user.invited event) to a user who has not signed in yet", Result: identity.User{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			u, err := svc.Welcome(req.Context(), req.Principal, req.PathValue("id"))
			return httpapi.Response{Data: u}, err
		})
}

// Roles registers /api/v1/roles.
func Roles(api *httpapi.API, svc *identity.Users) {
	const fn, tag = FnRoles, "roles"
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: "/api/v1/roles", Function: fn, Permission: access.RolesList, Tag: tag, List: true,
		Summary: "List the roles and their permissions", Result: access.RoleDef{}, Fields: roleFields},
		func(req *httpapi.Request) (httpapi.Response, error) {
			q, after, err := req.ListQuery()
			if err != nil {
				return httpapi.Response{}, err
			}
			roles, err := identity.Roles(req.Principal)
			if err != nil {
				return httpapi.Response{}, err
			}
			page, next, err := sliceList(roles, roleSearch, roleSort, &q, after)
			if err != nil {
				return httpapi.Response{}, err
			}
			return req.Page(page, q, next), nil
		})
	api.Handle(httpapi.Route{Method: http.MethodPut, Path: "/api/v1/roles/{userId}", Function: fn, Permission: access.RolesAssign, Tag: tag,
		Summary: "Assign a role and scope to a user in your subtree", Body: identity.AssignRoleInput{}, Result: identity.User{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in identity.AssignRoleInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			u, err := svc.AssignRole(req.Context(), req.Principal, req.PathValue("userId"), in)
			return httpapi.Response{Data: u}, err
		})
}

// Auth registers the sign-in endpoints and the JWKS (SPEC 5). jwks returns the public key set.
func Auth(api *httpapi.API, s *identity.Sessions, jwks func() ([]byte, error)) {
	const fn, tag = FnAuth, "auth"
	session := func(path, summary string, body any, run func(req *httpapi.Request) (*identity.Session, error)) {
		api.Handle(httpapi.Route{Method: http.MethodPost, Path: path, Function: fn, Public: true, Credentials: true, Tag: tag, Summary: summary, Body: body, Result: identity.Session{}},
			func(req *httpapi.Request) (httpapi.Response, error) {
				ses, err := run(req)
				return httpapi.Response{Data: ses}, err
			})
	}
	session("/api/v1/auth/login", "Sign in with e-mail and password", identity.LoginInput{}, func(req *httpapi.Request) (*identity.Session, error) {
		var in identity.LoginInput
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		return s.Login(req.Context(), in)
	})
	session("/api/v1/auth/token", "Sign in (the seed client's form of login)", identity.TokenInput{}, func(req *httpapi.Request) (*identity.Session, error) {
		var in identity.TokenInput
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		var f apperr.Fields
		f.Required("emailAddress", in.EmailAddress == "")
		f.Required("password", in.Password == "")
		if err := f.Err(); err != nil {
			return nil, err
		}
		return s.Login(req.Context(), identity.LoginInput{Email: in.EmailAddress, Password: in.Password})
	})
	refresh := func(req *httpapi.Request) (*identity.Session, error) {
		var in identity.RefreshInput
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		return s.Refresh(req.Context(), in)
	}
	session("/api/v1/auth/refresh", "Exchange a refresh token for a new pair (the old one is spent)", identity.RefreshInput{}, refresh)
	session("/api/v1/auth/token-refresh", "Alias of /auth/refresh", identity.RefreshInput{}, refresh)
	session("/api/v1/auth/federated", "Sign in with an Entra or Google ID token", identity.FederatedInput{}, func(req *httpapi.Request) (*identity.Session, error) {
		var in identity.FederatedInput
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		return s.Federated(req.Context(), in)
	})
	session("/api/v1/auth/accept-invite", "Redeem an invitation: set a password and sign in", identity.AcceptInviteInput{}, func(req *httpapi.Request) (*identity.Session, error) {
		var in identity.AcceptInviteInput
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		return s.AcceptInvite(req.Context(), in)
	})
	api.Handle(httpapi.Route{Method: http.MethodPost, Path: "/api/v1/auth/logout", Function: fn, Public: true, Tag: tag,
		Summary: "Revoke a refresh token's family", Body: identity.RefreshInput{}},
		func(req *httpapi.Request) (httpapi.Response, error) {
			var in identity.RefreshInput
			if err := req.Decode(&in); err != nil {
				return httpapi.Response{}, err
			}
			return httpapi.Response{}, s.Logout(req.Context(), in)
		})
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: "/.well-known/jwks.json", Function: fn, Public: true, Tag: tag, Raw: true,
		Summary: "The public keys that verify platform tokens"},
		func(req *httpapi.Request) (httpapi.Response, error) {
			b, err := jwks()
			if err != nil {
				return httpapi.Response{}, err
			}
			w := req.Writer()
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Cache-Control", "public, max-age=300")
			_, _ = w.Write(b)
			return httpapi.Response{}, nil
		})
}
