package auth

import (
	"errors"
	"fmt"

	"github.com/channelbilling/cms/shared/apperr"
)

var (
	// ErrInvalidToken is wrapped by every token verification failure (bad signature, unknown key,
	// wrong issuer or audience, expired, malformed, refused algorithm, keys unavailable). Callers
	// answer 401 and log the wrapped detail; they must not show it.
	ErrInvalidToken = errors.New("auth: invalid token")

	// ErrUnknownProvider is wrapped by FederatedVerifier.Verify when the provider name is not
	// configured: a client error, not an authentication failure. The error returned is also an
	// *apperr.Error of kind Invalid naming field "provider" (400), so callers can pass it on as is.
	ErrUnknownProvider = errors.New("auth: unknown identity provider")

	// ErrPasswordTooShort is returned by ValidatePasswordStrength for a password shorter than
	// MinPasswordChars characters. Its text is fit to show to the user.
	ErrPasswordTooShort = fmt.Errorf("password must be at least %d characters long", MinPasswordChars)

	// ErrPasswordTooLong is returned by ValidatePasswordStrength and HashPassword for a password
	// longer than MaxPasswordBytes bytes. Its text is fit to show to the user.
	ErrPasswordTooLong = fmt.Errorf("password must be at most %d bytes long", MaxPasswordBytes)

	// ErrMalformedHash is wrapped by CheckPassword when the stored hash is not an argon2id PHC
	// string this package can check (corrupt data or unsupported parameters).
	ErrMalformedHash = errors.New("auth: malformed password hash")

	// ErrInvalidClaims is wrapped by Issuer.Issue when the claims lack a required field.
	ErrInvalidClaims = errors.New("auth: invalid claims")

	// ErrInvalidKey is wrapped when a signing key or a serialized key set is unusable (missing or
	// duplicate kid, not P-256, private part missing or inconsistent).
	ErrInvalidKey = errors.New("auth: invalid signing key")
)

// unknownProvider is what FederatedVerifier.Verify returns for a provider that is not configured:
// the platform's 400 for field "provider", wrapping ErrUnknownProvider.
func unknownProvider() error {
	return &apperr.Error{
		Kind:    apperr.Invalid,
		Code:    "validation_failed",
		Message: "The request has invalid fields.",
		Fields: []apperr.FieldError{{
			Field: "provider", Code: "unknown_provider", Message: "This identity provider is not configured.",
		}},
		Err: ErrUnknownProvider,
	}
}

// invalidToken wraps a verification failure: the sentinel for callers, the cause for logs.
func invalidToken(cause error) error {
	return fmt.Errorf("%w: %w", ErrInvalidToken, cause)
}
