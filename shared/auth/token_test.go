package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/channelbilling/cms/shared/auth"
)

// sign returns a JWT with the given method, key, header fields and claims.
func sign(t testing.TB, method jwt.SigningMethod, key any, header map[string]any, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
			continue
		}
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", method.Alg(), err)
	}
	return s
}

// platformClaims are valid access-token claims as of now.
func platformClaims(now time.Time) jwt.MapClaims {
	return jwt.MapClaims{
		"iss": testIssuer, "aud": testAudience, "sub": "usr_1", "jti": "j1",
		"role": "tenant_admin", "scopeId": "ten_1", "scopeType": "tenant",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(),
	}
}

func with(c jwt.MapClaims, changes map[string]any) jwt.MapClaims {
	for k, v := range changes {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	return c
}

// header decodes a JWT's header.
func header(t *testing.T, token string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestIssue(t *testing.T) {
	newest, older := MustSigningKey(t), MustSigningKey(t)
	now := time.Date(2026, 3, 1, 10, 0, 0, 500, time.UTC)
	iss, err := auth.NewIssuer([]auth.SigningKey{newest, older}, testIssuer, testAudience, 0, func() time.Time { return now })
	if err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
	v := MustVerifier(t, newest, older)

	t.Run("OK", func(t *testing.T) {
		// The verifier runs on the real clock; this issuer's clock is fixed, so use a fresh one.
		live := MustIssuer(t, []auth.SigningKey{newest, older}, nil)
		tok, exp, err := live.Issue(partnerAdmin())
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		h := header(t, tok)
		if h["kid"] != newest.ID || h["alg"] != "ES256" || h["typ"] != "at+jwt" {
			t.Errorf("header %v: want kid %q (newest key), alg ES256, typ at+jwt", h, newest.ID)
		}
		got, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		want := partnerAdmin()
		if got.Subject != want.Subject || got.Role != want.Role || got.ScopeID != want.ScopeID ||
			got.ScopeType != want.ScopeType || got.ScopePath != want.ScopePath {
			t.Errorf("claims %+v, want %+v", got, want)
		}
		if got.Issuer != testIssuer || len(got.Audience) != 1 || got.Audience[0] != testAudience || got.ID == "" {
			t.Errorf("registered claims %+v: want iss, aud and a jti", got)
		}
		if !got.ExpiresAt.Equal(exp) || exp.Sub(got.IssuedAt) != auth.DefaultAccessTokenTTL || !got.NotBefore.Equal(got.IssuedAt) {
			t.Errorf("exp %v (returned %v), iat %v, nbf %v: want exp = returned = iat + 15m, nbf = iat", got.ExpiresAt, exp, got.IssuedAt, got.NotBefore)
		}
	})

	t.Run("OK_ExpiryWholeSeconds", func(t *testing.T) {
		_, exp, err := iss.Issue(partnerAdmin())
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		if want := time.Date(2026, 3, 1, 10, 15, 0, 0, time.UTC); !exp.Equal(want) {
			t.Errorf("expiresAt %v, want %v", exp, want)
		}
	})

	t.Run("OK_GivenID", func(t *testing.T) {
		c := partnerAdmin()
		c.ID = "fam_42"
		tok, _, err := MustIssuer(t, []auth.SigningKey{newest}, nil).Issue(c)
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		got, err := v.Verify(tok)
		if err != nil || got.ID != "fam_42" {
			t.Errorf("Verify: jti %q, err %v; want fam_42", got.ID, err)
		}
	})

	for _, tc := range []struct {
		name   string
		change func(*auth.Claims)
	}{
		{"ErrNoSubject", func(c *auth.Claims) { c.Subject = "" }},
		{"ErrNoRole", func(c *auth.Claims) { c.Role = "" }},
		{"ErrNoScopeID", func(c *auth.Claims) { c.ScopeID = "" }},
		{"ErrNoScopeType", func(c *auth.Claims) { c.ScopeType = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := partnerAdmin()
			tc.change(&c)
			if _, _, err := iss.Issue(c); !errors.Is(err, auth.ErrInvalidClaims) {
				t.Fatalf("Issue: got %v, want ErrInvalidClaims", err)
			}
		})
	}
}

func TestNewIssuer(t *testing.T) {
	k := MustSigningKey(t)
	for _, tc := range []struct {
		name             string
		keys             []auth.SigningKey
		issuer, audience string
		ttl              time.Duration
	}{
		{"ErrNoKeys", nil, testIssuer, testAudience, 0},
		{"ErrNoIssuer", []auth.SigningKey{k}, "", testAudience, 0},
		{"ErrNoAudience", []auth.SigningKey{k}, testIssuer, "", 0},
		{"ErrNegativeTTL", []auth.SigningKey{k}, testIssuer, testAudience, -time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := auth.NewIssuer(tc.keys, tc.issuer, tc.audience, tc.ttl, nil); err == nil {
				t.Fatal("NewIssuer: got nil error")
			}
		})
	}
}

func TestVerify(t *testing.T) {
	key, stranger := MustSigningKey(t), MustSigningKey(t)
	jwks := MustJWKS(t, key)
	v := MustVerifier(t, key)
	now := time.Now()
	valid := func() jwt.MapClaims { return platformClaims(now) }
	hdr := map[string]any{"kid": key.ID, "typ": "at+jwt"}

	for _, tc := range []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"OK", func(t *testing.T) string { return MustIssue(t, MustIssuer(t, []auth.SigningKey{key}, nil)) }},
		{"OK_HandMade", func(t *testing.T) string { return sign(t, jwt.SigningMethodES256, key.Private, hdr, valid()) }},
		{"OK_WithinLeeway", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, key.Private, hdr, with(valid(), map[string]any{"exp": now.Add(-10 * time.Second).Unix()}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := v.Verify(tc.token(t)); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}

	for _, tc := range []struct {
		name  string
		token func(t *testing.T) string
	}{
		{"ErrTampered", func(t *testing.T) string {
			parts := strings.Split(MustIssue(t, MustIssuer(t, []auth.SigningKey{key}, nil)), ".")
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			payload = []byte(strings.Replace(string(payload), "partner_admin", "platform_admin", 1))
			parts[1] = base64.RawURLEncoding.EncodeToString(payload)
			return strings.Join(parts, ".")
		}},
		{"ErrSignatureTruncated", func(t *testing.T) string {
			tok := MustIssue(t, MustIssuer(t, []auth.SigningKey{key}, nil))
			return tok[:len(tok)-4]
		}},
		{"ErrWrongIssuer", func(t *testing.T) string {
			iss, err := auth.NewIssuer([]auth.SigningKey{key}, "https://evil.test", testAudience, 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			return MustIssue(t, iss)
		}},
		{"ErrWrongAudience", func(t *testing.T) string {
			iss, err := auth.NewIssuer([]auth.SigningKey{key}, testIssuer, "other-api", 0, nil)
			if err != nil {
				t.Fatal(err)
			}
			return MustIssue(t, iss)
		}},
		{"ErrExpired", func(t *testing.T) string {
			return MustIssue(t, MustIssuer(t, []auth.SigningKey{key}, func() time.Time { return now.Add(-time.Hour) }))
		}},
		{"ErrNotYetValid", func(t *testing.T) string {
			return MustIssue(t, MustIssuer(t, []auth.SigningKey{key}, func() time.Time { return now.Add(time.Hour) }))
		}},
		{"ErrUnknownKey", func(t *testing.T) string { return MustIssue(t, MustIssuer(t, []auth.SigningKey{stranger}, nil)) }},
		{"ErrOtherKeyUnderKnownKid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, stranger.Private, hdr, valid())
		}},
		{"ErrAlgNone", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, hdr, valid())
		}},
		{"ErrHS256WithJWKSAsSecret", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodHS256, jwks, hdr, valid())
		}},
		{"ErrES384", func(t *testing.T) string {
			p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			return sign(t, jwt.SigningMethodES384, p384, hdr, valid())
		}},
		{"ErrNoKid", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, key.Private, map[string]any{"typ": "at+jwt"}, valid())
		}},
		{"ErrNotAnAccessToken", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, key.Private, map[string]any{"kid": key.ID, "typ": "JWT"}, valid())
		}},
		{"ErrNoExp", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, key.Private, hdr, with(valid(), map[string]any{"exp": nil}))
		}},
		{"ErrIssuedInFuture", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, key.Private, hdr, with(valid(), map[string]any{"iat": now.Add(5 * time.Minute).Unix()}))
		}},
		{"ErrNoRole", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, key.Private, hdr, with(valid(), map[string]any{"role": nil}))
		}},
		{"ErrNoSubject", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, key.Private, hdr, with(valid(), map[string]any{"sub": nil}))
		}},
		{"ErrGarbage", func(*testing.T) string { return "not.a.jwt" }},
		{"ErrEmpty", func(*testing.T) string { return "" }},
		{"ErrTooLong", func(t *testing.T) string {
			return sign(t, jwt.SigningMethodES256, key.Private, hdr, with(valid(), map[string]any{"pad": strings.Repeat("x", 9000)}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := v.Verify(tc.token(t))
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("Verify: got %+v, %v; want ErrInvalidToken", got, err)
			}
			t.Logf("refused: %v", err)
			if got.Subject != "" || got.Role != "" {
				t.Errorf("Verify returned claims %+v with an error", got)
			}
		})
	}
}

func TestVerifyRS256(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := jwkset.NewJWKFromKey(rsaKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "rsa-1", USE: jwkset.UseSig}})
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifierFromJWKS(jwks, testIssuer, testAudience)
	if err != nil {
		t.Fatalf("NewVerifierFromJWKS: %v", err)
	}
	hdr := map[string]any{"kid": "rsa-1", "typ": "at+jwt"}
	for _, tc := range []struct {
		name    string
		method  jwt.SigningMethod
		wantErr error
	}{
		{"OK", jwt.SigningMethodRS256, nil},
		{"ErrRS512", jwt.SigningMethodRS512, auth.ErrInvalidToken},
		{"ErrPS256", jwt.SigningMethodPS256, auth.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(sign(t, tc.method, rsaKey, hdr, platformClaims(time.Now())))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify: got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	old, current := MustSigningKey(t), MustSigningKey(t)
	before := MustIssuer(t, []auth.SigningKey{old}, nil)         // before the rotation
	after := MustIssuer(t, []auth.SigningKey{current, old}, nil) // the new key prepended
	oldToken, newToken := MustIssue(t, before), MustIssue(t, after)
	if kid := header(t, newToken)["kid"]; kid != current.ID {
		t.Fatalf("after rotation, kid %v, want the new key %q", kid, current.ID)
	}
	for _, tc := range []struct {
		name    string
		jwks    []auth.SigningKey
		token   string
		wantErr error
	}{
		{"OK_OldTokenWhileOldKeyPublished", []auth.SigningKey{current, old}, oldToken, nil},
		{"OK_NewToken", []auth.SigningKey{current, old}, newToken, nil},
		{"ErrOldTokenAfterOldKeyRetired", []auth.SigningKey{current}, oldToken, auth.ErrInvalidToken},
		{"ErrNewTokenBeforeNewKeyPublished", []auth.SigningKey{old}, newToken, auth.ErrInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := MustVerifier(t, tc.jwks...).Verify(tc.token); !errors.Is(err, tc.wantErr) {
				t.Fatalf("Verify: got %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestNewVerifierFromURL(t *testing.T) {
	old, current := MustSigningKey(t), MustSigningKey(t)
	var served atomic.Value
	served.Store(MustJWKS(t, old))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(served.Load().([]byte))
	}))
	t.Cleanup(srv.Close)

	v, err := auth.NewVerifierFromURL(t.Context(), srv.URL, testIssuer, testAudience)
	if err != nil {
		t.Fatalf("NewVerifierFromURL: %v", err)
	}
	if _, err := v.Verify(MustIssue(t, MustIssuer(t, []auth.SigningKey{old}, nil))); err != nil {
		t.Fatalf("Verify (key published from the start): %v", err)
	}
	// The issuer rotates and publishes; the verifier learns the new kid by refetching, no restart.
	served.Store(MustJWKS(t, current, old))
	if _, err := v.Verify(MustIssue(t, MustIssuer(t, []auth.SigningKey{current, old}, nil))); err != nil {
		t.Fatalf("Verify (key published after start): %v", err)
	}
}

func TestNewVerifier(t *testing.T) {
	jwks := MustJWKS(t, MustSigningKey(t))
	for _, tc := range []struct {
		name string
		new  func() (*auth.Verifier, error)
	}{
		{"ErrJWKSNotJSON", func() (*auth.Verifier, error) { return auth.NewVerifierFromJWKS([]byte("{"), testIssuer, testAudience) }},
		{"ErrJWKSEmpty", func() (*auth.Verifier, error) {
			return auth.NewVerifierFromJWKS([]byte(`{"keys":[]}`), testIssuer, testAudience)
		}},
		{"ErrNoIssuer", func() (*auth.Verifier, error) { return auth.NewVerifierFromJWKS(jwks, "", testAudience) }},
		{"ErrNoAudience", func() (*auth.Verifier, error) { return auth.NewVerifierFromJWKS(jwks, testIssuer, "") }},
		{"ErrRelativeURL", func() (*auth.Verifier, error) {
			return auth.NewVerifierFromURL(t.Context(), "/.well-known/jwks.json", testIssuer, testAudience)
		}},
		{"ErrURLScheme", func() (*auth.Verifier, error) {
			return auth.NewVerifierFromURL(t.Context(), "ftp://example.com/jwks.json", testIssuer, testAudience)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.new(); err == nil {
				t.Fatal("got nil error")
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	key := MustSigningKey(b)
	v := MustVerifier(b, key)
	tok := MustIssue(b, MustIssuer(b, []auth.SigningKey{key}, nil))
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	iss := MustIssuer(b, []auth.SigningKey{MustSigningKey(b)}, nil)
	for b.Loop() {
		if _, _, err := iss.Issue(partnerAdmin()); err != nil {
			b.Fatal(err)
		}
	}
}
