package auth_test

import (
	"testing"
	"time"

	"github.com/channelbilling/cms/shared/auth"
)

const (
	testIssuer   = "https://api.cms.test"
	testAudience = "cms-api"
)

// MustSigningKey returns a new signing key or fails the test.
func MustSigningKey(tb testing.TB) auth.SigningKey {
	tb.Helper()
	k, err := auth.GenerateSigningKey()
	if err != nil {
		tb.Fatalf("GenerateSigningKey: %v", err)
	}
	return k
}

// MustIssuer returns an Issuer over keys with the test issuer and audience, or fails the test.
func MustIssuer(tb testing.TB, keys []auth.SigningKey, now func() time.Time) *auth.Issuer {
	tb.Helper()
	iss, err := auth.NewIssuer(keys, testIssuer, testAudience, 0, now)
	if err != nil {
		tb.Fatalf("NewIssuer: %v", err)
	}
	return iss
}

// MustJWKS returns the public JWKS of keys or fails the test.
func MustJWKS(tb testing.TB, keys ...auth.SigningKey) []byte {
	tb.Helper()
	jwks, err := auth.PublicJWKS(keys)
	if err != nil {
		tb.Fatalf("PublicJWKS: %v", err)
	}
	return jwks
}

// MustVerifier returns a Verifier over the public JWKS of keys, or fails the test.
func MustVerifier(tb testing.TB, keys ...auth.SigningKey) *auth.Verifier {
	tb.Helper()
	v, err := auth.NewVerifierFromJWKS(MustJWKS(tb, keys...), testIssuer, testAudience)
	if err != nil {
		tb.Fatalf("NewVerifierFromJWKS: %v", err)
	}
	return v
}

// MustIssue issues a token for a partner admin or fails the test.
func MustIssue(tb testing.TB, iss *auth.Issuer) string {
	tb.Helper()
	tok, _, err := iss.Issue(partnerAdmin())
	if err != nil {
		tb.Fatalf("Issue: %v", err)
	}
	return tok
}

func partnerAdmin() auth.Claims {
	return auth.Claims{
		Subject:   "usr_1",
		Role:      "partner_admin",
		ScopeID:   "par_7",
		ScopeType: "partner",
		ScopePath: "/plt_1/dis_3/par_7",
	}
}
