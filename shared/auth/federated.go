package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// TenantIDPlaceholder may appear in Provider.Issuer for a multi-tenant Entra application: the
// token's "tid" claim is substituted before the issuer is compared, as Entra's own "common"
// discovery document does ("https://login.microsoftonline.com/{tenantid}/v2.0").
const TenantIDPlaceholder = "{tenantid}"

// googleIssuer is Google's issuer; Google documents that its ID tokens may carry it without the
// scheme too.
const googleIssuer = "https://accounts.google.com"

// federatedMethods are the algorithms a Provider may list: asymmetric only, so that no JWKS can be
// turned into an HMAC secret and "none" can never pass.
var federatedMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}

// Provider configures one OpenID Connect identity provider whose ID tokens are accepted (SPEC 5).
type Provider struct {
	// Name is what clients send as "provider": "entra", "google".
	Name string
	// Issuer is the expected "iss", exactly. It may contain TenantIDPlaceholder (multi-tenant
	// Entra). For https://accounts.google.com, "accounts.google.com" is accepted too.
	Issuer string
	// Audience is the expected "aud" (the client id registered with the provider); aud may be a
	// string or an array that contains it.
	Audience string
	// JWKSURL is the provider's key set, e.g. https://www.googleapis.com/oauth2/v3/certs or
	// https://login.microsoftonline.com/{tenant}/discovery/v2.0/keys.
	JWKSURL string
	// Algorithms are the accepted signature algorithms (asymmetric only); RS256 when empty, which
	// is what Entra and Google use.
	Algorithms []string
}

// validate returns every problem with p at once.
func (p Provider) validate() error {
	var errs []error
	if p.Name == "" {
		errs = append(errs, errors.New("name missing"))
	}
	if p.Issuer == "" {
		errs = append(errs, errors.New("issuer missing"))
	}
	if p.Audience == "" {
		errs = append(errs, errors.New("audience missing"))
	}
	if err := checkJWKSURL(p.JWKSURL); err != nil {
		errs = append(errs, err)
	}
	for _, a := range p.Algorithms {
		if !slices.Contains(federatedMethods, a) {
			errs = append(errs, fmt.Errorf("algorithm %q not allowed (want one of %v)", a, federatedMethods))
		}
	}
	return errors.Join(errs...)
}

// Identity is who a verified federated ID token says the caller is. Users are linked by
// Issuer + Subject; Email may be used to link only when EmailVerified is true (and settings allow).
type Identity struct {
	// Provider is the configured provider name.
	Provider string
	// Issuer is the token's "iss" (for multi-tenant Entra, the tenant's own issuer).
	Issuer string
	// Subject is the token's "sub".
	Subject string
	// Email is "email", or else "preferred_username" when that looks like an address; may be empty.
	Email string
	// EmailVerified is true only when Email came from "email" and the token asserts it verified:
	// "email_verified" true or "true" (Google), or "xms_edov" true (Entra, domain owner verified).
	// An address taken from preferred_username is never verified.
	EmailVerified bool
}

// FederatedVerifier verifies ID tokens from the configured providers, each against its own JWKS
// (through keyfunc). It is safe for concurrent use.
type FederatedVerifier struct {
	providers map[string]*federatedProvider
}

type federatedProvider struct {
	Provider
	keys *remoteKeys
}

// NewFederatedVerifier returns a verifier for providers and starts fetching each provider's JWKS
// in the background (keyfunc.NewDefaultCtx, refreshed hourly and on an unknown kid). It does not
// wait for the fetches: a JWKS that is slow or unreachable only makes that provider's tokens fail
// (ErrInvalidToken) until its keys arrive, and never delays start-up or the other providers; once
// the host answers again its keys are picked up by the next unknown-kid refresh (at most one every
// 5 minutes) or the hourly one. ctx ends the fetches and refreshes when cancelled. It returns an error listing every configuration
// problem (missing name, issuer or audience, duplicate name, bad JWKS URL, algorithm not
// asymmetric); an empty providers list is valid and refuses every provider.
func NewFederatedVerifier(ctx context.Context, providers []Provider) (*FederatedVerifier, error) {
	var errs []error
	seen := make(map[string]bool, len(providers))
	for i, p := range providers {
		if err := p.validate(); err != nil {
			errs = append(errs, fmt.Errorf("provider %d (%q): %w", i, p.Name, err))
		}
		if seen[p.Name] {
			errs = append(errs, fmt.Errorf("provider %d: name %q used twice", i, p.Name))
		}
		seen[p.Name] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("auth: federated providers: %w", err)
	}
	f := &FederatedVerifier{providers: make(map[string]*federatedProvider, len(providers))}
	for _, p := range providers {
		p.Algorithms = slices.Clone(p.Algorithms)
		if len(p.Algorithms) == 0 {
			p.Algorithms = []string{jwt.SigningMethodRS256.Alg()}
		}
		f.providers[p.Name] = &federatedProvider{Provider: p, keys: startRemoteKeys(ctx, p.JWKSURL)}
	}
	return f, nil
}

// idTokenClaims are the ID-token claims read here.
type idTokenClaims struct {
	jwt.RegisteredClaims
	AuthorizedParty   string    `json:"azp"`
	TenantID          string    `json:"tid"`
	Email             string    `json:"email"`
	EmailVerified     looseBool `json:"email_verified"`
	DomainOwnerVerify looseBool `json:"xms_edov"`
	PreferredUsername string    `json:"preferred_username"`
}

// looseBool reads a JSON boolean or the strings "true"/"false"; anything else is false, so an
// odd value cannot make a token unparseable nor an address verified.
type looseBool bool

// UnmarshalJSON returns an error only for invalid JSON.
func (b *looseBool) UnmarshalJSON(data []byte) error {
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case bool:
		*b = looseBool(v)
	case string:
		*b = looseBool(strings.EqualFold(v, "true"))
	default:
		*b = false
	}
	return nil
}

// Verify checks idToken as an ID token of the named provider and returns the identity it asserts:
// signature by a key of the provider's JWKS with one of its algorithms, issuer, audience (and azp
// when there are several audiences), exp required, iat required and not in the future, nbf, with
// ClockLeeway; sub required. It returns an error wrapping ErrUnknownProvider when provider is not
// configured (an apperr Invalid error on field "provider"), and an error wrapping ErrInvalidToken on every verification failure, including the
// provider's keys being unavailable within ctx (at most 5 s).
func (f *FederatedVerifier) Verify(ctx context.Context, provider, idToken string) (Identity, error) {
	p, ok := f.providers[provider]
	if !ok {
		return Identity{}, unknownProvider()
	}
	if err := checkTokenSize(idToken); err != nil {
		return Identity{}, invalidToken(err)
	}
	ctx, cancel := context.WithTimeout(ctx, keyLookupTimeout)
	defer cancel()
	kf, err := p.keys.get(ctx)
	if err != nil {
		return Identity{}, invalidToken(fmt.Errorf("provider %q: %w", p.Name, err))
	}
	var c idTokenClaims
	_, err = jwt.ParseWithClaims(idToken, &c, kf.KeyfuncCtx(ctx),
		jwt.WithValidMethods(p.Algorithms),
		jwt.WithAudience(p.Audience),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(ClockLeeway),
	)
	if err != nil {
		return Identity{}, invalidToken(fmt.Errorf("provider %q: %w", p.Name, err))
	}
	if err := p.checkClaims(c); err != nil {
		return Identity{}, invalidToken(fmt.Errorf("provider %q: %w", p.Name, err))
	}
	id := Identity{Provider: p.Name, Issuer: c.Issuer, Subject: c.Subject}
	switch {
	case strings.TrimSpace(c.Email) != "":
		id.Email = strings.TrimSpace(c.Email)
		id.EmailVerified = bool(c.EmailVerified) || bool(c.DomainOwnerVerify)
	case strings.Contains(c.PreferredUsername, "@"):
		id.Email = strings.TrimSpace(c.PreferredUsername)
	}
	return id, nil
}

// checkClaims does the checks the jwt parser cannot: the issuer (with the Entra tenant
// placeholder), sub and iat present, and azp when the token names several audiences.
func (p *federatedProvider) checkClaims(c idTokenClaims) error {
	if !p.issuerMatches(c.Issuer, c.TenantID) {
		return fmt.Errorf("issuer %q not accepted", c.Issuer)
	}
	if c.Subject == "" {
		return errors.New("sub missing")
	}
	if c.IssuedAt == nil {
		return errors.New("iat missing")
	}
	if c.ExpiresAt != nil && !c.IssuedAt.Before(c.ExpiresAt.Time) {
		return errors.New("iat not before exp")
	}
	if len(c.Audience) > 1 && c.AuthorizedParty != "" && c.AuthorizedParty != p.Audience {
		return fmt.Errorf("azp %q is not the audience", c.AuthorizedParty)
	}
	return nil
}

func (p *federatedProvider) issuerMatches(iss, tid string) bool {
	if iss == "" {
		return false
	}
	if strings.Contains(p.Issuer, TenantIDPlaceholder) {
		if !isTenantID(tid) {
			return false
		}
		return iss == strings.ReplaceAll(p.Issuer, TenantIDPlaceholder, tid)
	}
	return iss == p.Issuer || (p.Issuer == googleIssuer && iss == strings.TrimPrefix(googleIssuer, "https://"))
}

// isTenantID accepts what can stand for a tenant in an issuer path: a GUID's characters only, so a
// crafted tid cannot rewrite the rest of the URL.
func isTenantID(tid string) bool {
	if tid == "" || len(tid) > 64 {
		return false
	}
	for _, r := range tid {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
