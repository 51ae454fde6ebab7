// Package authorizer is the API Gateway Lambda authorizer: it verifies the bearer token, loads the
// user's current role and scope, checks the suspension of the scope's ancestors, and hands the
// caller to the resource handlers through the authorizer context.
package authorizer

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"github.com/channelbilling/cms/shared/access"
	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/auth"
	"github.com/channelbilling/cms/shared/hierarchy"
	"github.com/channelbilling/cms/shared/httpapi"
	"github.com/channelbilling/cms/shared/identity"
)

// ErrUnauthorized is the error API Gateway turns into a 401 ("Unauthorized" exactly).
var ErrUnauthorized = errors.New("Unauthorized")

// TokenVerifier verifies platform access tokens.
type TokenVerifier interface {
	Verify(token string) (auth.Claims, error)
}

// Authorizer decides who a request comes from.
type Authorizer struct {
	Verifier TokenVerifier
	Users    identity.Store
	Entities hierarchy.Store
	Log      *slog.Logger
}

// Authenticate returns the caller for an Authorization header value. ErrUnauthorized when the
// token is missing, invalid, or its user no longer exists; other errors are internal.
func (a *Authorizer) Authenticate(ctx context.Context, header string) (access.Principal, error) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return access.Principal{}, ErrUnauthorized
	}
	claims, err := a.Verifier.Verify(strings.TrimSpace(tok))
	if err != nil {
		return access.Principal{}, ErrUnauthorized
	}
	u, err := a.Users.GetUser(ctx, claims.Subject)
	if apperr.Is(err, apperr.NotFound) {
		return access.Principal{}, ErrUnauthorized
	}
	if err != nil {
		return access.Principal{}, err
	}
	if u.Status != identity.UserActive {
		return access.Principal{}, ErrUnauthorized
	}
	p := u.Principal()
	path := access.IDsOnPath(p.ScopePath)
	ents, err := a.Entities.GetEntities(ctx, path)
	if err != nil {
		return access.Principal{}, err
	}
	for _, id := range path {
		e, ok := ents[id]
		if !ok {
			return access.Principal{}, ErrUnauthorized // scope deleted under the user
		}
		if e.Status == hierarchy.StatusSuspended {
			p.Suspended = true
		}
	}
	return p, nil
}

// Handle is the Lambda entry point (REQUEST authorizer). The policy allows every method of the
// stage so that API Gateway may cache it per token; the handlers check permissions per route.
func (a *Authorizer) Handle(ctx context.Context, ev events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	header := ev.Headers["Authorization"]
	if header == "" {
		header = ev.Headers["authorization"]
	}
	p, err := a.Authenticate(ctx, header)
	if err != nil {
		if !errors.Is(err, ErrUnauthorized) && a.Log != nil {
			a.Log.Error("authorizer", "err", err)
		}
		return events.APIGatewayCustomAuthorizerResponse{}, ErrUnauthorized
	}
	if a.Log != nil {
		a.Log.Info("authorized", "user", p.UserID, "role", p.Role, "suspended", p.Suspended)
	}
	return events.APIGatewayCustomAuthorizerResponse{
		PrincipalID: p.UserID,
		PolicyDocument: events.APIGatewayCustomAuthorizerPolicy{
			Version: "2012-10-17",
			Statement: []events.IAMPolicyStatement{{
				Action: []string{"execute-api:Invoke"}, Effect: "Allow", Resource: []string{stageWildcard(ev.MethodArn)},
			}},
		},
		Context: httpapi.PrincipalContext(p),
	}, nil
}

// stageWildcard turns arn:...:api/stage/GET/path into arn:...:api/stage/*.
func stageWildcard(methodArn string) string {
	parts := strings.SplitN(methodArn, "/", 3)
	if len(parts) < 2 {
		return methodArn
	}
	return parts[0] + "/" + parts[1] + "/*"
}
