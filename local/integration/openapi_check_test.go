package integration_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
)

// The served /swagger.json is the contract every test call is held to: client.do checks each
// request and each answer against it (checkCall), so a route, a parameter or a field that the
// document does not describe fails the test that used it.

// apiDoc is the OpenAPI document served by the test server, loaded, validated and routed once.
type apiDoc struct {
	doc    *openapi3.T
	router routers.Router
}

var (
	served     *apiDoc
	servedErr  error
	servedOnce sync.Once
)

// servedDoc returns the served document, or why it is not a valid OpenAPI 3 document.
func servedDoc() (*apiDoc, error) {
	servedOnce.Do(func() {
		raw, err := httpGet(srv.URL + "/swagger.json")
		if err != nil {
			servedErr = err
			return
		}
		served, servedErr = loadDoc(raw)
	})
	return served, servedErr
}

// loadDoc parses and validates a document, then closes its response schemas: an object schema
// listing its properties and saying nothing of others admits no other property, so that a
// response field missing from the document is an error (request schemas say so already).
func loadDoc(raw []byte) (*apiDoc, error) {
	openapi3.SchemaErrorDetailsDisabled = true // the path and the reason; the failing call is printed whole
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("the document is not valid OpenAPI: %w", err)
	}
	seen := map[*openapi3.Schema]bool{}
	for _, item := range doc.Paths.Map() {
		for _, op := range item.Operations() {
			for _, res := range op.Responses.Map() {
				if res.Value == nil {
					continue
				}
				for _, mt := range res.Value.Content {
					closeSchema(mt.Schema, seen)
				}
			}
		}
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		return nil, fmt.Errorf("router: %w", err)
	}
	return &apiDoc{doc: doc, router: router}, nil
}

func closeSchema(ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) {
	if ref == nil || ref.Value == nil || seen[ref.Value] {
		return
	}
	s := ref.Value
	seen[s] = true
	if len(s.Properties) > 0 && s.AdditionalProperties.Has == nil && s.AdditionalProperties.Schema == nil {
		no := false
		s.AdditionalProperties.Has = &no
	}
	for _, p := range s.Properties {
		closeSchema(p, seen)
	}
	closeSchema(s.Items, seen)
	closeSchema(s.AdditionalProperties.Schema, seen)
	for _, list := range [][]*openapi3.SchemaRef{s.OneOf, s.AnyOf, s.AllOf} {
		for _, r := range list {
			closeSchema(r, seen)
		}
	}
}

// check returns what in one call disagrees with the document: a route it does not describe, a
// query parameter it does not declare, a success status other than the documented one, a
// request the server accepted that the document forbids, an answer that does not match the
// schema of its status.
func (d *apiDoc) check(method string, u *url.URL, header http.Header, reqBody []byte, status int, resHeader http.Header, resBody []byte) []string {
	req, err := http.NewRequest(method, u.String(), bytes.NewReader(reqBody))
	if err != nil {
		return []string{err.Error()}
	}
	req.Header = header.Clone()
	route, pathParams, err := d.router.FindRoute(req)
	if err != nil {
		return []string{fmt.Sprintf("%s %s is not in the OpenAPI document (%v)", method, u.Path, err)}
	}
	var problems []string
	declared := map[string]bool{}
	for _, p := range append(slices.Clone(route.PathItem.Parameters), route.Operation.Parameters...) {
		if p.Value != nil && p.Value.In == openapi3.ParameterInQuery {
			declared[p.Value.Name] = true
		}
	}
	for name := range u.Query() {
		if !declared[name] {
			problems = append(problems, fmt.Sprintf("query parameter %q is not declared for %s %s", name, method, route.Path))
		}
	}
	if status >= 200 && status < 300 && route.Operation.Responses.Status(status) == nil {
		problems = append(problems, fmt.Sprintf("%s %s answered %d, which the document does not declare", method, route.Path, status))
	}
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: pathParams, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true}}
	// Only a request the server accepted must be one the document allows: the tests send
	// malformed ones on purpose to see them refused.
	if status >= 200 && status < 300 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			problems = append(problems, fmt.Sprintf("the server accepted a request the document forbids: %v", err))
		}
	}
	res := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: status, Header: resHeader,
		Body: io.NopCloser(bytes.NewReader(resBody)), Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true}}
	if err := openapi3filter.ValidateResponse(context.Background(), res); err != nil {
		problems = append(problems, fmt.Sprintf("the answer (%d) does not match the document: %v", status, err))
	}
	return problems
}
