package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/awslabs/aws-lambda-go-api-proxy/core"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/idempotency"
	"github.com/channelbilling/cms/shared/listing"
)

// Body size limits (SPEC 4).
const (
	DefaultBodyLimit = 1 << 20
	UsageBodyLimit   = 5 << 20
)

// Param documents a query parameter of a route.
type Param struct {
	Name        string
	Description string
	Required    bool
}

// ListFields documents a list's search and sort in the OpenAPI document: the fields search
// looks into, the values sort accepts (any other is a 400 naming sort), and the order without
// sort or dir.
type ListFields struct {
	Search      []string
	Sort        []string
	DefaultSort string
	DefaultDesc bool
}

// Route describes one operation: it is both what the router serves and what the OpenAPI document
// says. Path uses API Gateway's form (/api/v1/tenants/{id}).
type Route struct {
	Method     string
	Path       string
	Function   string            // the Lambda function serving it
	Permission access.Permission // required permission; "" only for public routes
	Public     bool              // no authorizer (auth endpoints, JWKS, docs)
	Summary    string
	Tag        string
	Body       any // a value of the request body type, nil when none
	Result     any // a value of the response data type (the item type for lists)
	List       bool
	Status     int // success status, 200 when zero
	Query      []Param
	BodyLimit  int64
	Raw        bool // the handler writes its own response (docs)
	Paged      bool // the data is an object that is still paged (GET /usage {period, items}): page in the envelope, list parameters
	// Credentials marks a POST whose answer carries credentials (an access and a refresh token).
	// Its Idempotency-Key is accepted but never recorded: a stored answer would keep a refresh
	// token in plain text for 24 hours (SPEC 5 keeps them hashed), and a replay would hand out
	// the pair of a spent refresh token instead of treating the second use as reuse.
	Credentials bool
	// Fields documents the search and sort of a list (List or Paged); nil leaves them generic.
	Fields *ListFields
}

// Response is what a handler returns on success.
type Response struct {
	Status int
	Data   any
	Page   *PageInfo
	// Partial marks an answer that asks the client to send part of the request again (usage
	// records answered "retry"): an Idempotency-Key does not remember it, so a resend with the
	// same key runs again instead of replaying the request for those parts for 24 hours.
	Partial bool
}

// Handler serves one route.
type Handler func(r *Request) (Response, error)

// Request is an incoming call with its caller and helpers.
type Request struct {
	*http.Request
	Principal access.Principal
	Body      []byte
	route     Route
	api       *API
	w         http.ResponseWriter
}

// Writer returns the response writer, for routes that write their own answer (Raw).
func (r *Request) Writer() http.ResponseWriter { return r.w }

// Decode decodes the body strictly into v (see DecodeJSON).
func (r *Request) Decode(v any) error { return DecodeJSON(r.Body, v) }

// ListQuery reads page_size, search, sort, dir, next and the named filters. With next, the query
// comes from the token and the other parameters are ignored. Invalid on bad values or token.
func (r *Request) ListQuery(filters ...string) (listing.Query, *listing.Cursor, error) {
	v := r.URL.Query()
	if tok := v.Get("next"); tok != "" {
		return r.api.Pager.Open(r.route.Method+" "+r.route.Path, r.Principal.ScopePath, tok)
	}
	var f apperr.Fields
	q := listing.Query{Search: v.Get("search"), Sort: v.Get("sort")}
	if ps := v.Get("page_size"); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil {
			f.Add("page_size", "invalid", "page_size must be a whole number")
		}
		q.PageSize = n
		if err == nil && (n < 1 || n > listing.MaxPageSize) {
			f.Add("page_size", "out_of_range", "page_size must be between 1 and 500")
		}
	}
	switch v.Get("dir") {
	case "", "asc":
	case "desc":
		q.Desc = true
	default:
		f.Add("dir", "invalid", "dir must be asc or desc")
	}
	for _, name := range filters {
		if val := v.Get(name); val != "" {
			if q.Filters == nil {
				q.Filters = map[string]string{}
			}
			q.Filters[name] = val
		}
	}
	return q, nil, f.Err()
}

// Page returns a list response; next is the cursor after the last item, nil on the last page.
func (r *Request) Page(items any, q listing.Query, next *listing.Cursor) Response {
	info := &PageInfo{PageSize: q.PageSize}
	if next != nil {
		info.Next = r.api.Pager.Sign(r.route.Method+" "+r.route.Path, r.Principal.ScopePath, q, *next)
	}
	return Response{Data: items, Page: info}
}

// API is the router of one or more resources.
type API struct {
	Pager       *Pager
	Idempotency idempotency.Store
	Log         *slog.Logger
	Now         func() time.Time

	mux    *http.ServeMux
	routes []Route
}

// New returns an API with no routes.
func New(pager *Pager, idem idempotency.Store, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	a := &API{Pager: pager, Idempotency: idem, Log: log, Now: time.Now, mux: http.NewServeMux()}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		WriteError(w, apperr.NotFoundf("No such route."), nil)
	})
	return a
}

// Routes returns the routes registered so far.
func (a *API) Routes() []Route { return append([]Route(nil), a.routes...) }

// Handle registers a route. It panics on a route registered twice or without a permission,
// which is a programming error found by the first test that builds the API.
func (a *API) Handle(rt Route, h Handler) {
	if rt.Permission == "" && !rt.Public {
		panic("route " + rt.Method + " " + rt.Path + " has no permission")
	}
	if rt.Status == 0 {
		rt.Status = http.StatusOK
	}
	if rt.BodyLimit == 0 {
		rt.BodyLimit = DefaultBodyLimit
	}
	a.routes = append(a.routes, rt)
	a.mux.HandleFunc(rt.Method+" "+strings.ReplaceAll(rt.Path, "{proxy+}", "{proxy...}"), func(w http.ResponseWriter, hr *http.Request) { a.serve(w, hr, rt, h) })
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

type captured struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *captured) WriteHeader(s int) { c.status = s; c.ResponseWriter.WriteHeader(s) }
func (c *captured) Write(b []byte) (int, error) {
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

func (a *API) serve(w http.ResponseWriter, hr *http.Request, rt Route, h Handler) {
	start := a.Now()
	cw := &captured{ResponseWriter: w, status: http.StatusOK}
	req := &Request{Request: hr, route: rt, api: a, w: cw}
	defer func() {
		if v := recover(); v != nil {
			a.Log.Error("panic", "route", rt.Path, "panic", fmt.Sprint(v))
			WriteError(cw, errors.New("panic"), nil)
		}
		a.Log.Info("request", "method", hr.Method, "route", rt.Path, "status", cw.status,
			"user", req.Principal.UserID, "ms", a.Now().Sub(start).Milliseconds(), "requestId", requestID(hr.Context()))
	}()
	if err := a.prepare(req, rt); err != nil {
		WriteError(cw, err, a.Log)
		return
	}
	if hr.Method == http.MethodPost && hr.Header.Get("Idempotency-Key") != "" && a.Idempotency != nil && !rt.Credentials {
		a.idempotent(cw, req, h)
		return
	}
	a.run(cw, req, h)
}

func (a *API) prepare(req *Request, rt Route) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, req.Request.Body, rt.BodyLimit))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return apperr.Newf(apperr.TooLarge, "body_too_large", "The body is over the %d byte limit.", rt.BodyLimit)
	}
	if err != nil {
		return apperr.New(apperr.Invalid, "unreadable_body", "The body could not be read.")
	}
	req.Body = body
	if rt.Public {
		return nil
	}
	p, ok := PrincipalFrom(req.Context())
	if !ok {
		return apperr.New(apperr.Unauthorized, "unauthorized", "Sign in first: send Authorization: Bearer <token>.")
	}
	req.Principal = p
	if p.Suspended {
		return apperr.New(apperr.Suspended, "account_suspended", "Your account lies in a suspended part of the channel.")
	}
	if !p.Can(rt.Permission) {
		return apperr.New(apperr.Forbidden, "forbidden", "Your role does not allow this action.")
	}
	return nil
}

func (a *API) run(w http.ResponseWriter, req *Request, h Handler) {
	if req.route.Raw {
		if _, err := h(req); err != nil {
			WriteError(w, err, a.Log)
		}
		return
	}
	res, err := h(req)
	if err != nil {
		WriteError(w, err, a.Log)
		return
	}
	status := res.Status
	if status == 0 {
		status = req.route.Status
	}
	if req.route.List {
		res.Data = emptyNotNull(res.Data)
	}
	WriteJSON(w, status, Envelope{Data: res.Data, Page: res.Page})
}

func (a *API) idempotent(w http.ResponseWriter, req *Request, h Handler) {
	key := req.Header.Get("Idempotency-Key")
	if len(key) > 255 {
		WriteError(w, apperr.Field("Idempotency-Key", "too_long", "Idempotency-Key is at most 255 characters"), nil)
		return
	}
	sum := sha256.Sum256(req.Body)
	hash := hex.EncodeToString(sum[:])
	caller := req.Principal.UserID
	if caller == "" {
		caller = "anonymous"
	}
	scoped := caller + "#" + req.route.Method + " " + req.URL.Path + "#" + key
	ctx := req.Context()
	now := a.Now()
	prev, err := a.Idempotency.Claim(ctx, scoped, hash, now)
	if err != nil {
		WriteError(w, err, a.Log)
		return
	}
	if prev != nil {
		switch {
		case prev.BodyHash != hash:
			WriteError(w, apperr.New(apperr.Conflict, "idempotency_key_reused", "This Idempotency-Key was used with a different body."), nil)
		case prev.Pending:
			WriteError(w, apperr.New(apperr.Conflict, "idempotency_in_progress", "A request with this Idempotency-Key is still running; retry shortly."), nil)
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Idempotent-Replayed", "true")
			w.WriteHeader(prev.Status)
			_, _ = w.Write(prev.Body)
		}
		return
	}
	cw := &captured{ResponseWriter: w, status: http.StatusOK}
	var failure error
	partial := false
	a.run(cw, req, func(r *Request) (Response, error) {
		res, err := h(r)
		failure, partial = err, res.Partial
		return res, err
	})
	// Server errors and answers that ask for a retry, whole or in part, are not remembered, so
	// that the retry (with the same key, as a client should) can succeed; everything else is.
	if cw.status >= 500 || retryable(failure) || partial {
		if err := a.Idempotency.Release(context.WithoutCancel(ctx), scoped); err != nil {
			a.Log.Error("release idempotency key", "err", err)
		}
		return
	}
	rec := idempotency.Record{BodyHash: hash, Status: cw.status, Body: cw.body.Bytes()}
	if err := a.Idempotency.Complete(context.WithoutCancel(ctx), scoped, rec, now); err != nil {
		a.Log.Error("complete idempotency key", "err", err)
	}
}

// retryCodes are the conflict codes of a change that lost a race and may succeed when tried
// again (the stores answer them once their own retries are spent); other conflicts (a billingId
// taken, children left) are answers about the state and are replayed.
var retryCodes = map[string]bool{"concurrent_update": true, "concurrent": true}

// retryable reports an error whose answer says "retry": a lost race or a throttle.
func retryable(err error) bool {
	if err == nil {
		return false
	}
	ae := apperr.As(err)
	return ae.Kind == apperr.TooManyRequests || (ae.Kind == apperr.Conflict && retryCodes[ae.Code])
}

// emptyNotNull turns a nil slice into an empty one, so that an empty list answers [] (a list's
// data is an array, never null).
func emptyNotNull(data any) any {
	if v := reflect.ValueOf(data); v.Kind() == reflect.Slice && v.IsNil() {
		return reflect.MakeSlice(v.Type(), 0, 0).Interface()
	}
	return data
}

func requestID(ctx context.Context) string {
	if gw, ok := core.GetAPIGatewayContextFromContext(ctx); ok {
		return gw.RequestID
	}
	return ""
}

// Authorizer context keys, set by the Lambda authorizer and read by every handler.
const (
	CtxUserID    = "userId"
	CtxEmail     = "email"
	CtxRole      = "role"
	CtxScopeID   = "scopeId"
	CtxScopeType = "scopeType"
	CtxScopePath = "scopePath"
	CtxSuspended = "suspended"
)

// PrincipalContext returns the authorizer context for a principal.
func PrincipalContext(p access.Principal) map[string]any {
	return map[string]any{
		CtxUserID: p.UserID, CtxEmail: p.Email, CtxRole: string(p.Role), CtxScopeID: p.ScopeID,
		CtxScopeType: string(p.ScopeType), CtxScopePath: p.ScopePath, CtxSuspended: strconv.FormatBool(p.Suspended),
	}
}

// PrincipalFrom reads the caller that the authorizer put into the API Gateway request context.
func PrincipalFrom(ctx context.Context) (access.Principal, bool) {
	gw, ok := core.GetAPIGatewayContextFromContext(ctx)
	if !ok || gw.Authorizer == nil {
		return access.Principal{}, false
	}
	s := func(k string) string {
		v, _ := gw.Authorizer[k].(string)
		return v
	}
	p := access.Principal{
		UserID: s(CtxUserID), Email: s(CtxEmail), Role: access.Role(s(CtxRole)), ScopeID: s(CtxScopeID),
		ScopeType: access.EntityType(s(CtxScopeType)), ScopePath: s(CtxScopePath),
	}
	switch v := gw.Authorizer[CtxSuspended].(type) {
	case string:
		p.Suspended = strings.EqualFold(v, "true")
	case bool:
		p.Suspended = v
	}
	if p.UserID == "" || p.ScopePath == "" {
		return access.Principal{}, false
	}
	return p, true
}
