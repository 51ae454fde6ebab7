package integration_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/channelbilling/cms/shared/auth"
)

// testIdP is an identity provider of the tests' own: an RSA key and a JWKS server.
type testIdP struct {
	*httptest.Server
	key *rsa.PrivateKey
}

const (
	idpIssuer   = "https://idp.test/tenant"
	idpAudience = "cms-test-client"
)

func startIdP() *testIdP {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	p := &testIdP{key: key}
	enc := base64.RawURLEncoding
	jwks, _ := json.Marshal(map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": "idp-1", "alg": "RS256", "use": "sig",
		"n": enc.EncodeToString(key.N.Bytes()), "e": enc.EncodeToString(big.NewInt(int64(key.E)).Bytes()),
	}}})
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	return p
}

func (p *testIdP) provider() auth.Provider {
	return auth.Provider{Name: "google", Issuer: idpIssuer, Audience: idpAudience, JWKSURL: p.URL}
}

// idToken signs an ID token; mutate adjusts the claims before signing.
func (p *testIdP) idToken(subject, email string, mutate func(jwt.MapClaims)) string {
	now := time.Now()
	c := jwt.MapClaims{"iss": idpIssuer, "aud": idpAudience, "sub": subject, "email": email, "email_verified": true,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()}
	if mutate != nil {
		mutate(c)
	}
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = "idp-1"
	s, err := t.SignedString(p.key)
	if err != nil {
		panic(err)
	}
	return s
}
