// Package runner serves the API locally the way API Gateway would: each HTTP request becomes the
// REST API proxy event Lambda receives, the Lambda authorizer runs on it (for non-public routes),
// and the same handler function that the function's main passes to lambda.Start answers it.
package runner

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-lambda-go/events"
	"github.com/awslabs/aws-lambda-go-api-proxy/httpadapter"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/ids"
)

// ProxyHandler is a function's Lambda handler for API Gateway proxy events.
type ProxyHandler func(context.Context, events.APIGatewayProxyRequest) (events.APIGatewayProxyResponse, error)

// AuthorizerHandler is the Lambda authorizer's handler.
type AuthorizerHandler func(context.Context, events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error)

// Runner is an http.Handler playing API Gateway in front of the functions.
type Runner struct {
	mux *http.ServeMux
	log *slog.Logger
}

// maxPayload is API Gateway's own request payload limit.
const maxPayload = 10 << 20

// New builds a runner over the functions of deps: one Lambda handler per function, built the way
// each function's main builds it.
func New(deps *app.Deps) (*Runner, error) {
	handlers := map[string]ProxyHandler{}
	for _, r := range app.AllRoutes() {
		if _, ok := handlers[r.Function]; ok {
			continue
		}
		h, err := deps.Handler(r.Function)
		if err != nil {
			return nil, err
		}
		handlers[r.Function] = httpadapter.New(h).ProxyWithContext
	}
	return NewWith(app.AllRoutes(), handlers, deps.Authorizer().Handle, deps.Log), nil
}

// NewWith builds a runner from explicit handlers, for tests of the runner itself.
func NewWith(routes []httpapi.Route, handlers map[string]ProxyHandler, authz AuthorizerHandler, log *slog.Logger) *Runner {
	rn := &Runner{mux: http.NewServeMux(), log: log}
	rn.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		httpapi.WriteJSON(w, http.StatusNotFound, httpapi.Envelope{Errors: []httpapi.ErrorBody{{Code: "not_found", Message: "No such route."}}})
	})
	for _, r := range routes {
		route, fn := r, handlers[r.Function]
		pattern := r.Method + " " + strings.ReplaceAll(r.Path, "{proxy+}", "{proxy...}")
		rn.mux.HandleFunc(pattern, func(w http.ResponseWriter, req *http.Request) {
			rn.invoke(w, req, route, fn, authz)
		})
	}
	return rn
}

// ServeHTTP implements http.Handler.
func (rn *Runner) ServeHTTP(w http.ResponseWriter, r *http.Request) { rn.mux.ServeHTTP(w, r) }

func (rn *Runner) invoke(w http.ResponseWriter, r *http.Request, route httpapi.Route, fn ProxyHandler, authz AuthorizerHandler) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPayload))
	if err != nil {
		httpapi.WriteJSON(w, http.StatusRequestEntityTooLarge, httpapi.Envelope{Errors: []httpapi.ErrorBody{{Code: "body_too_large", Message: "The request is over API Gateway's payload limit."}}})
		return
	}
	ev := proxyEvent(r, route, body)
	if !route.Public {
		res, err := authz(r.Context(), events.APIGatewayCustomAuthorizerRequestTypeRequest{
			Type: "REQUEST", MethodArn: "arn:aws:execute-api:local:000000000000:local/local/" + r.Method + r.URL.Path,
			Resource: route.Path, Path: r.URL.Path, HTTPMethod: r.Method, Headers: ev.Headers,
			MultiValueHeaders: ev.MultiValueHeaders, QueryStringParameters: ev.QueryStringParameters,
			MultiValueQueryStringParameters: ev.MultiValueQueryStringParameters, PathParameters: ev.PathParameters,
		})
		if err != nil || !allowed(res) {
			// API Gateway's UNAUTHORIZED gateway response, shaped as our envelope (the CDK stack
			// configures the same body).
			httpapi.WriteJSON(w, http.StatusUnauthorized, httpapi.Envelope{Errors: []httpapi.ErrorBody{{Code: "unauthorized", Message: "Unauthorized"}}})
			return
		}
		ev.RequestContext.Authorizer = map[string]any{"principalId": res.PrincipalID}
		for k, v := range res.Context {
			ev.RequestContext.Authorizer[k] = v
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 29*time.Second) // API Gateway's integration timeout
	defer cancel()
	res, err := fn(ctx, ev)
	if err != nil {
		rn.log.Error("function failed", "function", route.Function, "err", err)
		httpapi.WriteJSON(w, http.StatusBadGateway, httpapi.Envelope{Errors: []httpapi.ErrorBody{{Code: "internal", Message: "Internal server error"}}})
		return
	}
	writeProxyResponse(w, res)
}

func allowed(res events.APIGatewayCustomAuthorizerResponse) bool {
	for _, st := range res.PolicyDocument.Statement {
		if st.Effect == "Allow" {
			return true
		}
	}
	return false
}

func proxyEvent(r *http.Request, route httpapi.Route, body []byte) events.APIGatewayProxyRequest {
	ev := events.APIGatewayProxyRequest{
		Resource: route.Path, Path: r.URL.Path, HTTPMethod: r.Method,
		Headers: map[string]string{}, MultiValueHeaders: map[string][]string{},
		PathParameters: map[string]string{},
		RequestContext: events.APIGatewayProxyRequestContext{
			AccountID: "000000000000", APIID: "local", Stage: "local", RequestID: ids.New("req"),
			ResourcePath: route.Path, HTTPMethod: r.Method, Path: r.URL.Path, Protocol: r.Proto,
			RequestTimeEpoch: time.Now().UnixMilli(), DomainName: r.Host,
		},
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ev.RequestContext.Identity.SourceIP = host
	}
	for k, vs := range r.Header {
		ev.Headers[k] = vs[len(vs)-1]
		ev.MultiValueHeaders[k] = vs
	}
	if q := r.URL.Query(); len(q) > 0 {
		ev.QueryStringParameters = map[string]string{}
		ev.MultiValueQueryStringParameters = map[string][]string{}
		for k, vs := range q {
			ev.QueryStringParameters[k] = vs[len(vs)-1]
			ev.MultiValueQueryStringParameters[k] = vs
		}
	}
	for _, seg := range strings.Split(route.Path, "/") {
		if strings.HasPrefix(seg, "{") {
			name := strings.Trim(seg, "{}+")
			v := r.PathValue(name)
			if name == "proxy" {
				v = r.PathValue("proxy")
			}
			ev.PathParameters[name] = v
		}
	}
	if utf8.Valid(body) {
		ev.Body = string(body)
	} else {
		ev.Body, ev.IsBase64Encoded = base64.StdEncoding.EncodeToString(body), true
	}
	return ev
}

func writeProxyResponse(w http.ResponseWriter, res events.APIGatewayProxyResponse) {
	for k, v := range res.Headers {
		w.Header().Set(k, v)
	}
	for k, vs := range res.MultiValueHeaders {
		w.Header().Del(k)
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	body := []byte(res.Body)
	if res.IsBase64Encoded {
		if b, err := base64.StdEncoding.DecodeString(res.Body); err == nil {
			body = b
		}
	}
	status := res.StatusCode
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
