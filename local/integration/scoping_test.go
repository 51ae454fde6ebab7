package integration_test

import (
	"fmt"
	"strings"
	"testing"
)

// The scoping matrix. Every role acts on every protected route against a target in its own
// subtree, in a sibling's subtree and at an ancestor. The expected status of each cell is
// written below as three letters (own, sibling, ancestor):
//
//	2 success (200 or 201)   F 403 forbidden   N 404 not found   C 409 conflict
//	U 422 (a body reference outside the subtree)   - no such target for this role
//
// The tree:  platform ─ D1 ─ P1 ─ T1        Actors: platform roles at the platform,
//                         └ P2 ─ T2         distributor roles and finance at D1,
//                   └ D2 ─ P3 ─ T3          partner roles at P1, tenant roles at T1.

var roleNames = []string{"platform_admin", "platform_viewer", "distributor_admin", "distributor_viewer", "finance",
	"partner_admin", "partner_viewer", "tenant_admin", "tenant_viewer"}

// group of each role: where its scope sits.
var groupOf = map[string]string{
	"platform_admin": "plat", "platform_viewer": "plat", "distributor_admin": "dist", "distributor_viewer": "dist",
	"finance": "dist", "partner_admin": "part", "partner_viewer": "part", "tenant_admin": "ten", "tenant_viewer": "ten",
}

// targets[group][kind] = fixture names for own, sibling, ancestor ("" = none).
var targets = map[string]map[string][3]string{
	"plat": {"dist": {"D1", "", ""}, "partner": {"P1", "", ""}, "tenant": {"T1", "", ""}, "user": {"uT1", "", ""}},
	"dist": {"dist": {"D1", "D2", ""}, "partner": {"P1", "P3", ""}, "tenant": {"T1", "T3", ""}, "user": {"uT1", "uT3", "uPlat"}},
	"part": {"dist": {"", "D2", "D1"}, "partner": {"P1", "P2", ""}, "tenant": {"T1", "T2", ""}, "user": {"uT1", "uT2", "uD1"}},
	"ten":  {"dist": {"", "D2", "D1"}, "partner": {"", "P2", "P1"}, "tenant": {"T1", "T2", ""}, "user": {"uT1", "uT2", "uP1"}},
}

type cell struct {
	name   string
	method string
	path   string // {t} is the target's id, {s} the target user's scope id
	kind   string // dist, partner, tenant, user, or "" for routes without a target
	body   func(f *fixture, target string) any
	want   [9]string // per role, in roleNames order
}

func row(ws ...string) [9]string { return [9]string(ws) }

var matrix = []cell{
	// distributors
	{"ListDistributors", "GET", "/api/v1/distributors?parent={t}", "dist", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "-FF", "-FF", "-FF", "-FF")},
	{"GetDistributor", "GET", "/api/v1/distributors/{t}", "dist", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "-FF", "-FF", "-FF", "-FF")},
	{"UpdateDistributor", "PUT", "/api/v1/distributors/{t}", "dist", contactBody,
		row("2--", "F--", "2N-", "FF-", "FF-", "-FF", "-FF", "-FF", "-FF")},
	{"DeleteDistributor", "DELETE", "/api/v1/distributors/{t}", "dist", nil,
		row("C--", "F--", "FF-", "FF-", "FF-", "-FF", "-FF", "-FF", "-FF")},
	{"SuspendDistributor", "PUT", "/api/v1/distributors/{t}/suspension", "dist", reinstateBody,
		row("2--", "F--", "FF-", "FF-", "FF-", "-FF", "-FF", "-FF", "-FF")},
	{"DistributorMarkups", "GET", "/api/v1/distributors/{t}/markups", "dist", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "-FF", "-FF", "-FF", "-FF")},
	{"AddDistributorMarkup", "POST", "/api/v1/distributors/{t}/markups", "dist", markupBody,
		row("2--", "F--", "FF-", "FF-", "FF-", "-FF", "-FF", "-FF", "-FF")},
	{"CreateDistributor", "POST", "/api/v1/distributors", "", func(*fixture, string) any { return map[string]any{"name": "M"} },
		row("2--", "F--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	// partners
	{"ListPartners", "GET", "/api/v1/partners?parent={t}", "partner", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "2N-", "2N-", "-FF", "-FF")},
	{"GetPartner", "GET", "/api/v1/partners/{t}", "partner", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "2N-", "2N-", "-FF", "-FF")},
	{"UpdatePartner", "PUT", "/api/v1/partners/{t}", "partner", contactBody,
		row("2--", "F--", "2N-", "FF-", "FF-", "2N-", "FF-", "-FF", "-FF")},
	{"DeletePartner", "DELETE", "/api/v1/partners/{t}", "partner", nil,
		row("C--", "F--", "CN-", "FF-", "FF-", "FF-", "FF-", "-FF", "-FF")},
	{"SuspendPartner", "PUT", "/api/v1/partners/{t}/suspension", "partner", reinstateBody,
		row("2--", "F--", "2N-", "FF-", "FF-", "FF-", "FF-", "-FF", "-FF")},
	{"PartnerMarkups", "GET", "/api/v1/partners/{t}/markups", "partner", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "2N-", "2N-", "-FF", "-FF")},
	{"AddPartnerMarkup", "POST", "/api/v1/partners/{t}/markups", "partner", markupBody,
		row("2--", "F--", "2N-", "FF-", "FF-", "FF-", "FF-", "-FF", "-FF")},
	{"CreatePartner", "POST", "/api/v1/partners", "dist", func(f *fixture, t string) any {
		return map[string]any{"name": "M", "parent": parent("distributor", f.ids[t])}
	}, row("2--", "F--", "2U-", "FF-", "FF-", "-FF", "-FF", "-FF", "-FF")},
	// tenants
	{"ListTenants", "GET", "/api/v1/tenants?parent={t}", "tenant", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-")},
	{"GetTenant", "GET", "/api/v1/tenants/{t}", "tenant", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-")},
	{"UpdateTenant", "PUT", "/api/v1/tenants/{t}", "tenant", contactBody,
		row("2--", "F--", "2N-", "FF-", "FF-", "2N-", "FF-", "2N-", "FF-")},
	{"DeleteTenant", "DELETE", "/api/v1/tenants/{t}", "tenant", nil,
		row("C--", "F--", "CN-", "FF-", "FF-", "CN-", "FF-", "FF-", "FF-")},
	{"SuspendTenant", "PUT", "/api/v1/tenants/{t}/suspension", "tenant", reinstateBody,
		row("2--", "F--", "2N-", "FF-", "FF-", "2N-", "FF-", "FF-", "FF-")},
	{"CreateTenant", "POST", "/api/v1/tenants", "partner", func(f *fixture, t string) any {
		return map[string]any{"name": "M", "parent": parent("partner", f.ids[t])}
	}, row("2--", "F--", "2U-", "FF-", "FF-", "2U-", "FF-", "-FF", "-FF")},
	// users
	{"ListUsers", "GET", "/api/v1/users?scopeId={s}", "user", nil,
		row("2--", "2--", "2NN", "2NN", "FFF", "2NN", "2NN", "2NN", "2NN")},
	{"GetUser", "GET", "/api/v1/users/{t}", "user", nil,
		row("2--", "2--", "2NN", "2NN", "FFF", "2NN", "2NN", "2NN", "2NN")},
	{"UpdateUser", "PUT", "/api/v1/users/{t}", "user", func(*fixture, string) any { return map[string]any{"mobile": "+32 470 00 00 00"} },
		row("2--", "F--", "2NN", "FFF", "FFF", "2NN", "FFF", "2NN", "FFF")},
	{"DeleteUser", "DELETE", "/api/v1/users/{fresh}", "user", nil,
		row("2--", "F--", "2NN", "FFF", "FFF", "2NN", "FFF", "2NN", "FFF")},
	{"WelcomeUser", "POST", "/api/v1/users/{t}/welcome", "user", nil,
		row("2--", "F--", "2NN", "FFF", "FFF", "2NN", "FFF", "2NN", "FFF")},
	{"CreateUser", "POST", "/api/v1/users", "user", func(f *fixture, t string) any {
		return map[string]any{"email": strings.ToLower(uniq("m")) + "@example.test", "firstName": "M", "lastName": "M",
			"role": f.roleOf[t], "scopeId": f.scopeOf[t]}
	}, row("2--", "F--", "2UU", "FFF", "FFF", "2UU", "FFF", "2UU", "FFF")},
	// roles
	{"ListRoles", "GET", "/api/v1/roles", "", nil,
		row("2--", "2--", "2--", "2--", "F--", "2--", "2--", "2--", "2--")},
	{"AssignRole", "PUT", "/api/v1/roles/{t}", "user", func(f *fixture, t string) any { return map[string]any{"role": f.roleOf[t]} },
		row("2--", "F--", "2NN", "FFF", "FFF", "2NN", "FFF", "2NN", "FFF")},
}

func contactBody(*fixture, string) any   { return map[string]any{"contactEmail": "ops@example.test"} }
func reinstateBody(*fixture, string) any { return map[string]any{"suspended": false} }
func markupBody(*fixture, string) any {
	return map[string]any{"markup": "1.5", "startDate": nextMonthStart()}
}

type fixture struct {
	ids     map[string]string // fixture name -> entity or user id
	scopeOf map[string]string // user fixture -> its scope entity id
	roleOf  map[string]string // user fixture -> its role
	actors  map[string]client
}

func buildFixture(t *testing.T) *fixture {
	a := admin(t)
	f := &fixture{ids: map[string]string{"platform": "platform"}, scopeOf: map[string]string{}, roleOf: map[string]string{}, actors: map[string]client{}}
	mk := func(name, plural string, body map[string]any) { f.ids[name] = create(t, a, plural, body).ID }
	mk("D1", "distributors", map[string]any{"name": "D1"})
	mk("D2", "distributors", map[string]any{"name": "D2"})
	mk("P1", "partners", map[string]any{"name": "P1", "parent": parent("distributor", f.ids["D1"])})
	mk("P2", "partners", map[string]any{"name": "P2", "parent": parent("distributor", f.ids["D1"])})
	mk("P3", "partners", map[string]any{"name": "P3", "parent": parent("distributor", f.ids["D2"])})
	mk("T1", "tenants", map[string]any{"name": "T1", "parent": parent("partner", f.ids["P1"])})
	mk("T2", "tenants", map[string]any{"name": "T2", "parent": parent("partner", f.ids["P2"])})
	mk("T3", "tenants", map[string]any{"name": "T3", "parent": parent("partner", f.ids["P3"])})
	// Target users: invited viewers, so that welcome applies to them.
	for name, scope := range map[string]string{"uT1": "T1", "uT2": "T2", "uT3": "T3", "uP1": "P1", "uD1": "D1", "uPlat": "platform"} {
		role := map[string]string{"T": "tenant_viewer", "P": "partner_viewer", "D": "distributor_viewer", "p": "platform_viewer"}[scope[:1]]
		var u user
		a.must(201, "POST", "/api/v1/users", map[string]any{"email": strings.ToLower(uniq(name)) + "@example.test",
			"firstName": name, "lastName": "Target", "role": role, "scopeId": f.ids[scope]}, &u)
		f.ids[name], f.scopeOf[name], f.roleOf[name] = u.ID, f.ids[scope], role
	}
	scopes := map[string]string{"plat": "platform", "dist": "D1", "part": "P1", "ten": "T1"}
	for _, role := range roleNames {
		_, c := mkUser(t, a, role, f.ids[scopes[groupOf[role]]])
		f.actors[role] = c
	}
	return f
}

var statusOf = map[byte][]int{'2': {200, 201}, 'F': {403}, 'N': {404}, 'C': {409}, 'U': {422}}

func TestScopingMatrix(t *testing.T) {
	f := buildFixture(t)
	a := admin(t)
	cells := 0
	for _, c := range matrix {
		for ri, role := range roleNames {
			for col, colName := range []string{"own", "sibling", "ancestor"} {
				want := c.want[ri][col]
				tgt := ""
				if c.kind != "" {
					tgt = targets[groupOf[role]][c.kind][col]
				} else if col > 0 {
					if want != '-' {
						t.Fatalf("%s/%s: a route without target has only the own column", c.name, role)
					}
					continue
				}
				if (want == '-') != (c.kind != "" && tgt == "") {
					t.Fatalf("%s/%s/%s: the table says %q but the target is %q", c.name, role, colName, want, tgt)
				}
				if want == '-' {
					continue
				}
				cells++
				t.Run(fmt.Sprintf("%s/%s/%s", c.name, role, colName), func(t *testing.T) {
					path := strings.ReplaceAll(c.path, "{t}", f.ids[tgt])
					path = strings.ReplaceAll(path, "{s}", f.scopeOf[tgt])
					if strings.Contains(path, "{fresh}") {
						var u user
						a.must(201, "POST", "/api/v1/users", map[string]any{"email": strings.ToLower(uniq("fresh")) + "@example.test",
							"firstName": "F", "lastName": "F", "role": f.roleOf[tgt], "scopeId": f.scopeOf[tgt]}, &u)
						path = strings.ReplaceAll(path, "{fresh}", u.ID)
					}
					var body any
					if c.body != nil {
						body = c.body(f, tgt)
					}
					env := f.actors[role].do(c.method, path, body)
					ok := false
					for _, s := range statusOf[want] {
						ok = ok || env.status == s
					}
					if !ok {
						t.Fatalf("%s %s as %s on %s target: want %c, got %d %s", c.method, path, role, colName, want, env.status, env.raw)
					}
				})
			}
		}
	}
	if want := countCells(); cells != want {
		t.Fatalf("exercised %d cells, the table has %d", cells, want)
	}
}

func countCells() int {
	n := 0
	for _, c := range matrix {
		for _, w := range c.want {
			n += 3 - strings.Count(w, "-")
		}
	}
	return n
}

// TestMatrixCoversEveryProtectedRoute fails when a route is added without a row in the matrix.
func TestMatrixCoversEveryProtectedRoute(t *testing.T) {
	covered := map[string]bool{}
	for _, c := range matrix {
		p, _, _ := strings.Cut(c.path, "?")
		p = strings.NewReplacer("{t}", "{id}", "{fresh}", "{id}").Replace(p)
		covered[c.method+" "+p] = true
	}
	for _, r := range allProtectedRoutes() {
		if !covered[r] {
			t.Errorf("%s has no row in the scoping matrix", r)
		}
	}
}
