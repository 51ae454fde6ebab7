package integration_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/app"
)

// TestOpenAPIMatchesRoutes fails when a served route is missing from /swagger.json or the
// document names a route that nothing serves.
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
	served := map[string]bool{}
	for _, r := range app.AllRoutes() {
		key := r.Method + " " + r.Path
		served[key] = true
		if _, ok := doc.Paths[r.Path][strings.ToLower(r.Method)]; !ok {
			t.Errorf("%s is served but not documented", key)
		}
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	a := admin(t)
	for path, ops := range doc.Paths {
		for method := range ops {
			key := strings.ToUpper(method) + " " + path
			if !served[key] {
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
