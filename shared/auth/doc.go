// Package auth holds the token and password primitives of the platform (SPEC 5): the ES256 keys
// that sign access tokens and the JSON Web Key Set that publishes them, the access-token Issuer and
// Verifier, verification of federated ID tokens (Entra, Google) against each provider's JWKS,
// argon2id password hashes, and opaque high-entropy tokens (refresh tokens, invitations, API keys).
//
// The package stores nothing and imports no AWS SDK: callers keep the serialized keys (a secret or
// a table item) and the token hashes wherever they like.
//
// Errors: every failure to verify a token, platform or federated, wraps ErrInvalidToken; the
// wrapped detail is meant for logs only, never for responses. The HTTP layer maps:
//
//	ErrInvalidToken      -> 401 unauthorized
//	ErrUnknownProvider   -> 400 invalid, field "provider" (already an *apperr.Error)
//	ErrPasswordTooShort  -> 400 invalid, field "password" (text fit for users)
//	ErrPasswordTooLong   -> 400 invalid, field "password" (text fit for users)
//
// Everything else returned here is a configuration or programming error (500, logged).
package auth
