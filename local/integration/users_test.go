package integration_test

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestUsersCRUD(t *testing.T) {
	a := admin(t)
	d := create(t, a, "distributors", map[string]any{"name": "Users D"})
	p := create(t, a, "partners", map[string]any{"name": "Users P", "parent": parent("distributor", d.ID)})
	tn := create(t, a, "tenants", map[string]any{"name": "Users T", "parent": parent("partner", p.ID)})
	email := strings.ToLower(uniq("crud")) + "@example.test"
	var u user
	a.must(201, "POST", "/api/v1/users", map[string]any{"email": strings.ToUpper(email), "firstName": "Ada", "lastName": "Lovelace",
		"mobile": "+32 470 12 34 56", "role": "tenant_admin", "scopeId": tn.ID, "password": "a long enough password"}, &u)
	if u.Email != email || u.Role != "tenant_admin" || u.Scope.ID != tn.ID || u.Status != "active" {
		t.Fatalf("user %+v", u)
	}
	if strings.Contains(a.do("GET", "/api/v1/users/"+u.ID, nil).raw, "argon2") {
		t.Fatal("the password hash must never be returned")
	}
	t.Run("ErrEmailTaken", func(t *testing.T) {
		env := a.do("POST", "/api/v1/users", map[string]any{"email": email, "firstName": "X", "lastName": "Y", "role": "tenant_viewer", "scopeId": tn.ID})
		if env.status != 409 || !env.hasError("taken", "email") {
			t.Fatalf("got %s", env.raw)
		}
	})
	t.Run("ErrValidation", func(t *testing.T) {
		env := a.do("POST", "/api/v1/users", map[string]any{"email": "x", "role": "king", "password": "short"})
		for _, f := range []string{"email", "firstName", "lastName", "scopeId", "role", "password"} {
			if !env.hasError("", f) {
				t.Errorf("%s not reported: %s", f, env.raw)
			}
		}
		env = a.do("POST", "/api/v1/users", map[string]any{"email": "ok@example.test", "firstName": "X", "lastName": "Y", "role": "partner_admin", "scopeId": tn.ID})
		if env.status != 422 || !env.hasError("invalid_for_scope", "role") {
			t.Fatalf("a partner role at a tenant: %s", env.raw)
		}
	})
	t.Run("Update", func(t *testing.T) {
		var got user
		newEmail := strings.ToLower(uniq("moved")) + "@example.test"
		a.must(200, "PUT", "/api/v1/users/"+u.ID, map[string]any{"email": newEmail}, &got)
		if got.Email != newEmail {
			t.Fatalf("email %s", got.Email)
		}
		login(t, newEmail, "a long enough password")
		// The old address is free again.
		a.must(201, "POST", "/api/v1/users", map[string]any{"email": email, "firstName": "New", "lastName": "Owner", "role": "tenant_viewer", "scopeId": tn.ID}, nil)
	})
	t.Run("AssignRoleTakesEffectAtOnce", func(t *testing.T) {
		_, pa := mkUser(t, a, "partner_admin", p.ID)
		var victim user
		pa.must(201, "POST", "/api/v1/users", map[string]any{"email": strings.ToLower(uniq("v")) + "@example.test", "firstName": "V", "lastName": "V",
			"role": "tenant_viewer", "scopeId": tn.ID, "password": "a long enough password"}, &victim)
		vc := login(t, victim.Email, "a long enough password")
		if env := vc.do("PUT", "/api/v1/tenants/"+tn.ID, map[string]any{"phone": "1"}); env.status != 403 {
			t.Fatalf("a viewer must not update: %s", env.raw)
		}
		pa.must(200, "PUT", "/api/v1/roles/"+victim.ID, map[string]any{"role": "tenant_admin"}, nil)
		// The same token now carries the new role: the authorizer reads the user's current role.
		vc.must(200, "PUT", "/api/v1/tenants/"+tn.ID, map[string]any{"phone": "1"}, nil)
		if env := pa.do("PUT", "/api/v1/roles/"+victim.ID, map[string]any{"role": "distributor_admin", "scopeId": d.ID}); env.status != 404 && env.status != 403 && env.status != 422 {
			t.Fatalf("a partner admin cannot grant above itself: %s", env.raw)
		}
		if env := pa.do("PUT", "/api/v1/roles/"+victim.ID, map[string]any{"role": "distributor_admin", "scopeId": d.ID}); env.status == 200 {
			t.Fatal("escalation accepted")
		}
		// Deleting the user ends its access at once.
		pa.must(200, "DELETE", "/api/v1/users/"+victim.ID, nil, nil)
		if env := vc.do("GET", "/api/v1/tenants/"+tn.ID, nil); env.status != 401 {
			t.Fatalf("a deleted user's token must stop working: %s", env.raw)
		}
	})
	t.Run("ErrDeleteSelf", func(t *testing.T) {
		me, c := mkUser(t, a, "partner_admin", p.ID)
		if env := c.do("DELETE", "/api/v1/users/"+me.ID, nil); env.status != 403 {
			t.Fatalf("got %s", env.raw)
		}
	})
	t.Run("ListPagesAndFilters", func(t *testing.T) {
		for i := 0; i < 6; i++ {
			a.must(201, "POST", "/api/v1/users", map[string]any{"email": fmt.Sprintf("page%d-%s@example.test", i, strings.ToLower(uniq("p"))),
				"firstName": "Page", "lastName": fmt.Sprint(i), "role": "tenant_viewer", "scopeId": tn.ID}, nil)
		}
		seen := 0
		path := "/api/v1/users?scopeId=" + tn.ID + "&role=tenant_viewer&page_size=4&sort=email"
		for path != "" {
			var items []user
			env := a.must(200, "GET", path, nil, &items)
			for _, it := range items {
				if it.Role != "tenant_viewer" || it.Scope.ID != tn.ID {
					t.Fatalf("filter broken: %+v", it)
				}
			}
			seen += len(items)
			path = ""
			if env.Page.Next != "" {
				path = "/api/v1/users?next=" + url.QueryEscape(env.Page.Next)
			}
		}
		if seen < 7 {
			t.Fatalf("saw %d tenant viewers", seen)
		}
	})
	t.Run("ErrDeleteScopeWithUsers", func(t *testing.T) {
		env := a.do("DELETE", "/api/v1/tenants/"+tn.ID, nil)
		if env.status != 409 || !env.hasError("has_users", "") {
			t.Fatalf("got %s", env.raw)
		}
	})
}

func TestRolesList(t *testing.T) {
	var roles []struct {
		Name        string   `json:"name"`
		ScopeTypes  []string `json:"scopeTypes"`
		Permissions []string `json:"permissions"`
	}
	admin(t).must(200, "GET", "/api/v1/roles", nil, &roles)
	names := map[string]bool{}
	for _, r := range roles {
		names[r.Name] = len(r.Permissions) > 0
	}
	for _, want := range roleNames {
		if !names[want] {
			t.Errorf("role %s missing or empty", want)
		}
	}
	list := func(query string) (out []string) {
		var rs []struct {
			Name string `json:"name"`
		}
		admin(t).must(200, "GET", "/api/v1/roles"+query, nil, &rs)
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	t.Run("SearchSortDir", func(t *testing.T) {
		if got := strings.Join(list("?search=VIEWER&sort=name&dir=desc"), " "); got != "tenant_viewer platform_viewer partner_viewer distributor_viewer" {
			t.Fatalf("search=VIEWER, name descending: %s", got)
		}
		// Search looks into the permissions too: only the platform admin starts billing runs.
		if got := strings.Join(list("?search=billing.runs.create"), " "); got != "platform_admin" {
			t.Fatalf("search=billing.runs.create: %s", got)
		}
		if got := list("?page_size=4"); len(got) != 4 || got[0] != "distributor_admin" {
			t.Fatalf("first page by name: %v", got)
		}
		env := admin(t).do("GET", "/api/v1/roles?sort=bogus", nil)
		if env.status != 400 || !env.hasError("invalid", "sort") {
			t.Fatalf("sort=bogus: %s", env.raw)
		}
	})
}

// TestRoleGrants: roles are granted only inside the caller's subtree and never above the
// caller's own role (SPEC 6). Finance reads billing runs only at the platform, so a channel
// admin may make finance users of its own entity; an escalation is refused by the role check
// (403 role_above_caller), before any scope is looked at.
func TestRoleGrants(t *testing.T) {
	a := admin(t)
	d := create(t, a, "distributors", map[string]any{"name": "Grants D"})
	p := create(t, a, "partners", map[string]any{"name": "Grants P", "parent": parent("distributor", d.ID)})
	tn := create(t, a, "tenants", map[string]any{"name": "Grants T", "parent": parent("partner", p.ID)})
	_, da := mkUser(t, a, "distributor_admin", d.ID)
	_, pa := mkUser(t, a, "partner_admin", p.ID)
	_, ta := mkUser(t, a, "tenant_admin", tn.ID)
	target := func() user {
		var u user
		a.must(201, "POST", "/api/v1/users", map[string]any{"email": strings.ToLower(uniq("g")) + "@example.test", "firstName": "G", "lastName": "G",
			"role": "tenant_viewer", "scopeId": tn.ID, "password": "a long enough password"}, &u)
		return u
	}

	t.Run("OKChannelAdminsGrantFinance", func(t *testing.T) {
		var fin user
		da.must(201, "POST", "/api/v1/users", map[string]any{"email": strings.ToLower(uniq("fin")) + "@example.test", "firstName": "F", "lastName": "In",
			"role": "finance", "scopeId": d.ID, "password": "a long enough password"}, &fin)
		fc := login(t, fin.Email, "a long enough password")
		fc.must(200, "GET", "/api/v1/invoices?tenantId="+tn.ID, nil, nil)
		// What finance holds at a distributor is what its admin could give.
		if env := fc.do("GET", "/api/v1/billing/runs/run_none", nil); env.status != 403 {
			t.Fatalf("finance below the platform does not read billing runs: %s", env.raw)
		}
		u := target()
		var got user
		da.must(200, "PUT", "/api/v1/roles/"+u.ID, map[string]any{"role": "finance", "scopeId": p.ID}, &got)
		if got.Role != "finance" || got.Scope.ID != p.ID {
			t.Fatalf("user %+v", got)
		}
		v := target()
		pa.must(200, "PUT", "/api/v1/roles/"+v.ID, map[string]any{"role": "finance", "scopeId": p.ID}, nil)
		vc := login(t, v.Email, "a long enough password")
		if env := vc.do("GET", "/api/v1/distributors", nil); env.status != 403 {
			t.Fatalf("finance at a partner holds no distributor permission: %s", env.raw)
		}
		vc.must(200, "GET", "/api/v1/partners/"+p.ID, nil, nil)
		// A finance user is one the partner admin may manage (its permissions there are all the
		// admin's own).
		pa.must(200, "PUT", "/api/v1/users/"+v.ID, map[string]any{"mobile": "+32 1"}, nil)
	})

	escalations := []struct {
		name   string
		caller client
		body   map[string]any
	}{
		{"ErrPartnerAdminToDistributorAdmin", pa, map[string]any{"role": "distributor_admin", "scopeId": p.ID}},
		{"ErrPartnerAdminToPlatformAdmin", pa, map[string]any{"role": "platform_admin"}},
		{"ErrDistributorAdminToPlatformViewer", da, map[string]any{"role": "platform_viewer", "scopeId": d.ID}},
		{"ErrTenantAdminToFinance", ta, map[string]any{"role": "finance", "scopeId": tn.ID}},
		{"ErrTenantAdminToPartnerAdmin", ta, map[string]any{"role": "partner_admin", "scopeId": tn.ID}},
	}
	for _, e := range escalations {
		t.Run(e.name, func(t *testing.T) {
			u := target()
			env := e.caller.do("PUT", "/api/v1/roles/"+u.ID, e.body)
			if env.status != 403 || !env.hasError("role_above_caller", "") {
				t.Fatalf("PUT /roles: want 403 role_above_caller, got %s", env.raw)
			}
			body := map[string]any{"email": strings.ToLower(uniq("esc")) + "@example.test", "firstName": "E", "lastName": "E", "role": e.body["role"], "scopeId": tn.ID}
			if s, ok := e.body["scopeId"]; ok {
				body["scopeId"] = s
			}
			env = e.caller.do("POST", "/api/v1/users", body)
			if env.status != 403 || !env.hasError("role_above_caller", "") {
				t.Fatalf("POST /users: want 403 role_above_caller, got %s", env.raw)
			}
			var got user
			a.must(200, "GET", "/api/v1/users/"+u.ID, nil, &got)
			if got.Role != "tenant_viewer" {
				t.Fatalf("the role changed: %+v", got)
			}
		})
	}
	t.Run("ErrFinanceAtThePlatformIsOutsideTheSubtree", func(t *testing.T) {
		env := da.do("PUT", "/api/v1/roles/"+target().ID, map[string]any{"role": "finance", "scopeId": "platform"})
		if env.status != 422 || !env.hasError("not_found", "scopeId") {
			t.Fatalf("got %s", env.raw)
		}
	})
}
