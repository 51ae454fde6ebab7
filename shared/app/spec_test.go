package app_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/httpapi"
)

// TestEveryListDocumentsSearchAndSort fails when a list route does not declare the fields its
// search looks into and the values its sort accepts, or when the document does not carry them.
// The routes take them from the listing.Fields their handlers validate against.
func TestEveryListDocumentsSearchAndSort(t *testing.T) {
	spec, err := app.Spec()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name        string `json:"name"`
				Description string `json:"description"`
				Schema      struct {
					Enum []string `json:"enum"`
				} `json:"schema"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(spec, &doc); err != nil {
		t.Fatal(err)
	}
	lists := 0
	for _, rt := range app.AllRoutes() {
		if !rt.List && !rt.Paged {
			continue
		}
		lists++
		name := rt.Method + " " + rt.Path
		f := rt.Fields
		if f == nil {
			t.Errorf("%s is a list without Fields (its searchable fields and sort values)", name)
			continue
		}
		if len(f.Search) == 0 || len(f.Sort) == 0 || !slices.Contains(f.Sort, f.DefaultSort) {
			t.Errorf("%s: search %v, sort %v, default %q", name, f.Search, f.Sort, f.DefaultSort)
		}
		op := doc.Paths[httpapi.DocPath(rt.Path)][strings.ToLower(rt.Method)]
		var sortEnum []string
		var searchDesc string
		for _, p := range op.Parameters {
			switch p.Name {
			case "sort":
				sortEnum = p.Schema.Enum
			case "search":
				searchDesc = p.Description
			}
		}
		if !slices.Equal(sortEnum, f.Sort) {
			t.Errorf("%s: the document's sort values %v, the route's %v", name, sortEnum, f.Sort)
		}
		for _, s := range f.Search {
			if !strings.Contains(searchDesc, s) {
				t.Errorf("%s: the search description %q does not name %s", name, searchDesc, s)
			}
		}
	}
	if lists < 15 {
		t.Fatalf("only %d list routes", lists)
	}
}
