package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/channelbilling/cms/shared/apperr"
	"github.com/channelbilling/cms/shared/auth"
)

const (
	rsaKid      = "rsa-1"
	ecKid       = "ec-1"
	tenantID    = "9188040d-6c67-4c5b-b112-36a304b66dad"
	entraIssuer = "https://login.test/" + tenantID + "/v2.0"
)

// idp is a fake OpenID provider: its own RSA and EC keys behind its own JWKS server.
type idp struct {
	url string
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
}

// StartIdP starts a JWKS server with a new RSA key (kid rsa-1, alg RS256, as Google publishes) and
// a new P-256 key (kid ec-1, no alg, as Entra publishes its keys), stopped when the test ends.
func StartIdP(tb testing.TB) *idp {
	tb.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	var set jwkset.JWKSMarshal
	for _, k := range []struct {
		key any
		md  jwkset.JWKMetadataOptions
	}{
		{&rsaKey.PublicKey, jwkset.JWKMetadataOptions{KID: rsaKid, ALG: jwkset.AlgRS256, USE: jwkset.UseSig}},
		{&ecKey.PublicKey, jwkset.JWKMetadataOptions{KID: ecKid, USE: jwkset.UseSig}},
	} {
		jwk, err := jwkset.NewJWKFromKey(k.key, jwkset.JWKOptions{Metadata: k.md})
		if err != nil {
			tb.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	body, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	tb.Cleanup(srv.Close)
	return &idp{url: srv.URL, rsa: rsaKey, ec: ecKey}
}

// providers configures a Google-like and an Entra-like (multi-tenant) provider on one IdP.
func (p *idp) providers() []auth.Provider {
	return []auth.Provider{
		{Name: "google", Issuer: "https://accounts.google.com", Audience: "google-client", JWKSURL: p.url + "/oauth2/v3/certs"},
		{
			Name: "entra", Issuer: "https://login.test/{tenantid}/v2.0", Audience: "entra-client",
			JWKSURL: p.url + "/common/discovery/v2.0/keys", Algorithms: []string{"RS256", "ES256"},
		},
	}
}

// MustFederatedVerifier returns a verifier over providers, whose JWKS fetches end with the test,
// or fails the test.
func MustFederatedVerifier(tb testing.TB, providers []auth.Provider) *auth.FederatedVerifier {
	tb.Helper()
	v, err := auth.NewFederatedVerifier(tb.Context(), providers)
	if err != nil {
		tb.Fatalf("NewFederatedVerifier: %v", err)
	}
	return v
}

func googleClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": "https://accounts.google.com", "aud": "google-client", "azp": "google-client", "sub": "g-123",
		"iat": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": "ann@example.com", "email_verified": true,
	}
}

func entraClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": entraIssuer, "tid": tenantID, "aud": "entra-client", "sub": "e-456",
		"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(time.Hour).Unix(),
		"email": "Bob@Contoso.test", "preferred_username": "bob@contoso.test",
	}
}

func TestFederatedVerify(t *testing.T) {
	t.Parallel()
	now := time.Now()
	rsaHdr := map[string]any{"kid": rsaKid}
	ecHdr := map[string]any{"kid": ecKid}

	for _, tc := range []struct {
		name     string
		provider string
		token    func(t *testing.T, p *idp) string
		want     auth.Identity
	}{
		{"OK_Google", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, googleClaims(now))
		}, auth.Identity{Provider: "google", Issuer: "https://accounts.google.com", Subject: "g-123", Email: "ann@example.com", EmailVerified: true}},
		{"OK_GoogleEmailVerifiedString", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{"email_verified": "true"}))
		}, auth.Identity{Provider: "google", Issuer: "https://accounts.google.com", Subject: "g-123", Email: "ann@example.com", EmailVerified: true}},
		{"OK_GoogleEmailNotVerified", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{"email_verified": "false"}))
		}, auth.Identity{Provider: "google", Issuer: "https://accounts.google.com", Subject: "g-123", Email: "ann@example.com"}},
		{"OK_GoogleSchemelessIssuer", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{"iss": "accounts.google.com"}))
		}, auth.Identity{Provider: "google", Issuer: "accounts.google.com", Subject: "g-123", Email: "ann@example.com", EmailVerified: true}},
		{"OK_AudienceArray", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{"aud": []string{"other", "google-client"}}))
		}, auth.Identity{Provider: "google", Issuer: "https://accounts.google.com", Subject: "g-123", Email: "ann@example.com", EmailVerified: true}},
		{"OK_EntraRS256", "entra", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, entraClaims(now))
		}, auth.Identity{Provider: "entra", Issuer: entraIssuer, Subject: "e-456", Email: "Bob@Contoso.test"}},
		{"OK_EntraES256DomainOwnerVerified", "entra", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodES256, p.ec, ecHdr, with(entraClaims(now), map[string]any{"xms_edov": true}))
		}, auth.Identity{Provider: "entra", Issuer: entraIssuer, Subject: "e-456", Email: "Bob@Contoso.test", EmailVerified: true}},
		{"OK_EntraPreferredUsername", "entra", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(entraClaims(now), map[string]any{"email": nil, "xms_edov": true}))
		}, auth.Identity{Provider: "entra", Issuer: entraIssuer, Subject: "e-456", Email: "bob@contoso.test"}},
		{"OK_EntraNoAddress", "entra", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(entraClaims(now), map[string]any{"email": nil, "preferred_username": "+33612345678"}))
		}, auth.Identity{Provider: "entra", Issuer: entraIssuer, Subject: "e-456"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := StartIdP(t)
			v := MustFederatedVerifier(t, p.providers())
			got, err := v.Verify(t.Context(), tc.provider, tc.token(t, p))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Verify: got %+v, want %+v", got, tc.want)
			}
		})
	}

	for _, tc := range []struct {
		name     string
		provider string
		token    func(t *testing.T, p *idp) string
		wantErr  error
	}{
		{"ErrUnknownProvider", "github", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, googleClaims(now))
		}, auth.ErrUnknownProvider},
		{"ErrExpired", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{
				"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix(),
			}))
		}, auth.ErrInvalidToken},
		{"ErrNoExp", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{"exp": nil}))
		}, auth.ErrInvalidToken},
		{"ErrWrongAudience", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{"aud": "someone-else"}))
		}, auth.ErrInvalidToken},
		{"ErrAzpNotAudience", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{
				"aud": []string{"other", "google-client"}, "azp": "other",
			}))
		}, auth.ErrInvalidToken},
		{"ErrWrongIssuer", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{"iss": "https://evil.test"}))
		}, auth.ErrInvalidToken},
		{"ErrOtherProvidersToken", "entra", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, googleClaims(now))
		}, auth.ErrInvalidToken},
		{"ErrTenantMismatch", "entra", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(entraClaims(now), map[string]any{"tid": "00000000-0000-0000-0000-000000000000"}))
		}, auth.ErrInvalidToken},
		{"ErrTenantCrafted", "entra", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(entraClaims(now), map[string]any{
				"tid": "x/evil", "iss": "https://login.test/x/evil/v2.0",
			}))
		}, auth.ErrInvalidToken},
		{"ErrUnknownKid", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, map[string]any{"kid": "rsa-2"}, googleClaims(now))
		}, auth.ErrInvalidToken},
		{"ErrOtherKeyUnderKnownKid", "google", func(t *testing.T, p *idp) string {
			stranger, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				t.Fatal(err)
			}
			return sign(t, jwt.SigningMethodRS256, stranger, rsaHdr, googleClaims(now))
		}, auth.ErrInvalidToken},
		{"ErrAlgNotAllowedForProvider", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodES256, p.ec, ecHdr, with(googleClaims(now), nil))
		}, auth.ErrInvalidToken},
		{"ErrAlgNotListed", "entra", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodPS256, p.rsa, rsaHdr, entraClaims(now))
		}, auth.ErrInvalidToken},
		{"ErrAlgDiffersFromJWK", "entra", func(t *testing.T, p *idp) string {
			// ES256 is allowed for this provider, but the JWK under rsa-1 says RS256.
			return sign(t, jwt.SigningMethodES256, p.ec, rsaHdr, entraClaims(now))
		}, auth.ErrInvalidToken},
		{"ErrHS256", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodHS256, []byte("secret"), rsaHdr, googleClaims(now))
		}, auth.ErrInvalidToken},
		{"ErrAlgNone", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, rsaHdr, googleClaims(now))
		}, auth.ErrInvalidToken},
		{"ErrIssuedInFuture", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{"iat": now.Add(10 * time.Minute).Unix()}))
		}, auth.ErrInvalidToken},
		{"ErrNoIat", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{"iat": nil}))
		}, auth.ErrInvalidToken},
		{"ErrNotYetValid", "entra", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(entraClaims(now), map[string]any{"nbf": now.Add(10 * time.Minute).Unix()}))
		}, auth.ErrInvalidToken},
		{"ErrNoSubject", "google", func(t *testing.T, p *idp) string {
			return sign(t, jwt.SigningMethodRS256, p.rsa, rsaHdr, with(googleClaims(now), map[string]any{"sub": nil}))
		}, auth.ErrInvalidToken},
		{"ErrGarbage", "google", func(*testing.T, *idp) string { return "eyJhbGciOiJSUzI1NiJ9.e30." }, auth.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := StartIdP(t)
			v := MustFederatedVerifier(t, p.providers())
			got, err := v.Verify(t.Context(), tc.provider, tc.token(t, p))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify: got %+v, %v; want %v", got, err, tc.wantErr)
			}
			if tc.wantErr == auth.ErrUnknownProvider {
				if errors.Is(err, auth.ErrInvalidToken) {
					t.Errorf("unknown provider reported as an invalid token: %v", err)
				}
				if ae := apperr.As(err); ae.Kind != apperr.Invalid || len(ae.Fields) != 1 || ae.Fields[0].Field != "provider" {
					t.Errorf("unknown provider: got %+v, want an Invalid error on field provider", ae)
				}
			}
			if got != (auth.Identity{}) {
				t.Errorf("Verify returned %+v with an error", got)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// TestFederatedUnreachableProvider: a provider whose JWKS host hangs, and one whose host refuses
// connections, neither delay start-up nor affect the others, and their tokens fail fast.
func TestFederatedUnreachableProvider(t *testing.T) {
	t.Parallel()
	p := StartIdP(t)
	hanging := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; released when the client gives up at the end of the test
	}))
	t.Cleanup(hanging.Close)
	refused := httptest.NewServer(http.NotFoundHandler())
	refusedURL := refused.URL
	refused.Close()

	providers := append(p.providers(),
		auth.Provider{Name: "hanging", Issuer: "https://hanging.test", Audience: "c", JWKSURL: hanging.URL + "/keys"},
		auth.Provider{Name: "refused", Issuer: "https://refused.test", Audience: "c", JWKSURL: refusedURL + "/keys"},
	)
	start := time.Now()
	v := MustFederatedVerifier(t, providers)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("NewFederatedVerifier took %v with an unreachable JWKS: want well under a second", took)
	}

	now := time.Now()
	if _, err := v.Verify(t.Context(), "google", sign(t, jwt.SigningMethodRS256, p.rsa, map[string]any{"kid": rsaKid}, googleClaims(now))); err != nil {
		t.Fatalf("Verify google beside unreachable providers: %v", err)
	}
	for _, name := range []string{"hanging", "refused"} {
		t.Run("Err_"+name, func(t *testing.T) {
			claims := with(googleClaims(now), map[string]any{"iss": "https://" + name + ".test", "aud": "c"})
			ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := v.Verify(ctx, name, sign(t, jwt.SigningMethodRS256, p.rsa, map[string]any{"kid": rsaKid}, claims))
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("Verify: got %v, want ErrInvalidToken", err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Verify took %v: want it bounded by its context", took)
			}
			t.Logf("refused: %v", err)
		})
	}
}

func TestNewFederatedVerifier(t *testing.T) {
	t.Parallel()
	ok := auth.Provider{Name: "google", Issuer: "https://accounts.google.com", Audience: "c", JWKSURL: "https://www.googleapis.com/oauth2/v3/certs"}
	change := func(f func(*auth.Provider)) []auth.Provider {
		p := ok
		f(&p)
		return []auth.Provider{p}
	}
	for _, tc := range []struct {
		name      string
		providers []auth.Provider
	}{
		{"ErrNoName", change(func(p *auth.Provider) { p.Name = "" })},
		{"ErrNoIssuer", change(func(p *auth.Provider) { p.Issuer = "" })},
		{"ErrNoAudience", change(func(p *auth.Provider) { p.Audience = "" })},
		{"ErrNoJWKSURL", change(func(p *auth.Provider) { p.JWKSURL = "" })},
		{"ErrRelativeJWKSURL", change(func(p *auth.Provider) { p.JWKSURL = "/keys" })},
		{"ErrHS256", change(func(p *auth.Provider) { p.Algorithms = []string{"RS256", "HS256"} })},
		{"ErrNone", change(func(p *auth.Provider) { p.Algorithms = []string{"none"} })},
		{"ErrDuplicateName", []auth.Provider{ok, ok}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A cancelled context: no fetch may outlive the test even if construction succeeded.
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			if _, err := auth.NewFederatedVerifier(ctx, tc.providers); err == nil {
				t.Fatal("NewFederatedVerifier: got nil error")
			}
		})
	}
}

func BenchmarkFederatedVerify(b *testing.B) {
	p := StartIdP(b)
	v := MustFederatedVerifier(b, p.providers())
	tok := sign(b, jwt.SigningMethodRS256, p.rsa, map[string]any{"kid": rsaKid}, googleClaims(time.Now()))
	for b.Loop() {
		if _, err := v.Verify(b.Context(), "google", tok); err != nil {
			b.Fatal(err)
		}
	}
}
