package integration_test

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The scoping matrix. Every role acts on every protected route against a target in its own
// subtree, in a sibling's subtree and at an ancestor. The expected status of each cell is
// written below as three letters (own, sibling, ancestor):
//
//	2 success (200, 201, 202)   F 403 forbidden   N 404 not found   C 409 conflict
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

// targets[group][kind] = fixture names for own, sibling, ancestor ("" = none). Kind "ent" is any
// entity: the actor's own scope (or, for the platform, one below it), a sibling, the parent. Kind
// "sub" is a subscription of the tenant T1, T2 or T3 (sT1, sT2, sT3).
var targets = map[string]map[string][3]string{
	"plat": {"dist": {"D1", "", ""}, "partner": {"P1", "", ""}, "tenant": {"T1", "", ""}, "user": {"uT1", "", ""},
		"ent": {"P1", "", ""}, "sub": {"sT1", "", ""}},
	"dist": {"dist": {"D1", "D2", ""}, "partner": {"P1", "P3", ""}, "tenant": {"T1", "T3", ""}, "user": {"uT1", "uT3", "uPlat"},
		"ent": {"D1", "D2", "platform"}, "sub": {"sT1", "sT3", ""}},
	"part": {"dist": {"", "D2", "D1"}, "partner": {"P1", "P2", ""}, "tenant": {"T1", "T2", ""}, "user": {"uT1", "uT2", "uD1"},
		"ent": {"P1", "P2", "D1"}, "sub": {"sT1", "sT2", ""}},
	"ten": {"dist": {"", "D2", "D1"}, "partner": {"", "P2", "P1"}, "tenant": {"T1", "T2", ""}, "user": {"uT1", "uT2", "uP1"},
		"ent": {"T1", "T2", "P1"}, "sub": {"sT1", "sT2", ""}},
}

type cell struct {
	name   string
	method string
	// path: {t} is the target's id, {s} the target user's scope id, {fresh} a new user like the
	// target, {freshSub} a new subscription of the target subscription's tenant; any other
	// {name} is the id of that fixture (sku, plan, draftPlan, retirePlan).
	path string
	kind string // dist, partner, tenant, user, or "" for routes without a target
	body func(f *fixture, target string) any
	want [9]string // per role, in roleNames order
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
	}, row("2--", "F--", "2UF", "FFF", "FFF", "2UF", "FFF", "2UF", "FFF")}, // the ancestor's role is above the caller's: 403 role_above_caller
	// roles
	{"ListRoles", "GET", "/api/v1/roles", "", nil,
		row("2--", "2--", "2--", "2--", "F--", "2--", "2--", "2--", "2--")},
	{"AssignRole", "PUT", "/api/v1/roles/{t}", "user", func(f *fixture, t string) any { return map[string]any{"role": f.roleOf[t]} },
		row("2--", "F--", "2NN", "FFF", "FFF", "2NN", "FFF", "2NN", "FFF")},
	// SKUs: one platform-wide catalog, read by everyone, written by the platform admin only.
	{"ListSKUs", "GET", "/api/v1/pricing", "", nil,
		row("2--", "2--", "2--", "2--", "2--", "2--", "2--", "2--", "2--")},
	{"GetSKU", "GET", "/api/v1/pricing/{sku}", "", nil,
		row("2--", "2--", "2--", "2--", "2--", "2--", "2--", "2--", "2--")},
	{"CreateSKU", "POST", "/api/v1/pricing", "", func(*fixture, string) any { return skuBody(uniq("m")) },
		row("2--", "F--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	{"UpdateSKU", "PUT", "/api/v1/pricing/{sku}", "", func(*fixture, string) any { return map[string]any{"name": "Renamed"} },
		row("2--", "F--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	{"DeleteSKU", "DELETE", "/api/v1/pricing/{sku}", "", nil, // the fixture plan charges it: 409 sku_in_use
		row("C--", "F--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	// plans: drafts exist only for those who may create plans.
	{"ListPlans", "GET", "/api/v1/plans", "", nil,
		row("2--", "2--", "2--", "2--", "2--", "2--", "2--", "2--", "2--")},
	{"GetPlan", "GET", "/api/v1/plans/{plan}", "", nil,
		row("2--", "2--", "2--", "2--", "2--", "2--", "2--", "2--", "2--")},
	{"GetDraftPlan", "GET", "/api/v1/plans/{draftPlan}", "", nil,
		row("2--", "N--", "N--", "N--", "N--", "N--", "N--", "N--", "N--")},
	{"CreatePlan", "POST", "/api/v1/plans", "", func(f *fixture, _ string) any {
		return map[string]any{"code": uniq("m"), "name": "M", "basePrice": "1", "charges": []map[string]any{{"skuId": f.ids["sku"]}}}
	}, row("2--", "F--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	{"UpdatePlan", "PUT", "/api/v1/plans/{plan}", "", func(*fixture, string) any { return map[string]any{"name": "Renamed"} }, // published: 409 plan_frozen
		row("C--", "F--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	{"DeletePlan", "DELETE", "/api/v1/plans/{plan}", "", nil, // published: 409 plan_not_draft
		row("C--", "F--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	{"PublishPlan", "POST", "/api/v1/plans/{plan}/publish", "", nil, // already published: 409
		row("C--", "F--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	{"RetirePlan", "POST", "/api/v1/plans/{retirePlan}/retire", "", nil,
		row("2--", "F--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	// price lists: any entity of the subtree; overrides by the tenant's channel only.
	{"PriceList", "GET", "/api/v1/pricelists/{t}", "ent", nil,
		row("2--", "2--", "2NN", "2NN", "2NN", "2NN", "2NN", "2NN", "2NN")},
	{"PutOverride", "PUT", "/api/v1/pricelists/{t}/{sku}", "tenant", func(*fixture, string) any {
		return map[string]any{"model": "per_unit", "unitPrice": "0.5"}
	}, row("2--", "F--", "2N-", "FF-", "FF-", "2N-", "FF-", "FF-", "FF-")},
	{"EndOverride", "DELETE", "/api/v1/pricelists/{t}/{sku}", "tenant", nil,
		row("2--", "F--", "2N-", "FF-", "FF-", "2N-", "FF-", "FF-", "FF-")},
	// subscriptions: a tenant's subscriptions belong to its subtree.
	{"ListSubscriptions", "GET", "/api/v1/subscriptions?tenantId={t}", "tenant", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-")},
	{"CreateSubscription", "POST", "/api/v1/subscriptions", "tenant", func(f *fixture, t string) any {
		return map[string]any{"tenantId": f.ids[t], "planId": f.ids["plan"], "quantity": 1}
	}, row("2--", "F--", "2U-", "FF-", "FF-", "2U-", "FF-", "2U-", "FF-")},
	{"GetSubscription", "GET", "/api/v1/subscriptions/{t}", "sub", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-")},
	{"UpdateSubscription", "PUT", "/api/v1/subscriptions/{t}", "sub", func(*fixture, string) any { return map[string]any{"quantity": "2"} },
		row("2--", "F--", "2N-", "FF-", "FF-", "2N-", "FF-", "2N-", "FF-")},
	{"CancelSubscription", "DELETE", "/api/v1/subscriptions/{freshSub}", "sub", nil,
		row("2--", "F--", "2N-", "FF-", "FF-", "2N-", "FF-", "2N-", "FF-")},
	{"SetLicenseKey", "PUT", "/api/v1/subscriptions/{t}/license-key", "sub", func(*fixture, string) any { return map[string]any{"licenseKey": uniq("K")} },
		row("2--", "F--", "2N-", "FF-", "FF-", "2N-", "FF-", "2N-", "FF-")},
	{"SubscriptionHistory", "GET", "/api/v1/subscriptions/{t}/history", "sub", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-")},
	// usage: a record of a tenant outside the caller's subtree is rejected inside the 202 answer
	// (TestUsageScoping checks the answers), never counted.
	{"PushUsage", "POST", "/api/v1/usage", "tenant", func(f *fixture, t string) any {
		return map[string]any{"records": []map[string]any{{"id": uniq("r"), "tenantId": f.ids[t], "sku": "none", "quantity": 1,
			"timestamp": time.Now().UTC().Format(time.RFC3339)}}}
	}, row("2--", "F--", "22-", "FF-", "FF-", "22-", "FF-", "FF-", "FF-")},
	{"ListUsage", "GET", "/api/v1/usage?tenantId={t}", "tenant", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-")},
	// billing: only the platform admin starts runs (a period not yet ended: 422 after the
	// permission check); runs are read at the platform (finance holds billing.runs.read only
	// there: 403 at D1); invoices and the
	// billing summary by everyone in their subtree; commissions by the channel, not tenants.
	{"StartBillingRun", "POST", "/api/v1/billing/runs", "", func(*fixture, string) any { return map[string]any{"period": "2999-01"} },
		row("U--", "F--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	{"GetBillingRun", "GET", "/api/v1/billing/runs/{noRun}", "", nil,
		row("N--", "N--", "F--", "F--", "F--", "F--", "F--", "F--", "F--")},
	{"BillingSummary", "GET", "/api/v1/billing/summary?entityId={t}", "ent", nil,
		row("2--", "2--", "2NN", "2NN", "2NN", "2NN", "2NN", "2NN", "2NN")},
	{"ListInvoices", "GET", "/api/v1/invoices?tenantId={t}", "tenant", nil,
		row("2--", "2--", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-", "2N-")},
	{"GetInvoice", "GET", "/api/v1/invoices/{noInvoice}", "", nil,
		row("N--", "N--", "N--", "N--", "N--", "N--", "N--", "N--", "N--")},
	{"CommissionSummary", "GET", "/api/v1/commissions/summary?entityId={t}", "ent", nil,
		row("2--", "2--", "2NN", "2NN", "2NN", "2NN", "2NN", "FFF", "FFF")},
	{"ListCommissions", "GET", "/api/v1/commissions?entityId={t}", "ent", nil,
		row("2--", "2--", "2NN", "2NN", "2NN", "2NN", "2NN", "FFF", "FFF")},
}

// skuBody is a valid per-unit SKU with the given code.
func skuBody(code string) map[string]any {
	return map[string]any{"code": code, "name": "SKU " + code, "unit": "call", "model": "per_unit", "unitPrice": "0.01"}
}

func contactBody(*fixture, string) any   { return map[string]any{"contactEmail": "ops@example.test"} }
func reinstateBody(*fixture, string) any { return map[string]any{"suspended": false} }
func markupBody(*fixture, string) any {
	return map[string]any{"markup": "1.5", "startDate": nextMonthStart()}
}

type fixture struct {
	ids      map[string]string // fixture name -> entity, user, SKU, plan or subscription id
	scopeOf  map[string]string // user fixture -> its scope entity id
	roleOf   map[string]string // user fixture -> its role
	tenantOf map[string]string // subscription fixture -> its tenant's fixture name
	actors   map[string]client
}

func buildFixture(t *testing.T) *fixture {
	a := admin(t)
	f := &fixture{ids: map[string]string{"platform": "platform", "noRun": "run_none", "noInvoice": "inv_none"}, scopeOf: map[string]string{}, roleOf: map[string]string{},
		tenantOf: map[string]string{}, actors: map[string]client{}}
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
	// The catalog: a SKU charged by a published plan, a draft plan, a plan to retire; and one
	// subscription per tenant.
	var obj struct {
		ID string `json:"id"`
	}
	a.must(201, "POST", "/api/v1/pricing", skuBody(uniq("matrix")), &obj)
	f.ids["sku"] = obj.ID
	for _, name := range []string{"plan", "draftPlan", "retirePlan"} {
		a.must(201, "POST", "/api/v1/plans", map[string]any{"code": uniq(name), "name": name, "basePrice": "10",
			"charges": []map[string]any{{"skuId": f.ids["sku"]}}}, &obj)
		f.ids[name] = obj.ID
		if name != "draftPlan" {
			a.must(200, "POST", "/api/v1/plans/"+obj.ID+"/publish", nil, nil)
		}
	}
	for _, tn := range []string{"T1", "T2", "T3"} {
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": f.ids[tn], "planId": f.ids["plan"], "quantity": 1}, &obj)
		f.ids["s"+tn], f.tenantOf["s"+tn] = obj.ID, tn
	}
	scopes := map[string]string{"plat": "platform", "dist": "D1", "part": "P1", "ten": "T1"}
	for _, role := range roleNames {
		_, c := mkUser(t, a, role, f.ids[scopes[groupOf[role]]])
		f.actors[role] = c
	}
	return f
}

var statusOf = map[byte][]int{'2': {200, 201, 202}, 'F': {403}, 'N': {404}, 'C': {409}, 'U': {422}}

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
					if strings.Contains(path, "{freshSub}") {
						var sub struct {
							ID string `json:"id"`
						}
						a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": f.ids[f.tenantOf[tgt]], "planId": f.ids["plan"], "quantity": 1}, &sub)
						path = strings.ReplaceAll(path, "{freshSub}", sub.ID)
					}
					path = fixtureRef.ReplaceAllStringFunc(path, func(m string) string { return f.ids[m[1:len(m)-1]] })
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

// fixtureRef is a {name} left in a path after {t}, {s}, {fresh} and {freshSub}.
var fixtureRef = regexp.MustCompile(`\{[A-Za-z]+\}`)

// TestMatrixCoversEveryProtectedRoute fails when a route is added without a row in the matrix.
// Paths are compared with every {parameter} made anonymous: /pricelists/{entityId}/{skuId} is
// covered by /pricelists/{t}/{sku}.
func TestMatrixCoversEveryProtectedRoute(t *testing.T) {
	covered := map[string]bool{}
	for _, c := range matrix {
		p, _, _ := strings.Cut(c.path, "?")
		covered[c.method+" "+fixtureRef.ReplaceAllString(p, "{}")] = true
	}
	for _, r := range allProtectedRoutes() {
		if !covered[fixtureRef.ReplaceAllString(r, "{}")] {
			t.Errorf("%s has no row in the scoping matrix", r)
		}
	}
}

// TestScopingUnfilteredLists: a plain list (no parent, tenantId or scopeId filter) answers the
// caller's subtree and nothing else. A partner admin of P1 never sees its sibling P2's partner,
// tenants, users or subscriptions; a distributor admin never sees another distributor.
func TestScopingUnfilteredLists(t *testing.T) {
	a := admin(t)
	d1 := create(t, a, "distributors", map[string]any{"name": "Lists D1"})
	d2 := create(t, a, "distributors", map[string]any{"name": "Lists D2"})
	p1 := create(t, a, "partners", map[string]any{"name": "Lists P1", "parent": parent("distributor", d1.ID)})
	p2 := create(t, a, "partners", map[string]any{"name": "Lists P2", "parent": parent("distributor", d1.ID)})
	t1 := create(t, a, "tenants", map[string]any{"name": "Lists T1", "parent": parent("partner", p1.ID)})
	t2 := create(t, a, "tenants", map[string]any{"name": "Lists T2", "parent": parent("partner", p2.ID)})
	u1, _ := mkUser(t, a, "tenant_viewer", t1.ID)
	u2, _ := mkUser(t, a, "tenant_viewer", t2.ID)
	_, pa := mkUser(t, a, "partner_admin", p1.ID)
	_, da := mkUser(t, a, "distributor_admin", d1.ID)
	var obj struct {
		ID string `json:"id"`
	}
	a.must(201, "POST", "/api/v1/pricing", skuBody(uniq("lists")), &obj)
	sku := obj.ID
	a.must(201, "POST", "/api/v1/plans", map[string]any{"code": uniq("lists"), "name": "Lists", "basePrice": "10",
		"charges": []map[string]any{{"skuId": sku}}}, &obj)
	plan := obj.ID
	a.must(200, "POST", "/api/v1/plans/"+plan+"/publish", nil, nil)
	subs := map[string]string{}
	for _, tn := range []entity{t1, t2} {
		a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan, "quantity": 1}, &obj)
		subs[tn.ID] = obj.ID
	}

	// all lists every page of path as c and returns each item's id and its tenant or scope.
	all := func(c client, path string) map[string]string {
		t.Helper()
		out := map[string]string{}
		for next := path + "?page_size=500"; next != ""; {
			var items []struct {
				ID       string `json:"id"`
				TenantID string `json:"tenantId"`
				Scope    struct {
					ID string `json:"id"`
				} `json:"scope"`
			}
			env := c.must(200, "GET", next, nil, &items)
			for _, it := range items {
				out[it.ID] = it.TenantID + it.Scope.ID
			}
			next = ""
			if env.Page.Next != "" {
				next = path + "?next=" + url.QueryEscape(env.Page.Next)
			}
		}
		return out
	}
	expect := func(t *testing.T, got map[string]string, in, out []string) {
		t.Helper()
		for _, id := range in {
			if _, ok := got[id]; !ok {
				t.Errorf("%s of the caller's subtree is missing", id)
			}
		}
		for _, id := range out {
			if _, ok := got[id]; ok {
				t.Errorf("%s of a sibling's subtree is listed", id)
			}
		}
	}
	t.Run("Tenants", func(t *testing.T) {
		got := all(pa, "/api/v1/tenants")
		expect(t, got, []string{t1.ID}, []string{t2.ID})
		if len(got) != 1 {
			t.Errorf("P1 has one tenant, listed %d", len(got))
		}
	})
	t.Run("Partners", func(t *testing.T) {
		got := all(pa, "/api/v1/partners")
		expect(t, got, []string{p1.ID}, []string{p2.ID})
		if len(got) != 1 {
			t.Errorf("a partner admin sees its own partner only, listed %d", len(got))
		}
	})
	t.Run("Users", func(t *testing.T) {
		got := all(pa, "/api/v1/users")
		expect(t, got, []string{u1.ID}, []string{u2.ID})
		for id, scope := range got {
			if scope != p1.ID && scope != t1.ID {
				t.Errorf("user %s scoped at %s is outside P1", id, scope)
			}
		}
	})
	t.Run("Subscriptions", func(t *testing.T) {
		got := all(pa, "/api/v1/subscriptions")
		expect(t, got, []string{subs[t1.ID]}, []string{subs[t2.ID]})
		for id, tenant := range got {
			if tenant != t1.ID {
				t.Errorf("subscription %s of tenant %s is outside P1", id, tenant)
			}
		}
	})
	t.Run("Invoices", func(t *testing.T) {
		for id, tenant := range all(pa, "/api/v1/invoices") {
			if tenant != t1.ID {
				t.Errorf("invoice %s of tenant %s is outside P1", id, tenant)
			}
		}
	})
	t.Run("Distributors", func(t *testing.T) {
		got := all(da, "/api/v1/distributors")
		expect(t, got, []string{d1.ID}, []string{d2.ID})
		if len(got) != 1 {
			t.Errorf("a distributor admin sees its own distributor only, listed %d", len(got))
		}
		expect(t, all(da, "/api/v1/partners"), []string{p1.ID, p2.ID}, nil)
		expect(t, all(da, "/api/v1/tenants"), []string{t1.ID, t2.ID}, nil)
	})
}
