package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

const (
	// DefaultAccessTokenTTL is the access-token lifetime of SPEC 5, used when NewIssuer gets 0.
	DefaultAccessTokenTTL = 15 * time.Minute

	// ClockLeeway is the clock skew tolerated on exp, nbf and iat, for platform and federated
	// tokens alike.
	ClockLeeway = 30 * time.Second

	// maxTokenBytes bounds the work an attacker can make a verifier do; real tokens are < 2 KiB.
	maxTokenBytes = 8 << 10

	// keyLookupTimeout bounds how long one verification may wait for a JWKS (first fetch, or the
	// refresh an unknown kid triggers), whatever context the caller gives.
	keyLookupTimeout = 5 * time.Second

	// accessTokenType is the JWT "typ" of platform access tokens (RFC 9068): a verifier refuses any
	// other JWT that the same keys might one day sign.
	accessTokenType = "at+jwt"
)

// platformMethods are the only signature algorithms accepted on platform access tokens (SPEC 5).
var platformMethods = []string{jwt.SigningMethodES256.Alg(), jwt.SigningMethodRS256.Alg()}

// Claims are the claims of a platform access token.
type Claims struct {
	// Subject is the user id ("sub").
	Subject string
	// Role is the user's role, e.g. "partner_admin" ("role").
	Role string
	// ScopeID is the id of the entity the role is held at ("scopeId").
	ScopeID string
	// ScopeType is that entity's type: platform, distributor, partner or tenant ("scopeType").
	ScopeType string
	// ScopePath is the entity's ancestry as the hierarchy package writes it; optional ("scopePath").
	ScopePath string

	// Issuer ("iss"), Audience ("aud"), ExpiresAt ("exp"), IssuedAt ("iat") and NotBefore ("nbf")
	// are set by Issuer.Issue, which ignores values given for them, and filled by Verify.
	Issuer    string
	Audience  []string
	ExpiresAt time.Time
	IssuedAt  time.Time
	NotBefore time.Time
	// ID is the token id ("jti"): random unless given to Issue (e.g. to tie the token to a
	// refresh-token family).
	ID string
}

// missing returns an error naming every required claim that is empty.
func (c Claims) missing() error {
	var errs []error
	for _, f := range []struct{ name, value string }{
		{"sub", c.Subject}, {"role", c.Role}, {"scopeId", c.ScopeID}, {"scopeType", c.ScopeType},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("claim %q missing", f.name))
		}
	}
	return errors.Join(errs...)
}

// accessClaims is the JSON form of Claims inside the JWT.
type accessClaims struct {
	jwt.RegisteredClaims
	Role      string `json:"role"`
	ScopeType string `json:"scopeType"`
	ScopeID   string `json:"scopeId"`
	ScopePath string `json:"scopePath,omitempty"`
}

// Validate is called by the jwt parser after the standard checks.
func (a accessClaims) Validate() error {
	return a.claims().missing()
}

func (a accessClaims) claims() Claims {
	c := Claims{
		Subject:   a.Subject,
		Role:      a.Role,
		ScopeID:   a.ScopeID,
		ScopeType: a.ScopeType,
		ScopePath: a.ScopePath,
		Issuer:    a.Issuer,
		Audience:  []string(a.Audience),
		ID:        a.ID,
	}
	if a.ExpiresAt != nil {
		c.ExpiresAt = a.ExpiresAt.UTC()
	}
	if a.IssuedAt != nil {
		c.IssuedAt = a.IssuedAt.UTC()
	}
	if a.NotBefore != nil {
		c.NotBefore = a.NotBefore.UTC()
	}
	return c
}

// Issuer signs platform access tokens. It is safe for concurrent use.
type Issuer struct {
	key      SigningKey
	issuer   string
	audience string
	ttl      time.Duration
	now      func() time.Time
}

// NewIssuer returns an Issuer that signs with keys[0] (the newest key) and stamps tokens with
// issuer, audience and a lifetime of ttl (DefaultAccessTokenTTL when 0); now is the clock (time.Now
// when nil). It returns an error when the key set is unusable (wrapping ErrInvalidKey, see
// ValidateSigningKeys), issuer or audience is empty, or ttl is negative.
func NewIssuer(keys []SigningKey, issuer, audience string, ttl time.Duration, now func() time.Time) (*Issuer, error) {
	var errs []error
	if err := ValidateSigningKeys(keys); err != nil {
		errs = append(errs, err)
	}
	if issuer == "" {
		errs = append(errs, errors.New("auth: issuer missing"))
	}
	if audience == "" {
		errs = append(errs, errors.New("auth: audience missing"))
	}
	if ttl < 0 {
		errs = append(errs, errors.New("auth: negative token lifetime"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if ttl == 0 {
		ttl = DefaultAccessTokenTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Issuer{key: keys[0], issuer: issuer, audience: audience, ttl: ttl, now: now}, nil
}

// Issue signs an ES256 access token for c, with header kid set to the newest key's id and typ
// "at+jwt", and returns it with its expiry (whole seconds, UTC, equal to the token's exp). The
// Issuer sets iss, aud, iat, nbf and exp; c.ID becomes the jti, a random one when empty. It returns
// an error wrapping ErrInvalidClaims when Subject, Role, ScopeID or ScopeType is empty, and an
// error when signing fails.
func (i *Issuer) Issue(c Claims) (string, time.Time, error) {
	if err := c.missing(); err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrInvalidClaims, err)
	}
	now := i.now().UTC().Truncate(time.Second)
	exp := now.Add(i.ttl).Truncate(time.Second)
	jti := c.ID
	if jti == "" {
		var err error
		if jti, err = randomURLSafe(16); err != nil {
			return "", time.Time{}, fmt.Errorf("auth: token id: %w", err)
		}
	}
	t := jwt.NewWithClaims(jwt.SigningMethodES256, accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.issuer,
			Subject:   c.Subject,
			Audience:  jwt.ClaimStrings{i.audience},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
		Role:      c.Role,
		ScopeType: c.ScopeType,
		ScopeID:   c.ScopeID,
		ScopePath: c.ScopePath,
	})
	t.Header["kid"] = i.key.ID
	t.Header["typ"] = accessTokenType
	signed, err := t.SignedString(i.key.Private)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("auth: sign token: %w", err)
	}
	return signed, exp, nil
}

// Verifier checks platform access tokens against a JSON Web Key Set, through keyfunc. It is safe
// for concurrent use.
type Verifier struct {
	ctx  context.Context
	keys func(context.Context) (keyfunc.Keyfunc, error)
	opts []jwt.ParserOption
}

// NewVerifierFromJWKS returns a Verifier over a fixed JWKS (what PublicJWKS returns; a private set
// works too, only public parts are used). It returns an error when the JWKS cannot be parsed or has
// no keys, or issuer or audience is empty.
func NewVerifierFromJWKS(jwksJSON []byte, issuer, audience string) (*Verifier, error) {
	if err := checkIssuerAudience(issuer, audience); err != nil {
		return nil, err
	}
	kf, err := keyfunc.NewJWKSetJSON(jwksJSON)
	if err != nil {
		return nil, fmt.Errorf("auth: parse JWKS: %w", err)
	}
	ctx := context.Background()
	all, err := kf.Storage().KeyReadAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("auth: read JWKS: %w", err)
	}
	if len(all) == 0 {
		return nil, errors.New("auth: JWKS has no keys")
	}
	return newVerifier(ctx, func(context.Context) (keyfunc.Keyfunc, error) { return kf, nil }, issuer, audience), nil
}

// NewVerifierFromURL returns a Verifier over the JWKS at jwksURL, which keyfunc refreshes every
// hour and whenever a token names an unknown kid (at most once every 5 minutes), so keys rotate
// without redeploying. It returns at once: the first fetch runs in the background and Verify waits
// for it (at most 5 s). ctx ends the background refresh when cancelled. It returns an error when
// the URL is not an absolute http(s) URL, or issuer or audience is empty; an unreachable URL is not
// an error (tokens are refused until the keys arrive).
func NewVerifierFromURL(ctx context.Context, jwksURL, issuer, audience string) (*Verifier, error) {
	if err := errors.Join(checkIssuerAudience(issuer, audience), checkJWKSURL(jwksURL)); err != nil {
		return nil, err
	}
	remote := startRemoteKeys(ctx, jwksURL)
	return newVerifier(ctx, remote.get, issuer, audience), nil
}

func newVerifier(ctx context.Context, keys func(context.Context) (keyfunc.Keyfunc, error), issuer, audience string) *Verifier {
	return &Verifier{
		ctx:  ctx,
		keys: keys,
		opts: []jwt.ParserOption{
			jwt.WithValidMethods(platformMethods),
			jwt.WithIssuer(issuer),
			jwt.WithAudience(audience),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(ClockLeeway),
		},
	}
}

func checkIssuerAudience(issuer, audience string) error {
	var errs []error
	if issuer == "" {
		errs = append(errs, errors.New("auth: issuer missing"))
	}
	if audience == "" {
		errs = append(errs, errors.New("auth: audience missing"))
	}
	return errors.Join(errs...)
}

// Verify checks a platform access token and returns its claims: signature by a key of the JWKS
// (ES256 or RS256 only, kid required, typ "at+jwt"), issuer, audience, exp required, nbf and iat,
// with ClockLeeway, and the platform claims present. Every failure returns an error wrapping
// ErrInvalidToken, whose detail is for logs only.
func (v *Verifier) Verify(token string) (Claims, error) {
	return v.VerifyContext(v.ctx, token)
}

// VerifyContext is Verify bounded by ctx as well (a JWKS fetch or refresh stops when ctx ends).
// Every failure returns an error wrapping ErrInvalidToken.
func (v *Verifier) VerifyContext(ctx context.Context, token string) (Claims, error) {
	if err := checkTokenSize(token); err != nil {
		return Claims{}, invalidToken(err)
	}
	ctx, cancel := context.WithTimeout(ctx, keyLookupTimeout)
	defer cancel()
	kf, err := v.keys(ctx)
	if err != nil {
		return Claims{}, invalidToken(err)
	}
	lookup := kf.KeyfuncCtx(ctx)
	var ac accessClaims
	_, err = jwt.ParseWithClaims(token, &ac, func(t *jwt.Token) (any, error) {
		// Checked before the key lookup, so a foreign JWT cannot trigger a JWKS refresh.
		if typ, _ := t.Header["typ"].(string); !isAccessTokenType(typ) {
			return nil, fmt.Errorf("typ %q is not %q", typ, accessTokenType)
		}
		return lookup(t)
	}, v.opts...)
	if err != nil {
		return Claims{}, invalidToken(err)
	}
	return ac.claims(), nil
}

func isAccessTokenType(typ string) bool {
	return strings.EqualFold(typ, accessTokenType) || strings.EqualFold(typ, "application/"+accessTokenType)
}

func checkTokenSize(token string) error {
	switch {
	case token == "":
		return errors.New("empty token")
	case len(token) > maxTokenBytes:
		return fmt.Errorf("token longer than %d bytes", maxTokenBytes)
	}
	return nil
}
