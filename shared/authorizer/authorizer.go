// Package authorizer is the API Gateway Lambda authorizer: it verifies the bearer token, loads the
// user's current role and scope, checks the suspension of the scope's ancestors, hands the
// caller to the resource handlers through the authorizer context, and names the API key that
// meters the call (usageIdentifierKey; shared/usagekeys).
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
	"github.com/channelbilling/cms/shared/usagekeys"
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
	// UsageKeys derives the caller's usageIdentifierKey. Required by Handle: the API's methods
	// require an API key, so a decision without one would be refused by API Gateway anyway.
	UsageKeys *usagekeys.Deriver
	Log       *slog.Logger
}

// caller is an authenticated request's principal and the channel entity whose API key meters it.
type caller struct {
	Principal access.Principal
	// KeyOwner is the id of the nearest entity at or above the scope that owns an API key
	// (usagekeys.Owner): the partner of a tenant's user, the scope entity otherwise.
	KeyOwner string
}

// authenticate returns the caller for an Authorization header value. ErrUnauthorized when the
// token is missing, invalid, or its user no longer exists; other errors are internal.
func (a *Authorizer) authenticate(ctx context.Context, header string) (caller, error) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return caller{}, ErrUnauthorized
	}
	claims, err := a.Verifier.Verify(strings.TrimSpace(tok))
	if err != nil {
		return caller{}, ErrUnauthorized
	}
	u, err := a.Users.GetUser(ctx, claims.Subject)
	if apperr.Is(err, apperr.NotFound) {
		return caller{}, ErrUnauthorized
	}
	if err != nil {
		return caller{}, err
	}
	if u.Status != identity.UserActive {
		return caller{}, ErrUnauthorized
	}
	p := u.Principal()
	path := access.IDsOnPath(p.ScopePath)
	ents, err := a.Entities.GetEntities(ctx, path)
	if err != nil {
		return caller{}, err
	}
	types := map[string]access.EntityType{}
	for _, id := range path {
		e, ok := ents[id]
		if !ok {
			return caller{}, ErrUnauthorized // scope deleted under the user
		}
		types[id] = e.Type
		if e.Status == hierarchy.StatusSuspended {
			p.Suspended = true
		}
	}
	// The entities on the path are already loaded for the suspension check: the key's owner
	// costs no extra read.
	owner, ok := usagekeys.Owner(path, types)
	if !ok {
		return caller{}, ErrUnauthorized // no channel entity above the scope
	}
	return caller{Principal: p, KeyOwner: owner}, nil
}

// Handle is the Lambda entry point (REQUEST authorizer). The policy allows every method of the
// stage so that API Gateway may cache it per token; the handlers check permissions per route.
// usageIdentifierKey is the value of the API key of the caller's key owner: API Gateway meters
// and throttles the call on that key's usage plan. A decision it cannot make answers
// ErrUnauthorized (401); a missing UsageKeys is an internal error, logged, also answered 401.
func (a *Authorizer) Handle(ctx context.Context, ev events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	header := ev.Headers["Authorization"]
	if header == "" {
		header = ev.Headers["authorization"]
	}
	c, err := a.authenticate(ctx, header)
	if err == nil && a.UsageKeys == nil {
		err = errors.New("no usage key deriver")
	}
	if err != nil {
		if !errors.Is(err, ErrUnauthorized) && a.Log != nil {
			a.Log.Error("authorizer", "err", err)
		}
		return events.APIGatewayCustomAuthorizerResponse{}, ErrUnauthorized
	}
	p := c.Principal
	if a.Log != nil {
		a.Log.Info("authorized", "user", p.UserID, "role", p.Role, "suspended", p.Suspended, "keyOwner", c.KeyOwner)
	}
	return events.APIGatewayCustomAuthorizerResponse{
		PrincipalID:        p.UserID,
		UsageIdentifierKey: a.UsageKeys.Value(c.KeyOwner),
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
