package integration_test

import (
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/routes"
)

// TestOpenAPIMatchesRoutes fails when a route that a function serves is missing from
// /swagger.json, or the document names a route that no function serves. The routes are those of
// each function's own handler, built from the test's dependencies as the Lambda mains build
// them; every call the tests make is also checked against the document (client.do).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	raw, err := httpGet(srv.URL + "/swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q", doc.OpenAPI)
	}
	if _, err := servedDoc(); err != nil {
		t.Fatal(err)
	}
	served := map[string]string{}
	for _, fn := range routes.HTTPFunctions {
		h, err := deps.Handler(fn)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.Routes() {
			key := r.Method + " " + httpapi.DocPath(r.Path)
			if other, ok := served[key]; ok {
				t.Errorf("%s is served by both %s and %s", key, other, fn)
			}
			served[key] = fn
			if _, ok := doc.Paths[httpapi.DocPath(r.Path)][strings.ToLower(r.Method)]; !ok {
				t.Errorf("%s is served by %s but not documented", key, fn)
			}
		}
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	a := admin(t)
	for path, ops := range doc.Paths {
		for method := range ops {
			key := strings.ToUpper(method) + " " + path
			if _, ok := served[key]; !ok {
				t.Errorf("%s is documented but not served", key)
				continue
			}
			// Ask the runner itself: a documented route must not fall through to "No such route".
			concrete := param.ReplaceAllString(path, "x")
			if _, body := a.doRaw(strings.ToUpper(method), concrete); strings.Contains(body, "No such route.") {
				t.Errorf("%s is documented but the runner has no route for it", key)
			}
		}
	}
}

func TestSwaggerUIIsBundled(t *testing.T) {
	res, err := http.Get(srv.URL + "/swagger/")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /swagger/: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	for _, asset := range []string{"/swagger/swagger-ui-bundle.js", "/swagger/swagger_spec"} {
		if _, err := httpGet(srv.URL + asset); err != nil {
			t.Fatalf("%s: %v", asset, err)
		}
	}
}

func allProtectedRoutes() []string {
	var out []string
	for _, r := range app.AllRoutes() {
		if !r.Public {
			out = append(out, r.Method+" "+strings.ReplaceAll(r.Path, "{userId}", "{id}"))
		}
	}
	return out
}

// TestOpenAPICheckCatchesMismatches feeds the check of client.do calls that disagree with the
// document, each next to the real call it was derived from (which must pass).
func TestOpenAPICheckCatchesMismatches(t *testing.T) {
	doc, err := servedDoc()
	if err != nil {
		t.Fatal(err)
	}
	a := admin(t)
	call := func(method, path string, body string) (*http.Request, int, http.Header, []byte) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, err := http.NewRequest(method, srv.URL+path, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+a.token)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		out, _ := io.ReadAll(res.Body)
		return req, res.StatusCode, res.Header, out
	}
	check := func(req *http.Request, body string, status int, h http.Header, out []byte) []string {
		return doc.check(req.Method, req.URL, req.Header, []byte(body), status, h, out)
	}
	want := func(t *testing.T, problems []string, about string) {
		t.Helper()
		for _, p := range problems {
			if strings.Contains(p, about) {
				return
			}
		}
		t.Fatalf("no problem about %q in %q", about, problems)
	}

	req, status, h, out := call("GET", "/api/v1/roles", "")
	if p := check(req, "", status, h, out); status != 200 || len(p) != 0 {
		t.Fatalf("the real answer must pass: %d %v", status, p)
	}
	t.Run("ErrUndocumentedResponseField", func(t *testing.T) {
		extra := strings.Replace(string(out), `"name":`, `"secret":"x","name":`, 1)
		want(t, check(req, "", status, h, []byte(extra)), "secret")
	})
	t.Run("ErrWrongFieldType", func(t *testing.T) {
		wrong := strings.Replace(string(out), `"scopeTypes":[`, `"scopeTypes":7,"x":[`, 1)
		want(t, check(req, "", status, h, []byte(wrong)), "does not match")
	})
	t.Run("ErrUndeclaredQueryParameter", func(t *testing.T) {
		req, status, h, out := call("GET", "/api/v1/roles?colour=blue", "")
		want(t, check(req, "", status, h, out), `"colour" is not declared`)
	})
	t.Run("ErrRouteMissingFromDocument", func(t *testing.T) {
		req, status, h, out := call("GET", "/api/v1/roles", "")
		req.URL.Path = "/api/v1/rolez"
		want(t, check(req, "", status, h, out), "is not in the OpenAPI document")
	})
	t.Run("ErrUndocumentedStatus", func(t *testing.T) {
		body := `{"name":"Doc check ` + uniq("d") + `"}`
		req, status, h, out := call("POST", "/api/v1/distributors", body)
		if p := check(req, body, status, h, out); status != 201 || len(p) != 0 {
			t.Fatalf("the real answer must pass: %d %v", status, p)
		}
		want(t, check(req, body, 200, h, out), "answered 200")
	})
	t.Run("ErrAcceptedRequestOutsideTheDocument", func(t *testing.T) {
		body := `{"name":"Doc check ` + uniq("d") + `"}`
		req, status, h, out := call("POST", "/api/v1/distributors", body)
		sneaky := `{"name":"x","colour":"blue"}`
		want(t, check(req, sneaky, status, h, out), "accepted a request the document forbids")
	})
}

// TestListSortAsDocumented calls every documented list with each sort value its document
// allows (each must be served, and client.do checks the answer against the document) and with
// one it does not (400 naming sort): what /swagger.json says a list takes is what it takes.
func TestListSortAsDocumented(t *testing.T) {
	raw, err := httpGet(srv.URL + "/swagger.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name   string `json:"name"`
				In     string `json:"in"`
				Schema struct {
					Enum []string `json:"enum"`
				} `json:"schema"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	a := admin(t)
	d := create(t, a, "distributors", map[string]any{"name": uniq("Sorts D")})
	p := create(t, a, "partners", map[string]any{"name": uniq("Sorts P"), "parent": parent("distributor", d.ID)})
	tn := create(t, a, "tenants", map[string]any{"name": uniq("Sorts T"), "parent": parent("partner", p.ID)})
	plan := mkPlan(t, a, uniq("sorts"), true)
	var sub struct{ ID string }
	a.must(201, "POST", "/api/v1/subscriptions", map[string]any{"tenantId": tn.ID, "planId": plan.ID, "quantity": 1}, &sub)
	// Each path's parameters, and the filters some lists need to answer 200.
	concrete := map[string]string{
		"/api/v1/distributors/{id}/markups":  "/api/v1/distributors/" + d.ID + "/markups?",
		"/api/v1/partners/{id}/markups":      "/api/v1/partners/" + p.ID + "/markups?",
		"/api/v1/pricelists/{entityId}":      "/api/v1/pricelists/" + tn.ID + "?",
		"/api/v1/subscriptions/{id}/history": "/api/v1/subscriptions/" + sub.ID + "/history?",
		"/api/v1/commissions":                "/api/v1/commissions?entityId=" + p.ID + "&",
	}
	lists := 0
	for path, ops := range doc.Paths {
		op, ok := ops["get"]
		if !ok {
			continue
		}
		paged, sortable := false, []string(nil)
		for _, prm := range op.Parameters {
			if prm.In != "query" {
				continue
			}
			paged = paged || prm.Name == "page_size"
			if prm.Name == "sort" {
				sortable = prm.Schema.Enum
			}
		}
		if !paged {
			continue
		}
		lists++
		t.Run(strings.TrimPrefix(path, "/api/v1/"), func(t *testing.T) {
			if len(sortable) == 0 {
				t.Fatalf("GET %s is a list without the sort values it takes", path)
			}
			base, ok := concrete[path]
			if !ok {
				if strings.Contains(path, "{") {
					t.Fatalf("GET %s: no concrete path for this test", path)
				}
				base = path + "?"
			}
			for _, v := range sortable {
				a.must(200, "GET", base+"sort="+v+"&dir=desc", nil, nil)
			}
			if env := a.do("GET", base+"sort=notAField", nil); env.status != 400 || !env.hasError("invalid", "sort") {
				t.Fatalf("an undocumented sort: %s", env.raw)
			}
		})
	}
	if lists < 15 {
		t.Fatalf("only %d lists in the document", lists)
	}
}
