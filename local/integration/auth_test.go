package integration_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/channelbilling/cms/shared/app"
	"github.com/channelbilling/cms/shared/auth"
	"github.com/channelbilling/cms/shared/identity"
	"github.com/channelbilling/cms/shared/outbox"
)

func TestLogin(t *testing.T) {
	anon := client{tb: t}
	t.Run("OK", func(t *testing.T) {
		var s session
		anon.must(200, "POST", "/api/v1/auth/login", map[string]string{"email": adminEmail, "password": adminPassword}, &s)
		if s.Token == "" || s.RefreshToken == "" || !s.ExpiresAt.After(time.Now()) || !s.RefreshExpiresAt.After(s.ExpiresAt) {
			t.Fatalf("bad session %+v", s)
		}
		c := client{tb: t, token: s.Token}
		c.must(200, "GET", "/api/v1/roles", nil, nil)
	})
	t.Run("TokenAlias", func(t *testing.T) {
		var s session
		anon.must(200, "POST", "/api/v1/auth/token", map[string]string{"emailAddress": adminEmail, "password": adminPassword}, &s)
		if s.Token == "" {
			t.Fatal("no token")
		}
	})
	t.Run("ErrSameAnswerForUnknownUserAndWrongPassword", func(t *testing.T) {
		a := anon.do("POST", "/api/v1/auth/login", map[string]string{"email": "nobody@example.test", "password": "whatever-password"})
		b := anon.do("POST", "/api/v1/auth/login", map[string]string{"email": adminEmail, "password": "wrong-password-x"})
		if a.status != 401 || b.status != 401 || a.Errors[0] != b.Errors[0] {
			t.Fatalf("answers differ: %s / %s", a.raw, b.raw)
		}
	})
	t.Run("ErrThrottled", func(t *testing.T) {
		email := "throttle-" + uniq("u") + "@example.test"
		var u user
		admin(t).must(201, "POST", "/api/v1/users", map[string]any{"email": email, "firstName": "A", "lastName": "B",
			"role": "platform_viewer", "scopeId": "platform", "password": "the right password"}, &u)
		for i := 0; i < 5; i++ {
			if env := anon.do("POST", "/api/v1/auth/login", map[string]string{"email": email, "password": "wrong password!"}); env.status != 401 {
				t.Fatalf("attempt %d: %s", i, env.raw)
			}
		}
		env := anon.do("POST", "/api/v1/auth/login", map[string]string{"email": email, "password": "the right password"})
		if env.status != 429 {
			t.Fatalf("after 5 failures even the right password is throttled, got %s", env.raw)
		}
	})
	t.Run("ErrNoToken", func(t *testing.T) {
		if env := anon.do("GET", "/api/v1/tenants", nil); env.status != 401 {
			t.Fatalf("got %s", env.raw)
		}
		bad := client{tb: t, token: "not-a-jwt"}
		if env := bad.do("GET", "/api/v1/tenants", nil); env.status != 401 {
			t.Fatalf("got %s", env.raw)
		}
	})
	t.Run("ErrValidation", func(t *testing.T) {
		env := anon.do("POST", "/api/v1/auth/login", map[string]string{})
		if env.status != 400 || !env.hasError("required", "email") || !env.hasError("required", "password") {
			t.Fatalf("got %s", env.raw)
		}
	})
}

func TestRefreshRotationAndReuse(t *testing.T) {
	anon := client{tb: t}
	var first session
	anon.must(200, "POST", "/api/v1/auth/login", map[string]string{"email": adminEmail, "password": adminPassword}, &first)

	var second session
	anon.must(200, "POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": first.RefreshToken}, &second)
	if second.RefreshToken == first.RefreshToken || second.Token == "" {
		t.Fatal("refresh must rotate the token")
	}
	var third session
	anon.must(200, "POST", "/api/v1/auth/token-refresh", map[string]string{"refreshToken": second.RefreshToken}, &third)

	// Reusing a spent token revokes the family: the newest token stops working too.
	if env := anon.do("POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": first.RefreshToken}); env.status != 401 {
		t.Fatalf("reuse accepted: %s", env.raw)
	}
	if env := anon.do("POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": third.RefreshToken}); env.status != 401 {
		t.Fatalf("family not revoked: %s", env.raw)
	}
}

func TestRefreshConcurrentUseRevokes(t *testing.T) {
	anon := client{tb: t}
	var s session
	anon.must(200, "POST", "/api/v1/auth/login", map[string]string{"email": adminEmail, "password": adminPassword}, &s)
	var wg sync.WaitGroup
	statuses := make([]int, 5)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = anon.do("POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": s.RefreshToken}).status
		}()
	}
	wg.Wait()
	ok := 0
	for _, st := range statuses {
		if st == 200 {
			ok++
		}
	}
	if ok > 1 {
		t.Fatalf("one refresh token was rotated %d times: %v", ok, statuses)
	}
}

func TestLogout(t *testing.T) {
	anon := client{tb: t}
	var s session
	anon.must(200, "POST", "/api/v1/auth/login", map[string]string{"email": adminEmail, "password": adminPassword}, &s)
	anon.must(200, "POST", "/api/v1/auth/logout", map[string]string{"refreshToken": s.RefreshToken}, nil)
	if env := anon.do("POST", "/api/v1/auth/refresh", map[string]string{"refreshToken": s.RefreshToken}); env.status != 401 {
		t.Fatalf("refresh after logout: %s", env.raw)
	}
}

func TestJWKSVerifiesIssuedTokens(t *testing.T) {
	resp, err := httpGet(srv.URL + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(resp), `"d"`) {
		t.Fatal("the JWKS must not contain private key material")
	}
	v, err := auth.NewVerifierFromJWKS(resp, deps.Config.TokenIssuer, deps.Config.TokenAudience)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(admin(t).token)
	if err != nil {
		t.Fatalf("a platform token must verify against the published JWKS: %v", err)
	}
	if c.Role != "platform_admin" || c.ScopeID != "platform" {
		t.Fatalf("claims %+v", c)
	}
}

func TestFederated(t *testing.T) {
	anon := client{tb: t}
	email := strings.ToLower(uniq("fed")) + "@example.test"
	admin(t).must(201, "POST", "/api/v1/users", map[string]any{"email": email, "firstName": "Fed", "lastName": "User",
		"role": "platform_viewer", "scopeId": "platform", "password": "a long enough password"}, nil)
	fed := func(tok string) envelope {
		return anon.do("POST", "/api/v1/auth/federated", map[string]string{"provider": "google", "idToken": tok})
	}
	t.Run("OK", func(t *testing.T) {
		env := fed(idp.idToken("sub-1", email, nil))
		if env.status != 200 {
			t.Fatalf("got %s", env.raw)
		}
		// The identity is now linked: a token without e-mail maps by issuer and subject.
		env = fed(idp.idToken("sub-1", "", func(c jwt.MapClaims) { delete(c, "email") }))
		if env.status != 200 {
			t.Fatalf("linked identity refused: %s", env.raw)
		}
	})
	cases := map[string]func(jwt.MapClaims){
		"ErrExpired":       func(c jwt.MapClaims) { c["exp"] = time.Now().Add(-time.Hour).Unix() },
		"ErrWrongAudience": func(c jwt.MapClaims) { c["aud"] = "someone-else" },
		"ErrWrongIssuer":   func(c jwt.MapClaims) { c["iss"] = "https://evil.test" },
		"ErrUnverifiedEmail": func(c jwt.MapClaims) {
			c["sub"] = "sub-unverified"
			c["email_verified"] = false
		},
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			if env := fed(idp.idToken("sub-2", email, mutate)); env.status != 401 {
				t.Fatalf("got %s", env.raw)
			}
		})
	}
	t.Run("ErrUnknownProvider", func(t *testing.T) {
		env := anon.do("POST", "/api/v1/auth/federated", map[string]string{"provider": "myspace", "idToken": idp.idToken("s", email, nil)})
		if env.status != 400 || !env.hasError("", "provider") {
			t.Fatalf("got %s", env.raw)
		}
	})
}

func TestInvitation(t *testing.T) {
	a := admin(t)
	email := strings.ToLower(uniq("inv")) + "@example.test"
	var u user
	a.must(201, "POST", "/api/v1/users", map[string]any{"email": email, "firstName": "In", "lastName": "Vited",
		"role": "platform_viewer", "scopeId": "platform"}, &u)
	if u.Status != "invited" {
		t.Fatalf("a user created without password is invited, got %s", u.Status)
	}
	token := inviteToken(t, u.ID)
	anon := client{tb: t}
	if env := anon.do("POST", "/api/v1/auth/accept-invite", map[string]string{"token": token, "password": "short"}); env.status != 400 || !env.hasError("weak", "password") {
		t.Fatalf("weak password accepted: %s", env.raw)
	}
	// Re-sending the invitation issues a second, also valid, link.
	a.must(200, "POST", "/api/v1/users/"+u.ID+"/welcome", nil, nil)
	second := inviteToken(t, u.ID)
	if second == token {
		t.Fatal("welcome must issue a new link")
	}
	var s session
	anon.must(200, "POST", "/api/v1/auth/accept-invite", map[string]string{"token": token, "password": "my new long password"}, &s)
	if env := anon.do("POST", "/api/v1/auth/accept-invite", map[string]string{"token": token, "password": "my new long password"}); env.status != 401 {
		t.Fatalf("an invitation is one-time: %s", env.raw)
	}
	// Once the user has set a password, every other link is dead: whoever still holds one (it
	// travels in user.invited) must not reset the password of an active account.
	if env := anon.do("POST", "/api/v1/auth/accept-invite", map[string]string{"token": second, "password": "an attacker's password"}); env.status != 401 || !env.hasError("invalid_invite", "") {
		t.Fatalf("the other link of an accepted invitation must be refused: %s", env.raw)
	}
	login(t, email, "my new long password")
	if env := a.do("POST", "/api/v1/users/"+u.ID+"/welcome", nil); env.status != 422 {
		t.Fatalf("welcome for an active user: %s", env.raw)
	}
}

// inviteToken reads the newest user.invited event of a user from the outbox.
func inviteToken(t *testing.T, userID string) string {
	t.Helper()
	evs, err := deps.Store.Events(t.Context(), outbox.UserInvited)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		var d identity.InvitedDetail
		if err := json.Unmarshal(evs[i].Detail, &d); err != nil {
			t.Fatal(err)
		}
		if d.UserID == userID {
			return d.InviteToken
		}
	}
	t.Fatalf("no user.invited event for %s", userID)
	return ""
}

// Answers that carry credentials are never stored under an Idempotency-Key (the refresh token
// would sit in plain text in the table) nor replayed (a spent refresh token presented again with
// the same key must be reuse, not a copy of the pair it was exchanged for).
func TestIdempotencyKeyOnCredentialAnswers(t *testing.T) {
	anon := client{tb: t}
	creds := map[string]string{"email": adminEmail, "password": adminPassword}
	loginKey := uniq("login")
	var a, b session
	anon.must(200, "POST", "/api/v1/auth/login", creds, &a)
	if env := anon.do("POST", "/api/v1/auth/login", creds, "Idempotency-Key", loginKey); env.status != 200 || json.Unmarshal(env.Data, &a) != nil {
		t.Fatalf("login with a key: %s", env.raw)
	}
	if env := anon.do("POST", "/api/v1/auth/login", creds, "Idempotency-Key", loginKey); env.status != 200 || json.Unmarshal(env.Data, &b) != nil {
		t.Fatalf("login again with the key: %s", env.raw)
	}
	if a.RefreshToken == b.RefreshToken {
		t.Error("a second login with the same key must sign in again, not replay the first pair")
	}

	t.Run("ErrRefreshReplayIsReuse", func(t *testing.T) {
		key := uniq("refresh")
		body := map[string]string{"refreshToken": a.RefreshToken}
		var next session
		if env := anon.do("POST", "/api/v1/auth/refresh", body, "Idempotency-Key", key); env.status != 200 || json.Unmarshal(env.Data, &next) != nil {
			t.Fatalf("refresh: %s", env.raw)
		}
		env := anon.do("POST", "/api/v1/auth/refresh", body, "Idempotency-Key", key)
		if env.status != 401 || strings.Contains(env.raw, next.RefreshToken) {
			t.Fatalf("the spent token replayed with the same key must be refused as reuse: %s", env.raw)
		}
		// Reuse revoked the family: the pair the first refresh returned is dead too.
		if env := anon.do("POST", "/api/v1/auth/token-refresh", map[string]string{"refreshToken": next.RefreshToken}, "Idempotency-Key", key); env.status != 401 {
			t.Fatalf("family not revoked: %s", env.raw)
		}
	})

	t.Run("NothingStored", func(t *testing.T) {
		keys := []string{loginKey}
		tokenKey := uniq("token")
		anon.must(200, "POST", "/api/v1/auth/token", map[string]string{"emailAddress": adminEmail, "password": adminPassword}, nil)
		if env := anon.do("POST", "/api/v1/auth/token", map[string]string{"emailAddress": adminEmail, "password": adminPassword}, "Idempotency-Key", tokenKey); env.status != 200 {
			t.Fatalf("auth/token: %s", env.raw)
		}
		fedKey := uniq("fed")
		if env := anon.do("POST", "/api/v1/auth/federated", map[string]string{"provider": "google", "idToken": idp.idToken("sub-idem", adminEmail, nil)}, "Idempotency-Key", fedKey); env.status != 200 {
			t.Fatalf("federated: %s", env.raw)
		}
		keys = append(keys, tokenKey, fedKey)
		for _, k := range keys {
			n, err := deps.Store.Table().Scan().Filter("contains('PK', ?)", k).Count(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Errorf("Idempotency-Key %s: %d items stored for an answer carrying credentials", k, n)
			}
		}
	})
}

// TestCredentialRoutesAreMarked: every route answering a session is marked Credentials, so that
// no Idempotency-Key ever stores or replays one.
func TestCredentialRoutesAreMarked(t *testing.T) {
	n := 0
	for _, r := range app.AllRoutes() {
		if _, ok := r.Result.(identity.Session); ok {
			n++
			if !r.Credentials {
				t.Errorf("%s %s answers a session but is not marked Credentials", r.Method, r.Path)
			}
		}
	}
	if n < 6 {
		t.Fatalf("only %d session routes found", n)
	}
}
