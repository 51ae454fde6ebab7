package identity

import (
	"context"
	"strings"
	"time"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/auth"
	"github.com/channelbilling/cms/shared/ids"
)

// TokenIssuer signs access tokens.
type TokenIssuer interface {
	Issue(c auth.Claims) (token string, expiresAt time.Time, err error)
}

// IDTokenVerifier verifies federated ID tokens.
type IDTokenVerifier interface {
	Verify(ctx context.Context, provider, idToken string) (auth.Identity, error)
}

// Session is the answer of every sign-in: an access token and a refresh token.
type Session struct {
	Token            string    `json:"token"`
	RefreshToken     string    `json:"refreshToken"`
	ExpiresAt        time.Time `json:"expiresAt"`
	RefreshExpiresAt time.Time `json:"refreshExpiresAt"`
}

// Sessions signs users in and keeps their refresh tokens.
type Sessions struct {
	Store    Store
	Issuer   TokenIssuer
	IDTokens IDTokenVerifier // nil: federated sign-in is off
	// LinkByEmail allows a federated identity with a verified e-mail to link to the user with
	// that e-mail on first use.
	LinkByEmail   bool
	RefreshTTL    time.Duration
	MaxFailures   int
	FailureWindow time.Duration
	Now           func() time.Time
}

func (s *Sessions) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Sessions) refreshTTL() time.Duration {
	if s.RefreshTTL > 0 {
		return s.RefreshTTL
	}
	return 30 * 24 * time.Hour
}

func badCredentials() error {
	return apperr.New(apperr.Unauthorized, "invalid_credentials", "The e-mail or password is wrong.")
}

// LoginInput is the body of POST /auth/login.
type LoginInput struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

// Validate reports every missing field.
func (in LoginInput) Validate() error {
	var f apperr.Fields
	f.Required("email", strings.TrimSpace(in.Email) == "")
	f.Required("password", in.Password == "")
	return f.Err()
}

// TokenInput is the body of POST /auth/token, the seed PowerShell client's form of login.
type TokenInput struct {
	EmailAddress string `json:"emailAddress"`
	Password     string `json:"password"`
}

// RefreshInput is the body of the refresh and logout endpoints.
type RefreshInput struct {
	RefreshToken string `json:"refreshToken"`
}

// Validate reports a missing token.
func (in RefreshInput) Validate() error {
	var f apperr.Fields
	f.Required("refreshToken", in.RefreshToken == "")
	return f.Err()
}

// FederatedInput is the body of POST /auth/federated.
type FederatedInput struct {
	Provider string `json:"provider"`
	IDToken  string `json:"idToken"`
}

// Validate reports every missing field.
func (in FederatedInput) Validate() error {
	var f apperr.Fields
	f.Required("provider", in.Provider == "")
	f.Required("idToken", in.IDToken == "")
	return f.Err()
}

// AcceptInviteInput is the body of POST /auth/accept-invite.
type AcceptInviteInput struct {
	Token    string `json:"token"`
	Password string `json:"password"`
}

// Validate reports every bad field.
func (in AcceptInviteInput) Validate() error {
	var f apperr.Fields
	f.Required("token", in.Token == "")
	if err := auth.ValidatePasswordStrength(in.Password); err != nil {
		f.Add("password", "weak", err.Error())
	}
	return f.Err()
}

// Login checks an e-mail and password. Unknown user and wrong password answer the same, in the
// same time; after MaxFailures failures in FailureWindow the account is throttled (429) until
// the window ends. Invalid, Unauthorized, TooManyRequests.
func (s *Sessions) Login(ctx context.Context, in LoginInput) (*Session, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	email := strings.ToLower(strings.TrimSpace(in.Email))
	now := s.now()
	n, err := s.Store.LoginFailures(ctx, email, now)
	if err != nil {
		return nil, err
	}
	if n >= s.MaxFailures {
		return nil, apperr.New(apperr.TooManyRequests, "too_many_attempts", "Too many failed sign-ins; try again later.")
	}
	u, err := s.Store.GetUserByEmail(ctx, email)
	if err != nil && !apperr.Is(err, apperr.NotFound) {
		return nil, err
	}
	ok := false
	if u == nil || u.Password == "" {
		auth.DummyCheck(in.Password)
	} else if ok, err = auth.CheckPassword(u.Password, in.Password); err != nil {
		return nil, apperr.Wrap(err, "check password")
	}
	if !ok {
		if _, err := s.Store.RecordLoginFailure(ctx, email, now, s.FailureWindow); err != nil {
			return nil, err
		}
		return nil, badCredentials()
	}
	if n > 0 {
		if err := s.Store.ResetLoginFailures(ctx, email); err != nil {
			return nil, err
		}
	}
	return s.start(ctx, u)
}

// start issues an access token and the first refresh token of a new family.
func (s *Sessions) start(ctx context.Context, u *User) (*Session, error) {
	now := s.now()
	tok, exp, err := s.Issuer.Issue(claimsOf(u))
	if err != nil {
		return nil, apperr.Wrap(err, "issue token")
	}
	plain, hash, err := auth.NewOpaqueToken("rt")
	if err != nil {
		return nil, apperr.Wrap(err, "refresh token")
	}
	rexp := now.Add(s.refreshTTL())
	if err := s.Store.PutRefreshToken(ctx, RefreshToken{Hash: hash, Family: ids.New("fam"), UserID: u.ID, ExpiresAt: rexp}); err != nil {
		return nil, err
	}
	// The last sign-in time is informative; a lost race on it must not fail the sign-in.
	_, _ = s.Store.UpdateUser(ctx, u.ID, func(u *User) error { u.LastLoginAt = &now; return nil })
	return &Session{Token: tok, RefreshToken: plain, ExpiresAt: exp, RefreshExpiresAt: rexp}, nil
}

func claimsOf(u *User) auth.Claims {
	return auth.Claims{Subject: u.ID, Role: string(u.Role), ScopeID: u.Scope.ID, ScopeType: string(u.Scope.Type), ScopePath: u.ScopePath}
}

// Refresh spends a refresh token and returns a new pair. A spent token presented again revokes
// its whole family. Invalid, Unauthorized.
func (s *Sessions) Refresh(ctx context.Context, in RefreshInput) (*Session, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	now := s.now()
	plain, hash, err := auth.NewOpaqueToken("rt")
	if err != nil {
		return nil, apperr.Wrap(err, "refresh token")
	}
	next := RefreshToken{Hash: hash, ExpiresAt: now.Add(s.refreshTTL())}
	old, err := s.Store.RotateRefreshToken(ctx, auth.HashOpaqueToken(in.RefreshToken), next, now)
	if err != nil {
		return nil, err
	}
	u, err := s.Store.GetUser(ctx, old.UserID)
	if apperr.Is(err, apperr.NotFound) {
		return nil, apperr.New(apperr.Unauthorized, "invalid_refresh_token", "The refresh token is invalid, expired or already used.")
	}
	if err != nil {
		return nil, err
	}
	tok, exp, err := s.Issuer.Issue(claimsOf(u))
	if err != nil {
		return nil, apperr.Wrap(err, "issue token")
	}
	return &Session{Token: tok, RefreshToken: plain, ExpiresAt: exp, RefreshExpiresAt: next.ExpiresAt}, nil
}

// Logout revokes the family of a refresh token. Invalid, Unauthorized.
func (s *Sessions) Logout(ctx context.Context, in RefreshInput) error {
	if err := in.Validate(); err != nil {
		return err
	}
	return s.Store.RevokeFamilyOf(ctx, auth.HashOpaqueToken(in.RefreshToken))
}

// Federated signs in with a provider's ID token, mapped to a user by a linked identity or, when
// LinkByEmail is set, by a verified e-mail (which then links it). Invalid, Unauthorized.
func (s *Sessions) Federated(ctx context.Context, in FederatedInput) (*Session, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	if s.IDTokens == nil {
		return nil, apperr.Field("provider", "not_configured", "federated sign-in is not configured")
	}
	id, err := s.IDTokens.Verify(ctx, in.Provider, in.IDToken)
	if err != nil {
		if apperr.KindOf(err) == apperr.Invalid {
			return nil, err
		}
		return nil, apperr.New(apperr.Unauthorized, "invalid_id_token", "The ID token could not be verified.")
	}
	refused := apperr.New(apperr.Unauthorized, "unknown_identity", "No user is linked to this identity.")
	userID, err := s.Store.LinkedUser(ctx, id.Issuer, id.Subject)
	switch {
	case err == nil:
	case !apperr.Is(err, apperr.NotFound):
		return nil, err
	case !s.LinkByEmail || !id.EmailVerified || id.Email == "":
		return nil, refused
	default:
		u, err := s.Store.GetUserByEmail(ctx, id.Email)
		if apperr.Is(err, apperr.NotFound) {
			return nil, refused
		}
		if err != nil {
			return nil, err
		}
		if err := s.Store.LinkIdentity(ctx, id.Issuer, id.Subject, u.ID); err != nil {
			return nil, err
		}
		userID = u.ID
	}
	u, err := s.Store.GetUser(ctx, userID)
	if apperr.Is(err, apperr.NotFound) {
		return nil, refused
	}
	if err != nil {
		return nil, err
	}
	return s.start(ctx, u)
}

// AcceptInvite sets the password of an invited user and signs them in. Invalid, Unauthorized.
func (s *Sessions) AcceptInvite(ctx context.Context, in AcceptInviteInput) (*Session, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	hash, err := auth.HashPassword(in.Password)
	if err != nil {
		return nil, apperr.Wrap(err, "hash password")
	}
	u, err := s.Store.AcceptInvite(ctx, auth.HashOpaqueToken(in.Token), hash, s.now())
	if err != nil {
		return nil, err
	}
	return s.start(ctx, u)
}
