package app_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestSchemaNamesCleanAndUnique walks every route's body and answer types alongside their
// schemas in the document: no name repeats the Input suffix, and no two schemas (a type in its
// request or its answer form) share a name, which would describe one with the other's fields.
func TestSchemaNamesCleanAndUnique(t *testing.T) {
	spec, err := app.Spec()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			Schemas map[string]map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(spec, &doc); err != nil {
		t.Fatal(err)
	}
	for name := range doc.Components.Schemas {
		if strings.HasSuffix(name, "InputInput") {
			t.Errorf("schema %s repeats its suffix", name)
		}
	}
	type form struct {
		t       reflect.Type
		request bool
	}
	owner := map[string]form{}
	schemaer := reflect.TypeFor[httpapi.Schemaer]()
	var walk func(typ reflect.Type, request bool, s map[string]any, at string)
	walk = func(typ reflect.Type, request bool, s map[string]any, at string) {
		for typ.Kind() == reflect.Pointer {
			typ = typ.Elem()
		}
		if all, ok := s["allOf"].([]any); ok && len(all) == 1 { // a nullable reference
			s, _ = all[0].(map[string]any)
		}
		if s == nil || typ.Implements(schemaer) || typ == reflect.TypeFor[time.Time]() {
			return
		}
		switch typ.Kind() {
		case reflect.Slice, reflect.Array:
			if typ.Elem().Kind() != reflect.Uint8 {
				items, _ := s["items"].(map[string]any)
				walk(typ.Elem(), request, items, at+"[]")
			}
			return
		case reflect.Map:
			ap, _ := s["additionalProperties"].(map[string]any)
			walk(typ.Elem(), request, ap, at+"{}")
			return
		case reflect.Struct:
		default:
			return
		}
		if typ.Name() != "" {
			ref, _ := s["$ref"].(string)
			name := strings.TrimPrefix(ref, "#/components/schemas/")
			if ref == "" {
				t.Errorf("%s: %s is not a reference: %v", at, typ, s)
				return
			}
			f := form{typ, request}
			if o, ok := owner[name]; ok {
				if o != f {
					t.Errorf("%s: schema %s names both %v (request %v) and %v (request %v)", at, name, o.t, o.request, typ, request)
				}
				return
			}
			owner[name] = f
			s = doc.Components.Schemas[name]
			at = name
		}
		props, _ := s["properties"].(map[string]any)
		var fields func(typ reflect.Type)
		fields = func(typ reflect.Type) {
			for i := 0; i < typ.NumField(); i++ {
				fl := typ.Field(i)
				jname, _, _ := strings.Cut(fl.Tag.Get("json"), ",")
				if !fl.IsExported() || jname == "-" {
					continue
				}
				if fl.Anonymous && jname == "" {
					ft := fl.Type
					if ft.Kind() == reflect.Pointer {
						ft = ft.Elem()
					}
					if ft.Kind() == reflect.Struct {
						fields(ft)
						continue
					}
				}
				if jname == "" {
					jname = fl.Name
				}
				p, ok := props[jname].(map[string]any)
				if !ok {
					t.Errorf("%s: no property %s for field %s of %v", at, jname, fl.Name, typ)
					continue
				}
				walk(fl.Type, request, p, at+"."+jname)
			}
		}
		fields(typ)
	}
	const js = "application/json"
	for _, rt := range app.AllRoutes() {
		var op struct {
			RequestBody struct {
				Content map[string]struct {
					Schema map[string]any `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
			Responses map[string]struct {
				Content map[string]struct {
					Schema struct {
						Properties struct {
							Data map[string]any `json:"data"`
						} `json:"properties"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"responses"`
		}
		if err := json.Unmarshal(doc.Paths[httpapi.DocPath(rt.Path)][strings.ToLower(rt.Method)], &op); err != nil {
			t.Fatal(err)
		}
		name := rt.Method + " " + rt.Path
		if rt.Body != nil {
			walk(reflect.TypeOf(rt.Body), true, op.RequestBody.Content[js].Schema, name+" body")
		}
		if rt.Result != nil && !rt.Raw {
			status := "200"
			if rt.Status != 0 {
				status = strconv.Itoa(rt.Status)
			}
			data := op.Responses[status].Content[js].Schema.Properties.Data
			if rt.List {
				data, _ = data["items"].(map[string]any)
			}
			walk(reflect.TypeOf(rt.Result), false, data, name+" answer")
		}
	}
	if len(owner) < 40 {
		t.Fatalf("only %d schemas walked", len(owner))
	}
}
