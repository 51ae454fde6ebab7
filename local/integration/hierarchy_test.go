package integration_test

import (
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

func nextMonthStart() string {
	now := time.Now().UTC()
	return time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
}

func TestHierarchyLifecycle(t *testing.T) {
	a := admin(t)
	d := create(t, a, "distributors", map[string]any{"name": "Dist " + uniq("d"), "contactEmail": "d@example.test",
		"markups": []map[string]any{{"markup": "10.0", "startDate": "2026-01-01"}}})
	if d.Type != "distributor" || d.Status != "active" || d.Currency != "EUR" || d.Parent == nil || d.Parent.ID != "platform" {
		t.Fatalf("distributor %+v", d)
	}
	p := create(t, a, "partners", map[string]any{"name": "Partner", "parent": parent("distributor", d.ID), "tier": "premium"})
	tn := create(t, a, "tenants", map[string]any{"name": "Tenant", "parent": parent("partner", p.ID), "contactName": "Ann", "phone": "+32 2 123"})
	if tn.NbOfSubscriptions == nil || *tn.NbOfSubscriptions != 0 || tn.Parent.Name != "Partner" {
		t.Fatalf("tenant %+v", tn)
	}
	t.Run("CountsTenantsOfAncestors", func(t *testing.T) {
		var got entity
		a.must(200, "GET", "/api/v1/distributors/"+d.ID, nil, &got)
		if got.NbOfTenants == nil || *got.NbOfTenants != 1 {
			t.Fatalf("nbOfTenants %v", got.NbOfTenants)
		}
		a.must(200, "GET", "/api/v1/partners/"+p.ID, nil, &got)
		if *got.NbOfTenants != 1 {
			t.Fatalf("partner nbOfTenants %v", *got.NbOfTenants)
		}
	})
	t.Run("Update", func(t *testing.T) {
		var got entity
		a.must(200, "PUT", "/api/v1/tenants/"+tn.ID, map[string]any{"name": "Renamed"}, &got)
		if got.Name != "Renamed" {
			t.Fatalf("name %q", got.Name)
		}
		a.must(200, "GET", "/api/v1/tenants/"+tn.ID, nil, &got)
		if got.Name != "Renamed" {
			t.Fatal("update not stored")
		}
	})
	t.Run("ErrParentImmutable", func(t *testing.T) {
		env := a.do("PUT", "/api/v1/partners/"+p.ID, map[string]any{"parent": parent("platform", "platform")})
		if env.status != 400 || !env.hasError("immutable", "parent") {
			t.Fatalf("got %s", env.raw)
		}
	})
	t.Run("ErrDeleteWithChildren", func(t *testing.T) {
		env := a.do("DELETE", "/api/v1/partners/"+p.ID, nil)
		if env.status != 409 || !env.hasError("has_children", "") {
			t.Fatalf("got %s", env.raw)
		}
	})
	t.Run("Markups", func(t *testing.T) {
		a.must(201, "POST", "/api/v1/distributors/"+d.ID+"/markups", map[string]any{"markup": 12.5, "startDate": nextMonthStart()}, nil)
		var ms []struct {
			Markup    string `json:"markup"`
			StartDate string `json:"startDate"`
		}
		a.must(200, "GET", "/api/v1/distributors/"+d.ID+"/markups", nil, &ms)
		if len(ms) != 2 || ms[0].Markup != "12.5" || ms[0].StartDate != nextMonthStart() || ms[1].Markup != "10.0" {
			t.Fatalf("history, newest first: %+v", ms)
		}
		t.Run("SearchSortDir", func(t *testing.T) {
			a.must(201, "POST", "/api/v1/distributors/"+d.ID+"/markups", map[string]any{"markup": "9.5", "startDate": nextMonthStart()}, nil)
			marks := func(path string) []string {
				var ms []struct {
					Markup string `json:"markup"`
				}
				a.must(200, "GET", "/api/v1/distributors/"+d.ID+"/markups"+path, nil, &ms)
				var out []string
				for _, m := range ms {
					out = append(out, m.Markup)
				}
				return out
			}
			// Default: newest first (the latest entry for next month's start, then older ones).
			if got := strings.Join(marks(""), " "); got != "9.5 12.5 10.0" {
				t.Fatalf("default order %s", got)
			}
			// By value, not by text ("9.5" < "10.0").
			if got := strings.Join(marks("?sort=markup"), " "); got != "9.5 10.0 12.5" {
				t.Fatalf("sort=markup %s", got)
			}
			if got := strings.Join(marks("?sort=markup&dir=desc"), " "); got != "12.5 10.0 9.5" {
				t.Fatalf("sort=markup&dir=desc %s", got)
			}
			if got := strings.Join(marks("?dir=asc"), " "); got != "10.0 12.5 9.5" {
				t.Fatalf("dir=asc (oldest first) %s", got)
			}
			if got := strings.Join(marks("?search=2.5"), " "); got != "12.5" {
				t.Fatalf("search=2.5 %s", got)
			}
			// Through pages, the order holds.
			var all []string
			path := "/api/v1/distributors/" + d.ID + "/markups?page_size=2&sort=markup"
			for path != "" {
				var ms []struct {
					Markup string `json:"markup"`
				}
				env := a.must(200, "GET", path, nil, &ms)
				for _, m := range ms {
					all = append(all, m.Markup)
				}
				path = ""
				if env.Page.Next != "" {
					path = "/api/v1/distributors/" + d.ID + "/markups?next=" + url.QueryEscape(env.Page.Next)
				}
			}
			if got := strings.Join(all, " "); got != "9.5 10.0 12.5" {
				t.Fatalf("paged sort=markup %s", got)
			}
			if env := a.do("GET", "/api/v1/distributors/"+d.ID+"/markups?sort=bogus", nil); env.status != 400 || !env.hasError("invalid", "sort") {
				t.Fatalf("sort=bogus: %s", env.raw)
			}
		})
		env := a.do("POST", "/api/v1/distributors/"+d.ID+"/markups", map[string]any{"markup": "-1", "startDate": "2020-01-01"})
		if env.status != 400 || !env.hasError("out_of_range", "markup") {
			t.Fatalf("got %s", env.raw)
		}
		env = a.do("POST", "/api/v1/distributors/"+d.ID+"/markups", map[string]any{"markup": "5", "startDate": "2020-01-01"})
		if env.status != 400 || !env.hasError("in_past", "startDate") {
			t.Fatalf("a markup may not rewrite a running or past period: %s", env.raw)
		}
	})
	t.Run("Suspension", func(t *testing.T) {
		_, pa := mkUser(t, a, "partner_admin", p.ID)
		_, ta := mkUser(t, a, "tenant_admin", tn.ID)
		pa.must(200, "GET", "/api/v1/tenants/"+tn.ID, nil, nil)
		env := a.do("PUT", "/api/v1/distributors/"+d.ID+"/suspension", map[string]any{"suspended": true})
		if env.status != 400 || !env.hasError("required", "reason") {
			t.Fatalf("suspension needs a reason: %s", env.raw)
		}
		var got entity
		a.must(200, "PUT", "/api/v1/distributors/"+d.ID+"/suspension", map[string]any{"suspended": true, "reason": "unpaid"}, &got)
		if got.Status != "suspended" {
			t.Fatalf("status %s", got.Status)
		}
		for _, c := range []client{pa, ta} {
			env := c.do("GET", "/api/v1/tenants/"+tn.ID, nil)
			if env.status != 403 || !env.hasError("account_suspended", "") {
				t.Fatalf("a user inside a suspended subtree must get account_suspended: %s", env.raw)
			}
		}
		a.must(200, "PUT", "/api/v1/distributors/"+d.ID+"/suspension", map[string]any{"suspended": false}, &got)
		pa.must(200, "GET", "/api/v1/tenants/"+tn.ID, nil, nil)
	})
	t.Run("Delete", func(t *testing.T) {
		leaf := create(t, a, "tenants", map[string]any{"name": "Leaf", "parent": parent("partner", p.ID)})
		a.must(200, "DELETE", "/api/v1/tenants/"+leaf.ID, nil, nil)
		if env := a.do("GET", "/api/v1/tenants/"+leaf.ID, nil); env.status != 404 {
			t.Fatalf("deleted tenant still there: %s", env.raw)
		}
		var got entity
		a.must(200, "GET", "/api/v1/partners/"+p.ID, nil, &got)
		if *got.NbOfTenants != 1 {
			t.Fatalf("delete must decrement the counters, got %d", *got.NbOfTenants)
		}
	})
	t.Run("DeletePartnerThenDistributor", func(t *testing.T) {
		d2 := create(t, a, "distributors", map[string]any{"name": "Doomed " + uniq("d"), "billingId": uniq("doomed")})
		p2 := create(t, a, "partners", map[string]any{"name": "Doomed P", "parent": parent("distributor", d2.ID)})
		if env := a.do("DELETE", "/api/v1/distributors/"+d2.ID, nil); env.status != 409 || !env.hasError("has_children", "") {
			t.Fatalf("a distributor with a partner: %s", env.raw)
		}
		a.must(200, "DELETE", "/api/v1/partners/"+p2.ID, nil, nil)
		if env := a.do("GET", "/api/v1/partners/"+p2.ID, nil); env.status != 404 {
			t.Fatalf("deleted partner still there: %s", env.raw)
		}
		// The partner's delete released its parent: the distributor has no child left.
		a.must(200, "DELETE", "/api/v1/distributors/"+d2.ID, nil, nil)
		if env := a.do("GET", "/api/v1/distributors/"+d2.ID, nil); env.status != 404 {
			t.Fatalf("deleted distributor still there: %s", env.raw)
		}
		var items []entity
		a.must(200, "GET", "/api/v1/distributors?search="+url.QueryEscape(d2.Name), nil, &items)
		if len(items) != 0 {
			t.Fatalf("a deleted distributor is still listed: %+v", items)
		}
		// Its billingId is free again.
		create(t, a, "distributors", map[string]any{"name": "Heir", "billingId": d2.BillingID})
		// A distributor-less partner (under the platform) deletes the same way.
		lone := create(t, a, "partners", map[string]any{"name": "Lone P", "parent": parent("platform", "platform")})
		a.must(200, "DELETE", "/api/v1/partners/"+lone.ID, nil, nil)
		if env := a.do("GET", "/api/v1/partners/"+lone.ID, nil); env.status != 404 {
			t.Fatalf("deleted partner still there: %s", env.raw)
		}
	})
}

func TestCreateValidation(t *testing.T) {
	a := admin(t)
	cases := []struct {
		name   string
		path   string
		body   any
		status int
		code   string
		field  string
	}{
		{"ErrMissingName", "/api/v1/distributors", map[string]any{}, 400, "required", "name"},
		{"ErrBadEmail", "/api/v1/distributors", map[string]any{"name": "x", "contactEmail": "nope"}, 400, "invalid", "contactEmail"},
		{"ErrUnknownField", "/api/v1/distributors", map[string]any{"name": "x", "nmae": "typo"}, 400, "unknown_field", "nmae"},
		{"ErrWrongType", "/api/v1/distributors", map[string]any{"name": 42}, 400, "invalid_type", "name"},
		{"ErrBadJSON", "/api/v1/distributors", `{"name": `, 400, "invalid_json", ""},
		{"ErrTierOnTenant", "/api/v1/tenants", map[string]any{"name": "x", "tier": "premium", "parent": parent("partner", "prt_x")}, 400, "not_allowed", "tier"},
		{"ErrPlatformMustNameParent", "/api/v1/tenants", map[string]any{"name": "x"}, 400, "required", "parent"},
		{"ErrUnknownParent", "/api/v1/tenants", map[string]any{"name": "x", "parent": parent("partner", "prt_missing")}, 422, "not_found", "parent.id"},
		{"ErrWrongParentType", "/api/v1/tenants", map[string]any{"name": "x", "parent": parent("platform", "platform")}, 422, "invalid", "parent.type"},
		{"ErrBadMarkup", "/api/v1/distributors", map[string]any{"name": "x", "markups": []any{map[string]any{"markup": "abc", "startDate": "2026-13-01"}}}, 400, "invalid", "markups[0].markup"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := a.do("POST", c.path, c.body)
			if env.status != c.status || !env.hasError(c.code, c.field) {
				t.Fatalf("want %d %s/%s, got %s", c.status, c.code, c.field, env.raw)
			}
		})
	}
	t.Run("ErrAllFieldsAtOnce", func(t *testing.T) {
		env := a.do("POST", "/api/v1/distributors", map[string]any{"contactEmail": "bad", "currency": "euro"})
		if !env.hasError("required", "name") || !env.hasError("invalid", "contactEmail") || !env.hasError("invalid", "currency") {
			t.Fatalf("every bad field must be listed: %s", env.raw)
		}
	})
	t.Run("ErrTooLarge", func(t *testing.T) {
		big := `{"name":"` + strings.Repeat("x", 1<<20) + `"}`
		if env := a.do("POST", "/api/v1/distributors", big); env.status != 413 {
			t.Fatalf("got %d", env.status)
		}
	})
	t.Run("ErrNoInternals", func(t *testing.T) {
		env := a.do("GET", "/api/v1/tenants/"+url.PathEscape("../../etc"), nil)
		if strings.Contains(strings.ToLower(env.raw), "dynamo") || strings.Contains(env.raw, deps.Config.Table) {
			t.Fatalf("internals leaked: %s", env.raw)
		}
	})
}

func TestBillingIDUniqueUnderConcurrency(t *testing.T) {
	a := admin(t)
	bid := uniq("bid")
	var wg sync.WaitGroup
	answers := make([]envelope, 20)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = a.do("POST", "/api/v1/distributors", map[string]any{"name": fmt.Sprint("Race ", i), "billingId": bid})
		}()
	}
	wg.Wait()
	// Every create also adds to the platform's counters: the losers must lose on the billingId
	// (409 billing_id_taken naming the field), never on a transaction conflict.
	created, taken := 0, 0
	var statuses []string
	for _, env := range answers {
		switch {
		case env.status == 201:
			created++
		case env.status == 409 && len(env.Errors) == 1 && env.hasError("taken", "billingId"):
			taken++
		}
		statuses = append(statuses, fmt.Sprint(env.status, " ", env.raw))
	}
	if created != 1 || taken != 19 {
		t.Fatalf("want exactly one 201 and 19 409 billingId taken, got:\n%s", strings.Join(statuses, "\n"))
	}
	t.Run("ErrUpdateToTakenBillingID", func(t *testing.T) {
		other := create(t, a, "distributors", map[string]any{"name": "Other"})
		env := a.do("PUT", "/api/v1/distributors/"+other.ID, map[string]any{"billingId": bid})
		if env.status != 409 || !env.hasError("taken", "billingId") {
			t.Fatalf("got %s", env.raw)
		}
		free := uniq("free")
		a.must(200, "PUT", "/api/v1/distributors/"+other.ID, map[string]any{"billingId": free}, nil)
		a.must(200, "PUT", "/api/v1/distributors/"+other.ID, map[string]any{"billingId": uniq("again")}, nil)
		// The released billingId is free again.
		create(t, a, "distributors", map[string]any{"name": "Reuse", "billingId": free})
	})
}

func TestPaginationSearchSort(t *testing.T) {
	a := admin(t)
	d := create(t, a, "distributors", map[string]any{"name": "Pager"})
	p := create(t, a, "partners", map[string]any{"name": "Pager P", "parent": parent("distributor", d.ID)})
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("Tenant %02d", i)
		if i%4 == 0 {
			name = fmt.Sprintf("Acme %02d", i)
		}
		create(t, a, "tenants", map[string]any{"name": name, "parent": parent("partner", p.ID)})
	}
	t.Run("ThroughEveryPage", func(t *testing.T) {
		seen := map[string]bool{}
		path := "/api/v1/tenants?parent=" + p.ID + "&page_size=5&sort=name&dir=desc"
		pages, last := 0, "~"
		for path != "" {
			var items []entity
			env := a.must(200, "GET", path, nil, &items)
			pages++
			for _, e := range items {
				if seen[e.ID] {
					t.Fatalf("%s listed twice", e.ID)
				}
				if e.Name > last {
					t.Fatalf("not sorted desc: %s after %s", e.Name, last)
				}
				seen[e.ID], last = true, e.Name
			}
			path = ""
			if env.Page.Next != "" {
				path = "/api/v1/tenants?next=" + url.QueryEscape(env.Page.Next)
			}
		}
		if len(seen) != 12 || pages != 3 {
			t.Fatalf("saw %d tenants in %d pages", len(seen), pages)
		}
	})
	t.Run("Search", func(t *testing.T) {
		var items []entity
		a.must(200, "GET", "/api/v1/tenants?parent="+p.ID+"&search=ACME", nil, &items)
		if len(items) != 3 {
			t.Fatalf("search found %d", len(items))
		}
	})
	t.Run("ErrTamperedNext", func(t *testing.T) {
		env := a.must(200, "GET", "/api/v1/tenants?parent="+p.ID+"&page_size=5", nil, nil)
		tok := env.Page.Next
		flip := byte('A')
		if tok[5] == 'A' {
			flip = 'B'
		}
		tampered := tok[:5] + string(flip) + tok[6:]
		if env := a.do("GET", "/api/v1/tenants?next="+url.QueryEscape(tampered), nil); env.status != 400 || !env.hasError("invalid_next", "next") {
			t.Fatalf("got %s", env.raw)
		}
		// A token is bound to its caller's scope: another user's token is refused.
		_, pa := mkUser(t, a, "partner_admin", p.ID)
		if env := pa.do("GET", "/api/v1/tenants?next="+url.QueryEscape(tok), nil); env.status != 400 {
			t.Fatalf("a token replayed by another scope: %s", env.raw)
		}
		// And to its route.
		if env := a.do("GET", "/api/v1/partners?next="+url.QueryEscape(tok), nil); env.status != 400 {
			t.Fatalf("a token replayed on another route: %s", env.raw)
		}
	})
	t.Run("ErrBadParams", func(t *testing.T) {
		env := a.do("GET", "/api/v1/tenants?page_size=0&dir=up&sort=password", nil)
		if env.status != 400 || !env.hasError("out_of_range", "page_size") || !env.hasError("invalid", "dir") {
			t.Fatalf("got %s", env.raw)
		}
	})
	t.Run("StatusFilter", func(t *testing.T) {
		var items []entity
		a.must(200, "GET", "/api/v1/tenants?parent="+p.ID+"&status=suspended", nil, &items)
		if len(items) != 0 {
			t.Fatalf("got %d suspended", len(items))
		}
	})
}

func TestIdempotencyKey(t *testing.T) {
	a := admin(t)
	key := uniq("key")
	body := map[string]any{"name": "Idem " + key}
	first := a.do("POST", "/api/v1/distributors", body, "Idempotency-Key", key)
	second := a.do("POST", "/api/v1/distributors", body, "Idempotency-Key", key)
	if first.status != 201 || second.status != 201 || string(first.Data) != string(second.Data) {
		t.Fatalf("the replay must return the first response:\n%s\n%s", first.raw, second.raw)
	}
	var items []entity
	a.must(200, "GET", "/api/v1/distributors?search="+url.QueryEscape(key), nil, &items)
	if len(items) != 1 {
		t.Fatalf("the replay created %d distributors", len(items))
	}
	conflict := a.do("POST", "/api/v1/distributors", map[string]any{"name": "different"}, "Idempotency-Key", key)
	if conflict.status != 409 || !conflict.hasError("idempotency_key_reused", "") {
		t.Fatalf("got %s", conflict.raw)
	}
}

// TestRenameShowsEverywhere renames a partner and a distributor and reads the new names where
// other answers name them: children's parent (GET, list, the answers of updates) and users'
// scope (GET, list, PUT, welcome). Names are resolved when the answer is made, never copied.
func TestRenameShowsEverywhere(t *testing.T) {
	a := admin(t)
	d := create(t, a, "distributors", map[string]any{"name": uniq("D old")})
	p := create(t, a, "partners", map[string]any{"name": uniq("P old"), "parent": parent("distributor", d.ID)})
	sib := create(t, a, "partners", map[string]any{"name": uniq("Sibling"), "parent": parent("distributor", d.ID)})
	tn := create(t, a, "tenants", map[string]any{"name": uniq("T"), "parent": parent("partner", p.ID)})
	sibT := create(t, a, "tenants", map[string]any{"name": uniq("T sib"), "parent": parent("partner", sib.ID)})
	if tn.Parent.Name != p.Name || p.Parent.Name != d.Name {
		t.Fatalf("created with parents %+v and %+v", tn.Parent, p.Parent)
	}
	pu, pc := mkUser(t, a, "partner_viewer", p.ID)
	du, _ := mkUser(t, a, "distributor_viewer", d.ID)
	if pu.Scope.Name != p.Name || du.Scope.Name != d.Name {
		t.Fatalf("created with scopes %+v and %+v", pu.Scope, du.Scope)
	}
	invited := struct{ ID string }{}
	a.must(201, "POST", "/api/v1/users", map[string]any{"email": strings.ToLower(uniq("inv")) + "@example.test", "firstName": "I",
		"lastName": "Nvited", "role": "partner_viewer", "scopeId": p.ID}, &invited)

	// parentName checks GET path and every item of the list at listPath (which must list want).
	parentName := func(t *testing.T, c client, getPath, listPath string, want map[string]string) {
		t.Helper()
		var one entity
		c.must(200, "GET", getPath, nil, &one)
		if one.Parent == nil || one.Parent.Name != want[one.ID] {
			t.Errorf("GET %s: parent %+v, want name %q", getPath, one.Parent, want[one.ID])
		}
		var items []entity
		c.must(200, "GET", listPath, nil, &items)
		seen := 0
		for _, e := range items {
			if w, ok := want[e.ID]; ok {
				seen++
				if e.Parent == nil || e.Parent.Name != w {
					t.Errorf("GET %s: %s has parent %+v, want name %q", listPath, e.ID, e.Parent, w)
				}
			}
		}
		if seen != len(want) {
			t.Errorf("GET %s: listed %d of %v", listPath, seen, want)
		}
	}
	scopeName := func(t *testing.T, want map[string]string, listPath string) {
		t.Helper()
		for id, w := range want {
			var u user
			a.must(200, "GET", "/api/v1/users/"+id, nil, &u)
			if u.Scope.Name != w {
				t.Errorf("GET user %s: scope %+v, want name %q", id, u.Scope, w)
			}
		}
		var us []user
		a.must(200, "GET", listPath, nil, &us)
		seen := 0
		for _, u := range us {
			if w, ok := want[u.ID]; ok {
				seen++
				if u.Scope.Name != w {
					t.Errorf("GET %s: user %s has scope %+v, want name %q", listPath, u.ID, u.Scope, w)
				}
			}
		}
		if seen != len(want) {
			t.Errorf("GET %s: listed %d of %v", listPath, seen, want)
		}
	}

	t.Run("Partner", func(t *testing.T) {
		newName := uniq("P new")
		var renamed entity
		a.must(200, "PUT", "/api/v1/partners/"+p.ID, map[string]any{"name": newName}, &renamed)
		if renamed.Name != newName || renamed.Parent == nil || renamed.Parent.Name != d.Name {
			t.Fatalf("PUT answer %+v", renamed)
		}
		want := map[string]string{tn.ID: newName}
		parentName(t, a, "/api/v1/tenants/"+tn.ID, "/api/v1/tenants?parent="+p.ID, want)
		// Seen from inside the renamed partner too, and in a list of tenants of several partners.
		parentName(t, pc, "/api/v1/tenants/"+tn.ID, "/api/v1/tenants", want)
		parentName(t, a, "/api/v1/tenants/"+sibT.ID, "/api/v1/tenants?parent="+d.ID+"&page_size=500",
			map[string]string{tn.ID: newName, sibT.ID: sib.Name})
		scopeName(t, map[string]string{pu.ID: newName, invited.ID: newName, du.ID: d.Name}, "/api/v1/users?scopeId="+d.ID)
		// The answers of the writes on a user name its scope as it is now as well.
		var u user
		a.must(200, "PUT", "/api/v1/users/"+pu.ID, map[string]any{"mobile": "+32 2 000"}, &u)
		if u.Scope.Name != newName {
			t.Errorf("PUT user: scope %+v", u.Scope)
		}
		a.must(200, "POST", "/api/v1/users/"+invited.ID+"/welcome", nil, &u)
		if u.Scope.Name != newName {
			t.Errorf("welcome: scope %+v", u.Scope)
		}
	})
	t.Run("Distributor", func(t *testing.T) {
		newName := uniq("D new")
		a.must(200, "PUT", "/api/v1/distributors/"+d.ID, map[string]any{"name": newName}, nil)
		parentName(t, a, "/api/v1/partners/"+p.ID, "/api/v1/partners?parent="+d.ID,
			map[string]string{p.ID: newName, sib.ID: newName})
		// The partner's own user sees its partner under the new name too.
		parentName(t, pc, "/api/v1/partners/"+p.ID, "/api/v1/partners", map[string]string{p.ID: newName})
		scopeName(t, map[string]string{du.ID: newName}, "/api/v1/users?scopeId="+d.ID)
		// Writes on a child answer with its parent's current name.
		var got entity
		a.must(200, "PUT", "/api/v1/partners/"+sib.ID+"/suspension", map[string]any{"suspended": true, "reason": "rename test"}, &got)
		if got.Parent == nil || got.Parent.Name != newName {
			t.Errorf("suspension answer: parent %+v", got.Parent)
		}
		a.must(201, "POST", "/api/v1/partners/"+sib.ID+"/markups", map[string]any{"markup": "5", "startDate": nextMonthStart()}, &got)
		if got.Parent == nil || got.Parent.Name != newName {
			t.Errorf("markup answer: parent %+v", got.Parent)
		}
	})
}
