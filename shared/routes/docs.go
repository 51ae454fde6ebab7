package routes

import (
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/flowchartsman/swaggerui"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/listing"
	"github.com/channelbilling/cms/shared/money"
)

// Docs registers /swagger.json (the OpenAPI document) and /swagger (Swagger UI from assets
// bundled in the binary, no CDN).
func Docs(api *httpapi.API, spec []byte) {
	const fn, tag = FnDocs, "docs"
	ui := http.StripPrefix("/swagger", swaggerui.Handler(spec))
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: "/swagger.json", Function: fn, Public: true, Tag: tag, Raw: true,
		Summary: "The OpenAPI 3 document of every route"},
		func(req *httpapi.Request) (httpapi.Response, error) {
			w := req.Writer()
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(spec)
			return httpapi.Response{}, nil
		})
	serveUI := func(req *httpapi.Request) (httpapi.Response, error) {
		w := req.Writer()
		if req.URL.Path == "/swagger" {
			http.Redirect(w, req.Request, "/swagger/", http.StatusFound)
			return httpapi.Response{}, nil
		}
		if strings.HasSuffix(req.URL.Path, "/swagger_spec") {
			w.Header().Set("Content-Type", "application/json")
		}
		ui.ServeHTTP(w, req.Request)
		return httpapi.Response{}, nil
	}
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: "/swagger", Function: fn, Public: true, Tag: tag, Raw: true,
		Summary: "Interactive API documentation"}, serveUI)
	api.Handle(httpapi.Route{Method: http.MethodGet, Path: "/swagger/{proxy+}", Function: fn, Public: true, Tag: tag, Raw: true,
		Summary: "Assets of the interactive documentation"}, serveUI)
}

// sliceList lists a small in-memory slice with the list conventions (SPEC 4): search is a
// case-insensitive substring of any of the search getters, sort orders by one of sort's fields
// (ties broken by its id), and the page is cut after the cursor. It fills q's defaults (the
// query the next token carries). Invalid naming sort or page_size for a bad value.
func sliceList[T any](items []T, search map[string]func(T) string, sort listing.Fields[T], q *listing.Query, after *listing.Cursor) ([]T, *listing.Cursor, error) {
	if err := sort.Validate(q); err != nil {
		return nil, nil, err
	}
	if s := strings.ToLower(strings.TrimSpace(q.Search)); s != "" {
		kept := items[:0:0]
		for _, it := range items {
			for _, get := range search {
				if strings.Contains(strings.ToLower(get(it)), s) {
					kept = append(kept, it)
					break
				}
			}
		}
		items = kept
	}
	// Search is done: Apply only sorts and pages (its own search would look into sort keys).
	sorted := *q
	sorted.Search = ""
	page, next := listing.Apply(sort, items, sorted, after)
	return page, next, nil
}

// listFields documents a list in the OpenAPI document from the fields its handler validates and
// applies (search and sort are the same fields), so that the two cannot drift apart.
func listFields[T any](f listing.Fields[T]) *httpapi.ListFields {
	names := slices.Sorted(maps.Keys(f.Searchable))
	return &httpapi.ListFields{Search: names, Sort: names, DefaultSort: f.DefaultSort}
}

// sliceFields documents a list served by sliceList from the same search getters and sort fields;
// defaultDesc says that without sort and dir the handler orders it descending.
func sliceFields[T any](search map[string]func(T) string, sort listing.Fields[T], defaultDesc bool) *httpapi.ListFields {
	return &httpapi.ListFields{Search: slices.Sorted(maps.Keys(search)), Sort: slices.Sorted(maps.Keys(sort.Searchable)),
		DefaultSort: sort.DefaultSort, DefaultDesc: defaultDesc}
}

// markupSearch and markupSort are the search and sort fields of a markup history. The sort key
// of a markup orders decimals by value ("9.5" before "10.0"), which their text does not.
var (
	markupSearch = map[string]func(hierarchy.Markup) string{
		"markup":    func(m hierarchy.Markup) string { return m.Markup },
		"startDate": func(m hierarchy.Markup) string { return m.StartDate },
		"createdBy": func(m hierarchy.Markup) string { return m.CreatedBy },
	}
	markupSort = listing.Fields[hierarchy.Markup]{
		// An entry has no id: all its fields make one, and the recording time first keeps the
		// history's own order (start date, then recording time) as the tie-break.
		ID: func(m hierarchy.Markup) string {
			return m.CreatedAt.Format(listing.TimeLayout) + "#" + m.StartDate + "#" + m.Markup + "#" + m.CreatedBy
		},
		Searchable: map[string]func(hierarchy.Markup) string{
			"markup":    func(m hierarchy.Markup) string { return decimalKey(m.Markup) },
			"startDate": func(m hierarchy.Markup) string { return m.StartDate },
			"createdAt": func(m hierarchy.Markup) string { return m.CreatedAt.Format(listing.TimeLayout) },
		},
		DefaultSort: "startDate",
	}
	// The markups route orders newest first without sort and dir.
	markupFields = sliceFields(markupSearch, markupSort, true)
)

// decimalKey returns a key of a non-negative decimal that orders as its value: the integer part
// left-padded, the fraction right-padded. Text that is no decimal is its own key.
func decimalKey(s string) string {
	d, err := money.Parse(s)
	if err != nil || d.IsNeg() {
		return s
	}
	ip, fp, _ := strings.Cut(d.String(), ".")
	const width = 32
	return strings.Repeat("0", max(0, width-len(ip))) + ip + "." + fp + strings.Repeat("0", max(0, width-len(fp)))
}

// roleSearch and roleFields are the search and sort fields of the roles list.
var (
	roleSearch = map[string]func(access.RoleDef) string{
		"name":        func(r access.RoleDef) string { return string(r.Name) },
		"description": func(r access.RoleDef) string { return r.Description },
		"permissions": func(r access.RoleDef) string {
			ps := make([]string, len(r.Permissions))
			for i, p := range r.Permissions {
				ps[i] = string(p)
			}
			return strings.Join(ps, " ")
		},
	}
	roleSort = listing.Fields[access.RoleDef]{
		ID:          func(r access.RoleDef) string { return string(r.Name) },
		Searchable:  map[string]func(access.RoleDef) string{"name": func(r access.RoleDef) string { return string(r.Name) }},
		DefaultSort: "name",
	}
	roleFields = sliceFields(roleSearch, roleSort, false)
)
