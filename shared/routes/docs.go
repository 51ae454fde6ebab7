package routes

import (
	"net/http"
	"strings"

	"github.com/flowchartsman/swaggerui"

	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/listing"
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

// pageSlice pages a small in-memory list in its given order, by position.
func pageSlice[T any](items []T, q listing.Query, after *listing.Cursor) ([]T, *listing.Cursor, error) {
	if q.PageSize == 0 {
		q.PageSize = listing.DefaultPageSize
	}
	start := 0
	if after != nil {
		for i := range items {
			if itoa(i) == after.ID {
				start = i + 1
				break
			}
		}
	}
	end := start + q.PageSize
	if end >= len(items) {
		return items[start:], nil, nil
	}
	return items[start:end], &listing.Cursor{ID: itoa(end - 1)}, nil
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
