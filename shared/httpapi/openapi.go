package httpapi

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Schemaer lets a type describe its own OpenAPI schema (for example a decimal carried as a string).
type Schemaer interface{ OpenAPISchema() map[string]any }

var pathParam = regexp.MustCompile(`\{([a-zA-Z]+)(\+?)\}`)

// DocPath is the OpenAPI form of a route's path: API Gateway's greedy {name+} (the rest of the
// path, slashes included) is written {name}, since OpenAPI has no greedy parameter.
func DocPath(path string) string { return strings.ReplaceAll(path, "+}", "}") }

// schemaKey is one schema of the document: a named type in its answer form or its request form
// (which refuses unknown fields and admits null everywhere).
type schemaKey struct {
	t       reflect.Type
	request bool
}

type schemaGen struct {
	components map[string]any
	names      map[schemaKey]string
	owners     map[string]schemaKey
}

// reservedSchemas are the components OpenAPI writes itself; no type may take their names.
var reservedSchemas = []string{"Error", "Page", "ErrorEnvelope"}

func newSchemaGen() *schemaGen {
	g := &schemaGen{components: map[string]any{}, names: map[schemaKey]string{}, owners: map[string]schemaKey{}}
	for _, n := range reservedSchemas {
		g.owners[n] = schemaKey{}
	}
	return g
}

func (g *schemaGen) of(t reflect.Type, request bool) map[string]any {
	if t == nil {
		return map[string]any{}
	}
	if t.Kind() == reflect.Pointer {
		// Before Schemaer: a nil *T would otherwise be asked for T's schema.
		return g.of(t.Elem(), request)
	}
	if t.Implements(reflect.TypeFor[Schemaer]()) {
		return reflect.Zero(t).Interface().(Schemaer).OpenAPISchema()
	}
	switch t {
	case reflect.TypeFor[time.Time]():
		return map[string]any{"type": "string", "format": "date-time"}
	case reflect.TypeFor[json.Number]():
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	case reflect.TypeFor[json.RawMessage]():
		return map[string]any{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return g.of(t.Elem(), request)
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return map[string]any{"type": "string", "format": "byte"}
		}
		return map[string]any{"type": "array", "items": g.of(t.Elem(), request)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": g.of(t.Elem(), request)}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		if t.Name() == "" { // anonymous struct: described inline
			props := map[string]any{}
			g.fields(t, props, request)
			s := map[string]any{"type": "object", "properties": props}
			if request {
				s["additionalProperties"] = false
			}
			return s
		}
		name := g.name(t, request)
		if _, ok := g.components[name]; !ok {
			g.components[name] = map[string]any{} // placeholder against recursion
			props := map[string]any{}
			g.fields(t, props, request)
			s := map[string]any{"type": "object", "properties": props}
			if request {
				s["additionalProperties"] = false
			}
			g.components[name] = s
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func (g *schemaGen) fields(t reflect.Type, props map[string]any, request bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				g.fields(ft, props, request)
				continue
			}
		}
		if name == "" {
			name = f.Name
		}
		sc := g.of(f.Type, request)
		// An answer writes a nil pointer, slice or map as null unless omitempty leaves it out. A
		// request may send null for any field: encoding/json decodes it as if the field were
		// absent (nil, or the type's zero value), and so does DecodeJSON.
		k := f.Type.Kind()
		if request || (k == reflect.Pointer || k == reflect.Slice || k == reflect.Map) && !slices.Contains(strings.Split(opts, ","), "omitempty") {
			sc = nullable(sc)
		}
		props[name] = sc
	}
}

// nullable returns s admitting null too. A $ref admits no sibling keyword in OpenAPI 3.0, so a
// reference is wrapped in allOf.
func nullable(s map[string]any) map[string]any {
	if len(s) == 0 {
		return s // admits anything already
	}
	if _, ok := s["$ref"]; ok {
		return map[string]any{"nullable": true, "allOf": []any{s}}
	}
	out := map[string]any{"nullable": true}
	for k, v := range s {
		out[k] = v
	}
	return out
}

// name returns the component name of a named type in one form, the same on every call. The
// name is the package's and the type's (money.Money is Money, not MoneyMoney; catalog.Plan is
// CatalogPlan); the request form ends in Input, once (catalog.PlanInput is CatalogPlanInput in a
// request body, not CatalogPlanInputInput). Two schemas never share a name: one whose name is
// taken already (catalog.Plan in a request and catalog.PlanInput, or the two forms of a type
// named ...Input) takes Request or Output after it, then a number; the routes are walked in
// path order, so the document is the same on every build.
func (g *schemaGen) name(t reflect.Type, request bool) string {
	k := schemaKey{t, request}
	if n, ok := g.names[k]; ok {
		return n
	}
	pkg := t.PkgPath()
	if i := strings.LastIndex(pkg, "/"); i >= 0 {
		pkg = pkg[i+1:]
	}
	base := t.Name()
	if pkg != "" {
		if p := strings.ToUpper(pkg[:1]) + pkg[1:]; !strings.HasPrefix(base, p) {
			base = p + base
		}
	}
	first, second := base, base+"Output"
	if request {
		first, second = base, base+"Request"
		if !strings.HasSuffix(base, "Input") {
			first += "Input"
		}
	}
	name := first
	for i := 0; ; i++ {
		if i == 1 {
			name = second
		} else if i > 1 {
			name = first + strconv.Itoa(i)
		}
		if _, taken := g.owners[name]; !taken {
			break
		}
	}
	g.names[k], g.owners[name] = name, k
	return name
}

// OpenAPI returns the OpenAPI 3 document describing routes.
func OpenAPI(routes []Route, title, version string) ([]byte, error) {
	g := newSchemaGen()
	paths := map[string]map[string]any{}
	sorted := append([]Route(nil), routes...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for _, rt := range sorted {
		op := map[string]any{
			"summary":     rt.Summary,
			"operationId": operationID(rt),
			"tags":        []string{rt.Tag},
		}
		if rt.Permission != "" {
			op["description"] = "Requires permission `" + string(rt.Permission) + "`."
			op["x-permission"] = string(rt.Permission)
		}
		if !rt.Public {
			op["security"] = []any{map[string]any{"bearerAuth": []any{}}}
		} else {
			op["security"] = []any{}
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.Path, -1) {
			p := map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}}
			if m[2] == "+" {
				p["description"] = "The rest of the path."
			}
			params = append(params, p)
		}
		if rt.List || rt.Paged {
			search := queryParam("search", "Case-insensitive substring over the searchable fields.", "string")
			sortBy := queryParam("sort", "A searchable field to sort by.", "string")
			dir := queryParam("dir", "asc or desc.", "string")
			dir["schema"] = map[string]any{"type": "string", "enum": []string{"asc", "desc"}}
			if f := rt.Fields; f != nil {
				search["description"] = "Case-insensitive substring of any of: " + strings.Join(f.Search, ", ") + "."
				sortBy["description"] = "The field to sort by (ties by id); default " + f.DefaultSort + "."
				sortBy["schema"] = map[string]any{"type": "string", "enum": f.Sort}
				if f.DefaultDesc {
					dir["description"] = "asc or desc; without sort and dir the order is " + f.DefaultSort + " descending."
				}
			}
			pageSize := queryParam("page_size", "Items per page, 1 to 500 (default 50).", "integer")
			pageSize["schema"] = map[string]any{"type": "integer", "minimum": 1, "maximum": 500}
			params = append(params, pageSize, queryParam("next", "The token from the previous page.", "string"), search, sortBy, dir)
		}
		for _, q := range rt.Query {
			p := queryParam(q.Name, q.Description, "string")
			p["required"] = q.Required
			params = append(params, p)
		}
		if rt.Method == http.MethodPost {
			desc := "Replays the first response for 24 hours for the same body; the same key with another body answers 409 idempotency_key_reused."
			schema := map[string]any{"type": "string", "maxLength": 255}
			if rt.Credentials {
				desc = "Accepted but never recorded: this answer carries credentials, so it is neither stored nor replayed, and a repeated call runs again (a spent refresh token presented again is reuse and revokes its family)."
				schema = map[string]any{"type": "string"}
			}
			params = append(params, map[string]any{"name": "Idempotency-Key", "in": "header", "required": false,
				"description": desc, "schema": schema})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		if rt.Body != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": g.of(reflect.TypeOf(rt.Body), true)}}}
		}
		data := g.of(reflect.TypeOf(rt.Result), false)
		if rt.Result == nil {
			data = map[string]any{"nullable": true}
		}
		if rt.List {
			data = map[string]any{"type": "array", "items": data}
		}
		env := map[string]any{"type": "object", "properties": map[string]any{
			"code":   map[string]any{"type": "integer"},
			"data":   data,
			"errors": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/components/schemas/Error"}},
		}}
		if rt.List || rt.Paged {
			env["properties"].(map[string]any)["page"] = map[string]any{"$ref": "#/components/schemas/Page"}
		}
		status := rt.Status
		if status == 0 {
			status = http.StatusOK
		}
		responses := map[string]any{
			strconv.Itoa(status): map[string]any{"description": http.StatusText(status), "content": map[string]any{"application/json": map[string]any{"schema": env}}},
			"default":            map[string]any{"description": "An error.", "content": map[string]any{"application/json": map[string]any{"schema": map[string]any{"$ref": "#/components/schemas/ErrorEnvelope"}}}},
		}
		if rt.Raw {
			responses = map[string]any{strconv.Itoa(status): map[string]any{"description": "The document."}}
		}
		op["responses"] = responses
		path := DocPath(rt.Path)
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(rt.Method)] = op
	}
	g.components["Error"] = map[string]any{"type": "object", "properties": map[string]any{
		"code": map[string]any{"type": "string"}, "message": map[string]any{"type": "string"}, "field": map[string]any{"type": "string"}}}
	g.components["Page"] = map[string]any{"type": "object", "properties": map[string]any{
		"pageSize": map[string]any{"type": "integer"}, "next": map[string]any{"type": "string"}}}
	g.components["ErrorEnvelope"] = map[string]any{"type": "object", "properties": map[string]any{
		"code": map[string]any{"type": "integer"}, "data": map[string]any{"nullable": true},
		"errors": map[string]any{"type": "array", "items": map[string]any{"$ref": "#/components/schemas/Error"}}}}
	doc := map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": title, "version": version},
		"paths":   paths,
		"components": map[string]any{
			"schemas":         g.components,
			"securitySchemes": map[string]any{"bearerAuth": map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

func queryParam(name, desc, typ string) map[string]any {
	return map[string]any{"name": name, "in": "query", "description": desc, "schema": map[string]any{"type": typ}}
}

func operationID(rt Route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.Method))
	for _, seg := range strings.Split(rt.Path, "/") {
		if seg == "" || seg == "api" || seg == "v1" {
			continue
		}
		seg = strings.Trim(seg, "{}.")
		for _, part := range strings.FieldsFunc(seg, func(r rune) bool { return r == '-' || r == '.' || r == '_' }) {
			b.WriteString(strings.ToUpper(part[:1]) + part[1:])
		}
	}
	return b.String()
}
